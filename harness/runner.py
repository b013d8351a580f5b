"""`harness run`: read, check, expand, skip what is done, train the rest, log, tabulate.

The driver creates the experiment and the parent run before any trial starts; where the
trials run, and who writes their records, is harness/executors.py's business (SPEC 4.5).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from .config import Trial
from .results import TrialsTable
from .train import Outcome

EXIT_OK, EXIT_TRIAL_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MLFLOW_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED",
                 "killed": "KILLED"}


class Progress:
    """On a terminal, a tqdm bar over trials with the running trial's epoch and loss; in a
    log (stderr a pipe or a file: CI, `| tee`), one line per finished trial and no bar, whose
    carriage-return updates would leave hundreds of repeated lines; `--quiet`: nothing."""

    def __init__(self, total: int, done: int, name: str, quiet: bool):
        self.quiet = quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=name, unit="trial",
                            dynamic_ncols=True, file=sys.stderr)

    def epoch(self, trial: Trial, epoch: int, epochs: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{trial.label} epoch {epoch}/{epochs} loss {loss:.4g}")

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        elif not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary_line(n: int, total: int, trial: Trial, outcome: Outcome, wall_s: float) -> str:
    keys = [k for k in ("val/accuracy", "val/mae", "val/loss") if k in outcome.final]
    shown = "  ".join(f"{k}={outcome.final[k]:.4g}" for k in keys)
    why = f"  ({outcome.error})" if outcome.error else ""
    return (f"[{n:>{len(str(total))}}/{total}] {outcome.status.upper():<8} {trial.label}  "
            f"{shown}  {wall_s:.1f} s{why}")


def record(tracker, run_id: str, trial: Trial, outcome: Outcome, wall_s: float) -> None:
    """Everything a finished trial leaves in MLflow but its step metrics."""
    import numpy as np
    import yaml

    from .plots import loss_curve

    now = int(time.time() * 1000)
    timings = {"time/setup_s": outcome.setup_s, "time/train_s": outcome.train_s,
               "time/wall_s": wall_s}
    tracker.log_metrics(run_id, [(k, v, outcome.steps, now) for k, v in timings.items()])
    tags = {"harness.status": outcome.status, "harness.device_name": outcome.device_name,
            "harness.steps": outcome.steps}
    if outcome.error:
        tags["harness.error"] = outcome.error
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


class _Interrupted(KeyboardInterrupt):
    pass


def _on_sigterm(signum, frame):
    raise _Interrupted(f"signal {signum}")


def run(args) -> int:
    from . import config
    from .preflight import preflight
    from .validate import ConfigErrors

    try:
        exp, trials = config.load(args.file, args.set or [])
    except ConfigErrors as exc:
        return _refuse(exc.errors)
    errors = preflight(str(args.file), trials, exp.sweep)
    if errors:
        return _refuse(errors)
    if args.dry_run:
        return _dry_run(exp, trials)

    from .tracking import Tracker, TrackingUnavailable, default_uri

    results = Path(args.results)
    uri = args.tracking_uri or default_uri(results)
    try:
        tracker = Tracker(uri, exp.name)
    except TrackingUnavailable as exc:
        print(f"{exc}\nnothing was run or written; start the server or pass another "
              "--tracking-uri", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    stale = tracker.close_stale()
    done = tracker.finished()
    table = TrialsTable(results / exp.name / "trials.csv", trials)
    for t in trials:
        if t.hash in done:
            table.from_run(t, done[t.hash])
    todo = [t for t in trials if t.hash not in done]
    progress = Progress(len(trials), len(trials) - len(todo), exp.name, args.quiet)
    if not args.quiet:
        progress.line(f"{exp.name}: {len(trials)} trials, {len(trials) - len(todo)} already "
                      f"finished, {len(todo)} to run; tracking {uri}"
                      + (f"; marked {stale} stale RUNNING runs KILLED" if stale else ""))
    parent = tracker.start_parent(f"{exp.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                  {"harness.file": str(args.file),
                                   "harness.trials": str(len(trials)),
                                   "harness.executor": args.executor})
    statuses: list[str] = []

    def on_done(done) -> None:
        """Every finished (or killed) trial, wherever it ran: its row and its line."""
        o = done.outcome
        table.add(done.trial, o.status, {**o.final, "time/wall_s": done.wall_s,
                                          "time/setup_s": o.setup_s, "time/train_s": o.train_s},
                  done.run_id, o.error)
        table.write()
        statuses.append(o.status)
        progress.advance()
        progress.line(summary_line(len(statuses), len(todo), done.trial, o, done.wall_s))

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        execute(args, tracker, parent, todo, on_done, progress)
    except KeyboardInterrupt:
        tracker.end(parent, "KILLED")
        table.write()
        progress.close()
        print(f"interrupted: trials that were running are marked KILLED; re-run "
              f"{args.file} to finish the rest", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    tracker.end(parent, "FINISHED")
    table.write()
    progress.close()
    statuses += [done[t.hash].data.tags.get("harness.status", "finished") for t in trials
                 if t.hash in done]
    counts = {s: statuses.count(s) for s in ("finished", "diverged", "failed", "killed")}
    print(f"{exp.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f"; table {table.path}", file=sys.stderr)
    return EXIT_OK if counts["finished"] == len(statuses) else EXIT_TRIAL_FAILED


def execute(args, tracker, parent: str, todo: list[Trial], on_done, progress) -> None:
    from . import executors

    if args.executor == "ray":
        executors.run_ray(tracker, parent, todo, on_done, args.address)
    elif args.executor == "pool" and len(todo) > 1:
        executors.run_pool(tracker, parent, todo, on_done, args.workers or cores(),
                           getattr(args, "threads", None))
    else:
        executors.run_local(tracker, parent, todo, on_done, progress,
                            getattr(args, "threads", None))


def _refuse(errors) -> int:
    n = len(errors)
    print(f"refused: {n} error{'s' if n != 1 else ''} in the configuration; nothing was run "
          "or written", file=sys.stderr)
    for e in errors:
        print(f"  {e}", file=sys.stderr)
    return EXIT_USAGE


def _dry_run(exp, trials: list[Trial]) -> int:
    print(f"{exp.name}: {len(trials)} trials (dry run: nothing is run or written)")
    width = len(str(len(trials)))
    for t in trials:
        print(f"  {t.index:>{width}}  {t.hash}  {t.label}")
    return EXIT_OK


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
