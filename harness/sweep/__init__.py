"""The running room: one trial's training loop and everything around it (SPEC 4.5, 4.7).

    train.py        where a trial begins (data, spec, weights, streams) and its loop
    diagnostics.py  per-layer statistics computed during training
    preflight.py    checks that need the data and the frameworks, before anything is created
    tracking.py     MLflow: experiment, parent and child runs, batched writes
    records.py      what a trial leaves in MLflow besides its step metrics
    results.py      trials.csv
    threads.py      BLAS and torch threads, pinned and recorded
    executors.py    local, pool and Ray
    runner.py       `harness run`: `run(file, overrides, RunOptions(...))`

Imports: backends/, harness.names, errors, data, config and draw; mlflow inside tracking.py,
torch and jax through backends.load.
"""
