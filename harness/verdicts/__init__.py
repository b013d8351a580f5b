"""The verdicts room: claims judged over seeds (claims.py: the claim forms and Holm's
correction; twosample.py: the tests; effects.py: effect sizes; table.py: claims.md;
sequential.py: seeds until decided). Pure functions of trials.csv's rows, so that the runner
can judge between rounds of seeds and `report` can judge from MLflow alike.

Imports: harness.names and harness.config (the Claim schema); scipy inside the functions
that use it.
"""
