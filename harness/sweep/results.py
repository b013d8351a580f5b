"""`results/<name>/trials.csv`: one row per trial, rewritten whole at most every 2 s as
trials end and at the end of every list of trials, so a crash keeps what was done; a killed
driver's last rows are rebuilt from the store by the re-run (SPEC 4.6).

Columns: the trial's index, hash, status and error, its MLflow run, backend, device, seed
and sweep point; then its resolved config as dotted keys; then the final value of every
metric and the timings.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

from harness.config import Trial
from harness.config.expand import flatten
from harness.names import ERROR_TAG, STATUS_TAG

FIRST = ("index", "hash", "status", "error", "run_id", "backend", "device", "seed", "point")


def base_row(trial: Trial) -> dict:
    return {"index": trial.index, "hash": trial.hash, "backend": trial.backend,
            "device": trial.device, "seed": trial.seed, "point": trial.point_label,
            **flatten(trial.config)}


def _from_store(value: float) -> float:
    """MLflow stores an infinite metric (a target never reached) as the largest float."""
    return math.copysign(math.inf, value) if abs(value) >= sys.float_info.max else value


class TrialsTable:
    def __init__(self, path: Path, trials: list[Trial]):
        self.path = Path(path)
        self.order = [t.hash for t in trials]
        self.rows: dict[str, dict] = {}

    def add(self, trial: Trial, status: str, final: dict, run_id: str, error: str | None):
        self.rows[trial.hash] = {**base_row(trial), "status": status, "error": error or "",
                                 "run_id": run_id, **final}

    @classmethod
    def from_store(cls, path: Path, trials: list[Trial], runs: dict) -> TrialsTable:
        """Every trial's row from its run (trial hash -> MLflow run); one the store lacks is
        a "missing" row."""
        table = cls(path, trials)
        for t in trials:
            if t.hash in runs:
                table.from_run(t, runs[t.hash])
            else:
                table.add(t, "missing", {}, "", "no run in the store")
        return table

    def from_run(self, trial: Trial, run) -> None:
        """A trial finished by an earlier invocation: its row from its MLflow run."""
        tags = run.data.tags
        metrics = {k: _from_store(v) for k, v in run.data.metrics.items()}
        self.add(trial, tags.get(STATUS_TAG, "finished"), metrics, run.info.run_id,
                 tags.get(ERROR_TAG))

    def write(self) -> None:
        rows = [self.rows[h] for h in self.order if h in self.rows]
        if not rows:
            return
        columns = list(FIRST)
        for row in rows:
            columns += [k for k in row if k not in columns]
        metrics = sorted(c for c in columns if "/" in c)
        columns = [c for c in columns if "/" not in c] + metrics
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)  # atomic: a reader never sees half a table
