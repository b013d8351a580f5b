"""The verdicts room: verdicts on an experiment's claims over seeds (claims.py) and
`harness report` (report.py), which rebuilds tables, plots and claims.md from MLflow.

Imports: every room below it (names, errors, data, config, draw, sweep); scipy, pandas
inside the functions that use them.
"""
