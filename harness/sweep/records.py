"""What a trial leaves in MLflow (SPEC 4.5): its run, params and step metrics, timings, status
tags, and the artifacts `config.yaml` (the resolved config), `params.npz` (the final
canonical parameters), `loss_curve.svg` and, for a failed trial, `traceback.txt`.

The functions taking `(tracker, runs, ...)` are the jobs of the driver's writer process
(harness/sweep/writer.py): `tracker` is that process's Tracker, `runs` its trial hash ->
run id of the trials it has open. The per-trial picture is drawn there, off the training
process, as a hand-written SVG (harness/draw/svg.py: about a millisecond, where
matplotlib's PNG took 0.2 s of CPU a trial), and everything a trial writes at its end goes
in one log_batch call.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from harness.config import Trial, filled
from harness.draw.svg import loss_curve
from harness.names import DEVICE_NAME_TAG, ERROR_TAG, LAYERS_TAG, STATUS_TAG, STEPS_TAG
from harness.sweep.train import Outcome

MLFLOW_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                 "killed": "KILLED"}
CURVE_KEYS = ("train/loss", "val/loss")  # what loss_curve.svg draws


def now_ms() -> int:
    return int(time.time() * 1000)


def end_rows(outcome: Outcome, wall_s: float, stamp: int) -> list:
    """The trial's timings as metric rows at its last step."""
    timings = {"time/setup_s": outcome.setup_s, "time/train_s": outcome.train_s,
               "time/wall_s": wall_s}
    return [(k, v, outcome.steps, stamp) for k, v in timings.items()]


def end_tags(outcome: Outcome, threads: dict) -> dict:
    """The tags a trial gets when it ends: its threads, status, device, steps, error."""
    tags = {**threads, STATUS_TAG: outcome.status, DEVICE_NAME_TAG: outcome.device_name,
            STEPS_TAG: outcome.steps}
    if outcome.error:
        tags[ERROR_TAG] = outcome.error
    if outcome.layers:
        tags[LAYERS_TAG] = ",".join(outcome.layers)
    return tags


def slim(outcome: Outcome) -> Outcome:
    """The outcome as the writer needs it: its history cut to the curves it draws (the
    rest is logged already, or travels as rows)."""
    history = {k: outcome.history[k] for k in CURVE_KEYS if k in outcome.history}
    return Outcome(**{**outcome.__dict__, "history": history})


def _artifacts(tracker, run_id: str, trial: Trial, outcome: Outcome) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        resolved = {**filled(trial.config), "backend": trial.backend,
                    "device": trial.device, "seed": trial.seed}
        (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        if outcome.traceback:
            (tmp / "traceback.txt").write_text(outcome.traceback)
        if outcome.params:
            np.savez(tmp / "params.npz", **outcome.params)
        if outcome.history.get("train/loss"):
            loss_curve(outcome.history, trial.label, tmp / "loss_curve.svg")
        tracker.log_artifacts(run_id, tmp)


# ----------------------------------------------------------------------------- the jobs

PARENT = "@parent"  # a trial's parent as the driver names it before it has heard the run id


def _parent(runs: dict, parent: str) -> str:
    return runs[PARENT] if parent == PARENT else parent


def open_parent(tracker, runs: dict, name: str, tags: dict) -> str:
    """The invocation's parent run, created with its first trial; the jobs after it may name
    it PARENT (the driver does not wait for its id unless a worker needs it)."""
    runs[PARENT] = tracker.start_parent(name, tags)
    return runs[PARENT]


def end_parent(tracker, runs: dict, parent: str, status: str) -> None:
    tracker.end(_parent(runs, parent), status)


def open_trial(tracker, runs: dict, parent: str, trial: Trial, start_ms: int) -> None:
    """A trial that starts now, in the driver (local): its run, RUNNING, with its params."""
    runs[trial.hash] = tracker.start_trial(_parent(runs, parent), trial, {},
                                           start_time=start_ms)


def log_epoch(tracker, runs: dict, trial_hash: str, rows: list) -> None:
    """An epoch's rows of an open trial."""
    tracker.log_metrics(runs[trial_hash], rows)


def close_trial(tracker, runs: dict, trial: Trial, outcome: Outcome, wall_s: float,
                threads: dict, end_ms: int) -> str:
    """An open trial that has ended: timings and tags in one call, artifacts, its status."""
    run_id = runs.pop(trial.hash)
    tracker.log_batch(run_id, end_rows(outcome, wall_s, end_ms), tags=end_tags(outcome, threads))
    _artifacts(tracker, run_id, trial, outcome)
    tracker.end(run_id, MLFLOW_STATUS[outcome.status], end_time=end_ms)
    return run_id


def ended_trial(tracker, runs: dict, parent: str, trial: Trial, outcome: Outcome, rows: list,
                wall_s: float, threads: dict, start_ms: int) -> str:
    """A trial that ran elsewhere (pool, ray) and has ended: its run created with every tag,
    params and all metrics in one log_batch (up to 1000), artifacts, its status."""
    end_ms = start_ms + int(1000 * wall_s)
    run_id = tracker.start_trial(_parent(runs, parent), trial, end_tags(outcome, threads),
                                 start_time=start_ms,
                                 rows=[*rows, *end_rows(outcome, wall_s, end_ms)])
    _artifacts(tracker, run_id, trial, outcome)
    tracker.end(run_id, MLFLOW_STATUS[outcome.status], end_time=end_ms)
    return run_id


def killed_trial(tracker, runs: dict, parent: str, trial: Trial, why: str) -> str:
    """A trial that was interrupted, or whose worker died: a KILLED run (its open one, if it
    has one), so that a re-run fills the gap."""
    run_id = runs.pop(trial.hash, None)
    if run_id is None:
        run_id = tracker.start_trial(_parent(runs, parent), trial,
                                     {STATUS_TAG: "killed", ERROR_TAG: why})
    else:
        tracker.set_tags(run_id, {STATUS_TAG: "killed", ERROR_TAG: why})
    tracker.end(run_id, "KILLED", end_time=now_ms())
    return run_id
