"""Speedup of the `pool` executor over `local` on a CPU-bound sweep (issue 9).

    python benchmarks/pool_speedup.py [--workers 2] [--trials 8] [--epochs 150]

Runs the same sweep twice through `python -m harness run`, each into a fresh store: once
with `--executor local`, once with `--executor pool --workers N`, and prints the wall times
and their ratio. Both runs pin BLAS to one thread per process, so that the comparison is
of processes, not of BLAS's own threads; on an idle machine with N cores the ideal is N.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """\
name: pool_speedup
task: {{name: mario, n_train: 2000, n_val: 256, n_test: 256}}
model: {{arch: mlp, depth: 2, width: 256, activation: relu, init: he}}
optimizer: {{name: sgd, lr: 0.002}}
train: {{epochs: {epochs}, batch_size: 32}}
backends: [numpy]
seeds: {seeds}
"""


def timed_run(folder: Path, sweep: Path, *extra: str) -> float:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", str(sweep), "--results",
                    str(folder / "results"), "--tracking-uri", f"sqlite:///{folder}/m.db",
                    "--quiet", *extra], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=150,
                   help="epochs per trial; the default makes a trial about 5 s of compute")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep = tmp / "sweep.yaml"
        sweep.write_text(SWEEP.format(seeds=list(range(args.trials)), epochs=args.epochs))
        (tmp / "a").mkdir()
        (tmp / "b").mkdir()
        local = timed_run(tmp / "a", sweep, "--executor", "local")
        pool = timed_run(tmp / "b", sweep, "--executor", "pool", "--workers",
                         str(args.workers))
    print(f"| executor | wall s ({args.trials} trials x {args.epochs} epochs) |\n|---|---|\n"
          f"| local | {local:.1f} |\n| pool, {args.workers} workers | {pool:.1f} |\n\n"
          f"speedup {local / pool:.2f}x (ideal {args.workers}x on an idle machine with "
          f"{os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
