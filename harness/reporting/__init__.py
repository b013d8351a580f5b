"""The reporting room: `harness report` (report.py), which rebuilds results/<name>/ (tables,
plots, claims.md) from MLflow alone, for one file or a folder of them.

Imports: every room below it (names, errors, data, config, draw, verdicts, sweep); pandas
inside the functions that use it.
"""
