"""The harness from Python, for notebooks and scripts: what the CLI does, as functions that
return values (the CLI is a thin layer over the same calls).

    import harness
    exp, trials = harness.load("experiments/optimizers.yaml", overrides=["train.epochs=1"])
    harness.run("experiments/optimizers.yaml", overrides=["train.epochs=1"], quiet=True)
    res = harness.results("experiments/optimizers.yaml", overrides=["train.epochs=1"])
    res.trials          # DataFrame: one row per trial of the grid, config, status, metrics
    res.curves("val/accuracy")   # DataFrame: hash, point, backend, seed, step, value
    harness.judge("experiments/optimizers.yaml", overrides=["train.epochs=1"])  # verdicts

Each takes the same `results=` and `tracking_uri=` as the CLI (default: results/ and its
sqlite store).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.config import Trial
from harness.config import load as _load
from harness.debug.check import CheckOptions
from harness.debug.check import check as _check
from harness.reporting.report import ReportOptions, latest_overrides, latest_runs
from harness.reporting.report import report as _report
from harness.sweep.results import TrialsTable
from harness.sweep.runner import RunOptions
from harness.sweep.runner import run as _run
from harness.sweep.tracking import Tracker, default_uri
from harness.verdicts.claims import evaluate_claims


def load(file, overrides=()):
    """(Experiment, [Trial]): the file checked and expanded, as `run --dry-run` lists it."""
    return _load(file, list(overrides))


def run(file, overrides=(), **options) -> int:
    """`harness run`: the exit code. options: RunOptions' fields (executor="pool",
    workers=2, threads=1, results=..., tracking_uri=..., quiet=True, ...)."""
    return _run(file, list(overrides), RunOptions(**options))


def report(file, overrides=(), **options) -> int:
    """`harness report`: writes results/<name>/; the exit code."""
    return _report(file, list(overrides), ReportOptions(**options))


def check(file, overrides=(), **options) -> int:
    """`harness check`: prints its table; the exit code. options: CheckOptions' fields."""
    return _check(file, list(overrides), CheckOptions(**options))


@dataclasses.dataclass
class Results:
    """What the store holds of one experiment's grid (the file with its overrides)."""

    experiment: object  # harness.config.schema.Experiment
    trials_list: list[Trial]
    runs: dict  # trial hash -> MLflow run
    tracker: Tracker
    rows: list[dict]

    @property
    def trials(self):
        """One row per trial: index, hash, status, backend, device, seed, point, the config
        as dotted keys and the final value of every metric (what trials.csv holds)."""
        import pandas as pd  # deferred: ~0.5 s

        return pd.DataFrame(self.rows)

    def curves(self, key: str = "train/loss"):
        """A metric's history per trial: hash, point, backend, device, seed, step, value."""
        import pandas as pd

        out = []
        for t in self.trials_list:
            if t.hash in self.runs:
                for step, value in self.tracker.history(self.runs[t.hash].info.run_id, key):
                    out.append({"hash": t.hash, "point": t.point_label, "backend": t.backend,
                                "device": t.device, "seed": t.seed, "step": step,
                                "value": value})
        return pd.DataFrame(out, columns=["hash", "point", "backend", "device", "seed",
                                          "step", "value"])


def results(file, overrides=(), results: str | Path = "results",
            tracking_uri: str | None = None) -> Results:
    """The trials of the grid that the latest `run` of the file ran (its recorded --set
    list), or of the grid `overrides` make, as the store has them, like `report`; a trial
    the store lacks is a row with status "missing"."""
    exp, trials = load(file, overrides)
    tracker = Tracker(tracking_uri or default_uri(Path(results)), exp.name)
    if not overrides:
        ran = latest_overrides(tracker, file)[1]
        if ran:
            exp, trials = load(file, ran)
    runs = latest_runs(tracker, trials)
    table = TrialsTable.from_store(Path(results) / exp.name / "trials.csv", trials, runs)
    return Results(exp, trials, runs, tracker, [table.rows[t.hash] for t in trials])


def judge(file, overrides=(), results: str | Path = "results",
          tracking_uri: str | None = None):
    """The verdicts on the file's claims, one row each, as report's claims.md has them."""
    import pandas as pd

    res = globals()["results"](file, overrides, results, tracking_uri)
    verdicts = evaluate_claims(res.experiment.expect, res.rows) if res.experiment.expect \
        else []
    return pd.DataFrame([dataclasses.asdict(v) for v in verdicts])


__all__ = ["Results", "check", "judge", "load", "report", "results", "run"]
