"""Speedup of the `pool` executor over `local` on a CPU-bound sweep (issue 9).

    python benchmarks/pool_speedup.py [--workers 2] [--trials 8] [--epochs 150] [--repeats 1]

Runs the same sweep twice through `python -m harness run`, each into a fresh store: once
with `--executor local`, once with `--executor pool --workers N`, and prints the wall times
and their ratio. Both runs pin BLAS to one thread per process, so that the comparison is
of processes, not of BLAS's own threads; on an idle machine with N cores the ideal is N.
With --repeats, local and pool alternate (L P L P ...) and the medians are compared: on a
shared machine a neighbour's burst then lands on both. Beside the walls: the trials' summed
`time/train_s` and `time/setup_s` (trials.csv), and the rest of the wall, the invocation's
fixed cost (start-up, MLflow, the last writes) plus, for the pool, the cores it did not get.

Then the machine's own ceiling, with no harness around the trials: the same trials' training
(`harness.sweep.train.run_trial`, no MLflow, no writer, no pool) run by one bare process,
then split between N bare processes that start together (each waits for a common instant
after its imports). Its ratio is the most any executor could get from N processes here; on
a VM whose vCPUs share a core, or whose trials contend for cache and memory, it is well
under N. The pool's speedup is then read against it.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import statistics
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
train: {{epochs: {epochs}, batch_size: 32, log_every: {log_every}}}
backends: [numpy]
seeds: {seeds}
"""


def one_thread_env() -> dict:
    """This process's environment with BLAS and OpenMP pinned to one thread per process."""
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def children_cpu() -> float:
    """CPU seconds, user and system, of every finished child process (and of theirs that
    they waited for: a pool's workers, the writer)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def timed_run(folder: Path, sweep: Path, *extra: str) -> tuple[float, float, float, float]:
    """(wall s, summed train_s, summed setup_s, CPU s of all its processes) of one
    invocation into a fresh store."""
    folder.mkdir()
    env = one_thread_env()
    cpu = children_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness", "run", str(sweep), "--results",
                    str(folder / "results"), "--tracking-uri", f"sqlite:///{folder}/m.db",
                    "--quiet", *extra], check=True, cwd=ROOT, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall, cpu = time.perf_counter() - start, children_cpu() - cpu
    with open(folder / "results" / "pool_speedup" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    return (wall, sum(float(r["time/train_s"]) for r in rows),
            sum(float(r["time/setup_s"]) for r in rows), cpu)


# one bare process: wait for the common instant, train its trials, print when it finished
BARE = """\
import sys, time
from harness import load
from harness.sweep.train import run_trial
_, trials = load(sys.argv[1])
mine = [t for i, t in enumerate(trials) if i % int(sys.argv[3]) == int(sys.argv[4])]
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
for t in mine:
    assert run_trial(t).status == "finished", t
print(len(mine), time.time())
"""


def bare(sweep: Path, processes: int) -> tuple[float, float, int]:
    """(seconds from a common start to the last of `processes` bare processes finishing,
    the CPU seconds of all of them, imports included, the trials they trained), the
    sweep's trials dealt round-robin between them."""
    cpu = children_cpu()
    env = one_thread_env()
    t0 = time.time() + 5.0  # after every process's imports
    procs = [subprocess.Popen([sys.executable, "-c", BARE, str(sweep), str(t0),
                               str(processes), str(i)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True) for i in range(processes)]
    ends, trained = [], 0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a bare process failed (exit {proc.returncode})")
        count, end = out.strip().splitlines()[-1].split()
        ends.append(float(end))
        trained += int(count)
    return max(ends) - t0, children_cpu() - cpu, trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=150,
                   help="epochs per trial; the default makes a trial about 5 s of compute")
    p.add_argument("--repeats", type=int, default=1, help="runs of each, alternating")
    p.add_argument("--log-every", type=int, default=1,
                   help="train.log_every: a step-loss row every n steps (the harness's default 1)")
    p.add_argument("--no-ceiling", action="store_true",
                   help="skip the bare processes (the machine's own ceiling)")
    args = p.parse_args()
    runs: dict[str, list] = {"local": [], "pool": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sweep = tmp / "sweep.yaml"
        sweep.write_text(SWEEP.format(seeds=list(range(args.trials)), epochs=args.epochs,
                                     log_every=args.log_every))
        for i in range(args.repeats):
            runs["local"].append(timed_run(tmp / f"local{i}", sweep, "--executor", "local"))
            runs["pool"].append(timed_run(tmp / f"pool{i}", sweep, "--executor", "pool",
                                          "--workers", str(args.workers)))
        ceiling = []
        if not args.no_ceiling:
            for _ in range(args.repeats):
                ceiling.append((bare(sweep, 1), bare(sweep, args.workers)))
    print(f"| executor | wall s ({args.trials} trials x {args.epochs} epochs) | sum train_s "
          "| sum setup_s | wall - sum / workers | CPU s, all processes |\n"
          "|---|---|---|---|---|---|")
    median = {}
    for name, n in (("local", 1), ("pool", args.workers)):
        walls = sorted(r[0] for r in runs[name])
        median[name] = statistics.median(walls)
        wall, train, setup, cpu = min(runs[name], key=lambda r: abs(r[0] - median[name]))
        shown = ", ".join(f"{w:.1f}" for w in walls)
        label = name if n == 1 else f"pool, {n} workers"
        print(f"| {label} | {shown} | {train:.1f} | {setup:.2f} | "
              f"{wall - (train + setup) / n:.1f} | {cpu:.1f} |")
    speedup = median["local"] / median["pool"]
    print(f"\nspeedup {speedup:.2f}x (medians; ideal "
          f"{args.workers}x on an idle machine with {os.cpu_count()} cores)")
    if ceiling:
        one = statistics.median(c[0][0] for c in ceiling)
        many = statistics.median(c[1][0] for c in ceiling)
        print(f"ceiling: the trials' training alone, no harness, 1 bare process "
              f"{one:.1f} s, {args.workers} at once {many:.1f} s: {one / many:.2f}x "
              f"(medians of {len(ceiling)}); the pool reaches {speedup / (one / many):.2f} "
              "of it")
        # the pool's wall cannot be under its processes' CPU shared out over the workers'
        # cores, whatever the executor does
        pool_cpu = statistics.median(r[3] for r in runs["pool"])
        print(f"CPU bound: the pool's processes used {pool_cpu:.1f} CPU s (the bare "
              f"processes {statistics.median(c[1][1] for c in ceiling):.1f}), so its wall "
              f"is at least {pool_cpu / args.workers:.1f} s on {args.workers} cores and its "
              f"speedup at most {median['local'] / (pool_cpu / args.workers):.2f}x")


if __name__ == "__main__":
    main()
