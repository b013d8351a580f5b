"""Harness overhead: a trial against the same steps in a bare loop, and the CLI's fixed costs
(issue 4).

`harness.sweep.train.run_trial` on digits/LeNet and mario/MLP against `bare_trial`: the same data,
weights, batches (the same seed streams) and backend trainer, stepped in a plain loop with no
sink, no metrics and no divergence checks, evaluating the validation split once per epoch
as the trial does (`eval_train` is off in both). Measured in one run, alternately; warm (the
first trial of a process, which pays JAX's compile and the data load, is reported apart).
The goal: at most 1.05x for torch and JAX; PyTorch Lightning's parity test allows 1% + 0.1 s.

The full cost with MLflow: `python -m harness run` of a two-trial experiment against a
SQLite store in a temporary directory; its trials.csv gives time/setup_s, time/train_s and
time/wall_s per trial, and the rest of the process's wall time is start-up.

    asv run --python=same --bench overhead
    python -m benchmarks.overhead [--repeats 5]     # the tables of benchmarks/README.md
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import (
    BACKENDS,
    CLOCK,
    DEVICES,
    ROOT,
    THREADS,
    children_cpu_s,
    limit_threads,
    paired,
    require,
    thread_env,
)

# name -> (task, arch, epochs): trials of about 0.1 to 1 s, most of it training steps
TRIALS = {"digits-lenet": ("digits", "lenet", 3), "mario-mlp": ("mario", "mlp", 2)}
EXPERIMENT = """\
name: {name}
task: {{name: {task}}}
model: {{arch: {arch}, init: he}}
optimizer: {{name: sgd, lr: 0.01}}
train: {{epochs: {epochs}, batch_size: 64, eval_train: false}}
backends: {backends}
devices: [{device}]
seeds: [0]
"""
_tmpdir = functools.cache(lambda: tempfile.TemporaryDirectory(prefix="harness-bench-"))
COLD: dict = {}  # (trial, backend, device) -> the Outcome of the process's first such trial


def experiment_file(name: str, backends: list[str], device: str = "cpu",
                    folder: Path | None = None, epochs: int | None = None) -> Path:
    task, arch, default_epochs = TRIALS[name]
    epochs = epochs or default_epochs
    path = (Path(folder or _tmpdir().name)
            / f"bench-{name}-{'-'.join(backends)}-{device}-{epochs}.yaml")
    path.write_text(EXPERIMENT.format(name=f"bench-{name}", task=task, arch=arch,
                                      epochs=epochs, backends=f"[{', '.join(backends)}]",
                                      device=device))
    return path


def bare_trial(trial, evaluate: bool = True) -> tuple[float, float]:
    """(setup s, loop s): the trial's steps in a plain loop on its backend, as run_trial would
    take them: the same seed streams, batches and weights; no sink, no metrics."""
    from backends import load
    from harness.sweep.train import start

    t0 = time.perf_counter()
    exp, tr = trial.experiment, trial.experiment.train
    s = start(trial)
    data, order_rng = s.data, s.order_rng
    trainer = load(trial.backend).build(s.spec, s.params, s.buffers,
                                        exp.optimizer, device=trial.device,
                                        dtype=tr.dtype, rng=tr.rng, seed=trial.seed)
    x, y, n, b = data.x_train, data.y_train, len(data.x_train), exp.train.batch_size
    t1 = time.perf_counter()
    for _ in range(exp.train.epochs):
        order = order_rng.permutation(n)
        for i in range(n // b):
            idx = order[i * b:(i + 1) * b]
            trainer.train_step(x[idx], y[idx])
        if evaluate:
            for i in range(0, len(data.x_val), 1000):
                trainer.evaluate(data.x_val[i:i + 1000], data.y_val[i:i + 1000])
    return t1 - t0, time.perf_counter() - t1


@functools.cache
def make(name: str, backend: str, device: str, epochs: int | None = None):
    """(a callable running the trial, the trial), both it and the bare loop warmed up once;
    NotImplementedError to skip."""
    from harness.config import load
    from harness.sweep.train import run_trial

    require(backend, device)
    trial = load(experiment_file(name, [backend], device, epochs=epochs))[1][0]

    def harness():
        outcome = run_trial(trial)
        if outcome.status != "finished":
            raise RuntimeError(f"{name} on {backend}: {outcome.status}: {outcome.error}")
        return outcome

    COLD.setdefault((name, backend, device), harness())  # data load, imports, any compile
    bare_trial(trial)
    return harness, trial


class HarnessOverhead:
    """A trial's CPU time (setup, steps, per-epoch evaluation) over its bare loop's."""

    params = [list(TRIALS), BACKENDS, DEVICES]
    param_names = ["trial", "backend", "device"]
    timeout = 300
    timer = CLOCK

    def setup(self, name, backend, device):
        self.harness, trial = make(name, backend, device)
        self.bare = functools.partial(bare_trial, trial)
        limit_threads()

    def time_trial(self, name, backend, device):
        self.harness()

    def track_trial_over_bare(self, name, backend, device):
        return paired(self.harness, self.bare, repeats=5)[2]

    track_trial_over_bare.unit = "ratio"


def python(*args: str) -> None:
    """Run `python ARGS` from the repository root, with this process's thread limit."""
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True,
                   env=thread_env())


def help_over_python(repeats: int = 5, slow=lambda fn: fn) -> tuple[float, float, float]:
    """(median wall s of `python -m harness --help`, of `python -c pass`, median ratio of
    their CPU times), the two run alternately."""
    run_help = slow(functools.partial(python, "-m", "harness", "--help"))
    run_pass = functools.partial(python, "-c", "pass")
    wall_help, wall_pass, _ = paired(run_help, run_pass, repeats, clock=time.perf_counter)
    return wall_help, wall_pass, paired(run_help, run_pass, repeats, clock=children_cpu_s)[2]


class Cli:
    """`python -m harness --help`: imports argparse only, so it should cost a bare start-up."""

    timeout = 120

    def time_help(self):
        python("-m", "harness", "--help")

    def track_help_over_python(self):
        return help_over_python()[2]

    track_help_over_python.unit = "ratio"


# ----------------------------------------------------------------------------- the report


def wall_table(repeats: int, epochs: int) -> None:
    print(f"{epochs} epochs per trial; wall times (s) as run_trial reports them, medians of "
          f"{repeats}, harness and bare loops alternately; the CPU ratio is the gate's figure\n")
    print("| trial | backend | steps | harness train_s | bare steps + eval | ratio | bare "
          "steps only | excess s (Lightning allows 1% + 0.1 s) | CPU ratio, whole trial | "
          "setup_s | first trial: setup_s, train_s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in TRIALS:
        for backend in BACKENDS:
            try:
                harness, trial = make(name, backend, "cpu", epochs)
            except NotImplementedError:
                continue
            cold = COLD[(name, backend, "cpu")]
            runs = []
            for _ in range(repeats):
                out = harness()
                runs.append((out.train_s, out.setup_s, bare_trial(trial)[1],
                             bare_trial(trial, evaluate=False)[1], out.steps))
            train, setup, with_eval, steps_only, n = (statistics.median(c) for c in zip(*runs))
            cpu = paired(harness, functools.partial(bare_trial, trial), repeats)[2]
            excess, allowed = train - with_eval, 0.01 * with_eval + 0.1
            print(f"| {name} | {backend} | {n:.0f} | {train:.3f} | {with_eval:.3f} | "
                  f"{train / with_eval:.3f} | {steps_only:.3f} | {excess:+.3f} "
                  f"({'within' if excess <= allowed else 'over'}) | {cpu:.3f} | {setup:.3f} | "
                  f"{cold.setup_s:.3f}, {cold.train_s:.3f} |", flush=True)


def cli_table(backends: list[str], epochs: int) -> None:
    """`python -m harness run` with MLflow on SQLite, in a temporary directory, beside the
    first in-process trial of each backend (which pays the same first-use costs)."""
    import csv

    with tempfile.TemporaryDirectory(prefix="harness-cli-") as tmp:
        path = experiment_file("digits-lenet", backends, folder=Path(tmp), epochs=epochs)
        command = [sys.executable, "-m", "harness", "run", str(path), "--quiet", "--results",
                   f"{tmp}/results", "--tracking-uri", f"sqlite:///{tmp}/mlflow.db"]
        t0 = time.perf_counter()
        subprocess.run([*command, "--dry-run"], cwd=ROOT, check=True, env=thread_env(),
                       capture_output=True)
        dry = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, env=thread_env(), capture_output=True)
        total = time.perf_counter() - t0
        with open(Path(tmp) / "results" / "bench-digits-lenet" / "trials.csv") as f:
            rows = list(csv.DictReader(f))
    print(f"`python -m harness run` of digits/LeNet, {epochs} epochs, on {', '.join(backends)} "
          f"({THREADS or 'default'} thread(s)), MLflow on SQLite:\n")
    print("| trial | time/setup_s | time/train_s | time/wall_s | in-process first trial "
          "train_s | train_s with MLflow / without |")
    print("|---|---|---|---|---|---|")
    walls = 0.0
    for r in rows:
        s, t, w = (float(r[f"time/{k}"]) for k in ("setup_s", "train_s", "wall_s"))
        walls += w
        cold = COLD.get(("digits-lenet", r["backend"], "cpu"))
        alone = "-" if cold is None else f"{cold.train_s:.3f} | {t / cold.train_s:.2f}"
        print(f"| {r['backend']} | {s:.3f} | {t:.3f} | {w:.3f} | {alone} |")
    rest = total - dry - walls
    print(f"\nprocess wall {total:.2f} s = start-up and config check {dry:.2f} s (the same "
          f"command with --dry-run) + trials {walls:.2f} s + the rest, {rest:.2f} s "
          f"({rest / len(rows):.2f} s per trial): MLflow's experiment, parent and trial "
          f"runs, params, tags and artifacts (the loss-curve plot imports matplotlib), and "
          f"the tables")


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="harness overhead against bare loops")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=10, help="per trial (the gate's are shorter)")
    args = ap.parse_args(argv)
    limit_threads()
    print(f"{THREADS or 'default'} thread(s); CPU ratio clock: {CLOCK.__name__}\n")
    wall_table(args.repeats, args.epochs)
    print()
    cli_table([b for b in BACKENDS if b != "numpy"], args.epochs)
    h, p, r = help_over_python(args.repeats)
    print(f"\n`python -m harness --help`: {1e3 * h:.0f} ms wall; `python -c pass`: "
          f"{1e3 * p:.0f} ms; CPU ratio {r:.2f}")


if __name__ == "__main__":
    main()
