"""The debugging room: `harness check` (check.py), the course's "overfit first" and
gradient-check habits, on every backend alike.

Imports: backends/, harness.names, errors, config and sweep (a trial's start, preflight).
"""
