"""What per-layer diagnostics cost a training step (issue 6; benchmarks/README.md).

    python -m benchmarks.diagnostics experiments/diagnostics.yaml --set "backends=[numpy]"

builds the file's first trial with its batch size, and times a plain training step and a
diagnostics step (`harness.sweep.diagnostics.Diagnostics.step`) alternately.
"""

from __future__ import annotations

import argparse
import time
import timeit

import numpy as np

from harness.config import load
from harness.debug.check import case
from harness.sweep.diagnostics import Diagnostics


def overhead(file: str, overrides: list[str], pairs: int = 30) -> dict:
    """Milliseconds of a plain training step and of a diagnostics step, the file's first trial
    and batch size: the median over `pairs` of each, taken alternately, so that both see the
    same machine load (a shared machine drifts more than a whole-trial comparison can show)."""
    trial = load(file, overrides)[1][0]
    c = case(trial, trial.experiment.train.batch_size)
    trainer = c.build(compile=trial.experiment.train.compile)
    diag = Diagnostics(c.spec, 1, trial.seed)
    plain, measured = [], []
    for i in range(pairs + 3):  # the first 3 of each warm up: imports, compiles, caches
        t0 = time.perf_counter()
        trainer.train_step(c.x, c.y, c.masks)
        t1 = time.perf_counter()
        diag.step(trainer, c.x, c.y, c.masks, i, [])
        t2 = time.perf_counter()
        if i >= 3:
            plain.append(t1 - t0)
            measured.append(t2 - t1)
    return {"trial": trial.label, "batch": len(c.x), "step_ms": 1000 * np.median(plain),
            "diag_ms": 1000 * np.median(measured)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.diagnostics",
                                description="what per-layer diagnostics cost a training step")
    p.add_argument("file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--pairs", type=int, default=30, help="steps of each kind timed")
    args = p.parse_args(argv)
    r = overhead(args.file, args.set, args.pairs)
    hook = None  # off: the loop's one test of a None hook (timeit's lambda call counted too)
    off_ns = 1e9 * min(timeit.repeat(lambda: hook is not None, number=100_000,
                                     repeat=5)) / 100_000
    ratio = r["diag_ms"] / r["step_ms"]
    print(f"trial: {r['trial']}, batch {r['batch']}, median of {args.pairs} steps each")
    print(f"plain step {r['step_ms']:.2f} ms; diagnostics step {r['diag_ms']:.2f} ms: "
          f"{ratio:.2f}x")
    for every in (1, 10, 100):
        print(f"  diag_every {every:>3}: the training steps take {(ratio - 1) / every:+.1%}")
    print(f"off: {off_ns:.0f} ns a step for the test of the hook, "
          f"{off_ns * 1e-6 / r['step_ms']:.1e} of a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
