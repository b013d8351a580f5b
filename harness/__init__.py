"""The harness: experiment files in, MLflow runs, tables, plots and verdicts out.

Its rooms, one per stage of the data's way, each importing only the rooms before it in
ROOMS (tests/test_layering.py holds them to it, imports inside functions included):

    names     every name two rooms must spell alike: tags, backends, devices, metric keys,
              the trial's random streams
    errors    the one dialect of configuration errors (ConfigError values), `refuse`
    data      tasks (datasets, offline) and augmentation (the registry and its ops)
    config    the experiment file: schema, strict reading, expansion into trials
    draw      matplotlib pictures from plain data (curves, volumes, per-layer diagnostics)
    verdicts  claims judged over seeds: the tests, Holm, effects, seeds until decided
    sweep     a trial's training loop, MLflow tracking, executors, `harness run`
    reporting `harness report`: tables, plots and claims.md from MLflow alone
    debug     `harness check`: gradient check, overfit one batch, parity
    api       the same from Python: harness.load, run, results, judge, report, check
    cli       the command line, a thin layer over sweep, reporting and debug

Below them all, backends/ (the model spec and the three backends), which never imports
harness. `import harness` imports nothing but this docstring: torch, jax, mlflow and
matplotlib are imported by the code that needs them, so `python -m harness --help` answers
at once.
"""

ROOMS = ("names", "errors", "data", "config", "draw", "verdicts", "sweep", "reporting",
         "debug", "api", "cli")
API = ("load", "run", "results", "judge", "report", "check", "Results")


def __getattr__(name: str):
    """`harness.run(...)` and the rest of harness/api.py, imported on first use, so that
    `import harness` stays light."""
    if name in API:
        from harness import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
