"""The CPU the driver's writer spends on the pool path, beside the trials' own (issue 16).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/writer_cpu.py [--trials 8]
        [--epochs 30]

Trains pool_speedup.py's trials in this process with no MLflow (the worker's part:
`executors.buffered_work`), then does, in this process and timed with its CPU clock, what
the writer process does for them: import mlflow and open a new store (`Tracker`), then one
`records.ended_trial` job per trial (the run with its params and tags, every step metric in
log_batch calls of up to 1000 rows, config.yaml, params.npz and loss_curve.svg). On 2 busy
cores this CPU cannot hide behind the workers' training: it is what keeps a pool of short
trials from its ideal.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pool_speedup import SWEEP  # noqa: E402
from harness import load  # noqa: E402
from harness.sweep import records  # noqa: E402
from harness.sweep.executors import buffered_work  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "sweep.yaml").write_text(SWEEP.format(seeds=list(range(args.trials)),
                                                     epochs=args.epochs, log_every=1))
        _, trials = load(tmp / "sweep.yaml")
        t0 = time.process_time()
        done = [buffered_work(t) for t in trials]
        t1 = time.process_time()
        from harness.sweep.tracking import Tracker  # imports mlflow

        tracker = Tracker(f"sqlite:///{tmp}/m.db", "pool_speedup", {})
        t2 = time.process_time()
        runs: dict = {}
        records.open_parent(tracker, runs, "writer_cpu", {})
        t3 = time.process_time()
        for trial, (outcome, rows, start_ms, wall, threads) in zip(trials, done):
            records.ended_trial(tracker, runs, records.PARENT, trial, records.slim(outcome),
                                rows, wall, threads, start_ms)
        t4 = time.process_time()
    n = len(trials)
    print(f"| CPU s | {n} trials x {args.epochs} epochs |\n|---|---|\n"
          f"| the trials' training, no MLflow | {t1 - t0:.2f} ({(t1 - t0) / n:.3f} a trial) |\n"
          f"| the writer: import mlflow, open a new store | {t2 - t1:.2f} |\n"
          f"| the writer: parent run | {t3 - t2:.2f} |\n"
          f"| the writer: {n} `ended_trial` jobs, {len(done[0][1])} metric rows a trial | "
          f"{t4 - t3:.2f} ({(t4 - t3) / n:.3f} a trial) |")


if __name__ == "__main__":
    main()
