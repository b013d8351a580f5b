"""What a trial leaves in MLflow besides its step metrics (SPEC 4.5): timings, status tags,
and the artifacts `config.yaml` (the resolved config), `params.npz` (the final canonical
parameters), `loss_curve.png` and, for a failed trial, `traceback.txt`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from harness.config import Trial
from harness.draw.curves import loss_curve
from harness.names import DEVICE_NAME_TAG, ERROR_TAG, LAYERS_TAG, STATUS_TAG, STEPS_TAG
from harness.sweep.train import Outcome

MLFLOW_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                 "killed": "KILLED"}


def record(tracker, run_id: str, trial: Trial, outcome: Outcome, wall_s: float) -> None:
    """Everything a finished trial leaves in MLflow but its step metrics."""
    now = int(time.time() * 1000)
    timings = {"time/setup_s": outcome.setup_s, "time/train_s": outcome.train_s,
               "time/wall_s": wall_s}
    tracker.log_metrics(run_id, [(k, v, outcome.steps, now) for k, v in timings.items()])
    tags = {STATUS_TAG: outcome.status, DEVICE_NAME_TAG: outcome.device_name,
            STEPS_TAG: outcome.steps}
    if outcome.error:
        tags[ERROR_TAG] = outcome.error
    if outcome.layers:
        tags[LAYERS_TAG] = ",".join(outcome.layers)
    tracker.set_tags(run_id, tags)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        resolved = {**trial.config, "backend": trial.backend, "device": trial.device,
                    "seed": trial.seed}
        (tmp / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
        if outcome.traceback:
            (tmp / "traceback.txt").write_text(outcome.traceback)
        if outcome.params:
            np.savez(tmp / "params.npz", **outcome.params)
        if outcome.history.get("train/loss"):
            loss_curve(outcome.history, trial.label, tmp / "loss_curve.png")
        tracker.log_artifacts(run_id, tmp)
    tracker.end(run_id, MLFLOW_STATUS[outcome.status])
