"""`harness run`: read, check, expand, skip what is done, train the rest, log, tabulate.

The driver creates the experiment and the parent run before any trial starts; where the
trials run, and who writes their records, is executors.py's business (SPEC 4.5).
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.config import ConfigErrors, Trial, load
from harness.errors import EXIT_USAGE, refuse
from harness.names import EXECUTOR_TAG, FILE_TAG, OVERRIDES_TAG, STATUS_TAG, TRIALS_TAG
from harness.sweep import executors, records, rounds
from harness.sweep.preflight import preflight
from harness.sweep.results import TrialsTable
from harness.sweep.threads import cores
from harness.sweep.tracking import (
    Tracker,
    TrackingUnavailable,
    context_tags,
    default_uri,
    new_store,
)
from harness.sweep.train import Outcome
from harness.sweep.tuning import choose, tuned, tuning_trials
from harness.sweep.writer import Writer, WriterError

EXIT_OK, EXIT_TRIAL_FAILED, EXIT_INTERRUPTED = 0, 1, 130
# trials.csv is rewritten whole (50 ms at 300 rows, in the driver: at every trial's end that
# was 8 s of the main job's wall), so at most this often while trials end, and at the end
# of every list of trials, interrupted or not; a killed driver's rows are rebuilt from the
# store by the re-run
TABLE_EVERY_S = 2.0


class Progress:
    """On a terminal, a tqdm bar over trials with the running trial's epoch and loss; in a
    log (stderr a pipe or a file: CI, `| tee`), one line per finished trial and no bar, whose
    carriage-return updates would leave hundreds of repeated lines; `--quiet`: nothing."""

    def __init__(self, total: int, done: int, name: str, quiet: bool):
        self.quiet = quiet
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm  # deferred: a log (no terminal) never needs it

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


class _Interrupted(KeyboardInterrupt):
    pass


def _on_sigterm(signum, frame):
    raise _Interrupted(f"signal {signum}")


@dataclass(frozen=True)
class RunOptions:
    """How `harness run` runs a file; the CLI's flags, with its defaults."""

    results: str | Path = "results"  # tables and plots go to <results>/<name>/
    tracking_uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else the results' sqlite
    dry_run: bool = False  # list the trials, run nothing
    executor: str = "local"  # local, pool or ray
    workers: int | None = None  # pool workers (default: the cores)
    threads: int | None = None  # BLAS and torch threads per trial (local and pool)
    address: str | None = None  # the Ray cluster (default: a local one)
    quiet: bool = False  # no progress bar or per-trial lines


def run(file, overrides=(), options: RunOptions = RunOptions(),
        pool: executors.Pool | None = None) -> int:
    """Sweep an experiment file: the exit code of SPEC 1 (0, 1, 2 or 130). With `tune:`,
    every arm's tuning trials run first (results/<name>/tuning.csv), then the arms on the
    experiment's seeds with their chosen values (harness/sweep/tuning.py). `pool`: worker
    processes to run on and leave running (run_folder's, shared by its files); without, the
    invocation's own, shut down at its end."""
    o = options
    try:
        exp, trials = load(file, list(overrides))
        tuning, where = tuning_trials(trials) if exp.tune else ([], {})
    except ConfigErrors as exc:
        return refuse(exc.errors)
    errors = preflight(str(file), tuning + trials, exp.sweep)
    if errors:
        return refuse(errors)
    if o.dry_run:
        return _dry_run(exp, trials, tuning)

    results = Path(o.results)
    uri = o.tracking_uri or default_uri(results)
    context = context_tags()  # on the parent and every child: versions, host, commit
    # spawned first: it imports mlflow and opens the store while the driver reads it (or,
    # for a new SQLite store, which has nothing to read, trains the first trial)
    writer = Writer(uri, exp.name, context)
    try:
        tracker = None if new_store(uri) else Tracker(uri, exp.name, context)
    except TrackingUnavailable as exc:
        writer.stop()
        print(f"{exc}\nnothing was run or written; start the server or pass another "
              "--tracking-uri", file=sys.stderr)
        return EXIT_TRIAL_FAILED
    except BaseException:
        writer.stop()
        raise
    stale = tracker.close_stale() if tracker is not None else 0
    done = tracker.finished() if tracker is not None else {}
    total = len(tuning) + len(trials)
    already = sum(t.hash in done for t in tuning + trials)
    progress = Progress(total, already, exp.name, o.quiet)
    if not o.quiet:
        tuned_too = f" ({len(tuning)} tuning)" if tuning else ""
        progress.line(f"{exp.name}: {total} trials{tuned_too}, {already} already "
                      f"finished, {total - already} to run; tracking {uri}"
                      + (f"; marked {stale} stale RUNNING runs KILLED" if stale else ""))
    parent_tags = {FILE_TAG: str(file), TRIALS_TAG: str(total), EXECUTOR_TAG: o.executor,
                   OVERRIDES_TAG: json.dumps(list(overrides))}
    sweep = _Sweep(o, executors.Store(uri, exp.name), writer, lambda: (
        f"{exp.name} {time.strftime('%Y-%m-%d %H:%M:%S')}", parent_tags), progress, done,
        pool)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    skipped = 0
    try:
        try:
            if tuning:
                table = sweep.run(tuning, results / exp.name / "tuning.csv")
                choices = choose(tuning, where, table.rows)
                final = tuned(trials, choices)
                skipped = len(trials) - len(final)
                for a, c in choices.items():
                    progress.line(f"tuned {a[0]} on {a[1]}/{a[2]}: {c.describe()}")
                trials = final
            table = sweep.run(trials, results / exp.name / "trials.csv")
            if exp.seed_rounds and exp.expect:
                _rounds(exp, trials, table, sweep, progress)
        finally:  # the default SIGTERM back before anything is closed
            signal.signal(signal.SIGTERM, previous)
    except KeyboardInterrupt:
        sweep.close("KILLED")
        progress.close()
        print(f"interrupted: trials that were running are marked KILLED; to finish the "
              f"rest:\n  {command(file, overrides, o)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException:
        sweep.close(None)
        raise
    sweep.close("FINISHED")  # an invocation that ran nothing leaves no empty parent
    progress.close()
    statuses = sweep.statuses
    counts = {s: statuses.count(s) for s in ("finished", "diverged", "failed", "killed")}
    print(f"{exp.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + (f", {skipped} not run (their arm's tuning found nothing)" if skipped else "")
          + f"; table {table.path}", file=sys.stderr)
    ok = counts["finished"] == len(statuses) and not skipped
    if not ok and counts["failed"] + counts["killed"]:
        print(f"to run the failed and killed trials again:\n  {command(file, overrides, o)}",
              file=sys.stderr)
    return EXIT_OK if ok else EXIT_TRIAL_FAILED


def command(file, overrides, options: RunOptions) -> str:
    """The command line that runs this invocation again, to paste as it is."""
    words = ["python", "-m", "harness", "run",
             str(file)]
    for item in overrides:
        words += ["--set", item]
    if str(options.results) != "results":
        words += ["--results", str(options.results)]
    if options.tracking_uri:
        words += ["--tracking-uri", options.tracking_uri]
    if options.executor != "local":
        words += ["--executor", options.executor]
    if options.workers:
        words += ["--workers", str(options.workers)]
    if options.threads:
        words += ["--threads", str(options.threads)]
    if options.address:
        words += ["--address", options.address]
    return shlex.join(words)


class _Sweep:
    """Runs lists of trials within one invocation: each list's table, resumed from what the
    store has finished, every trial's line, and the statuses of all. One writer process and
    (--executor pool) one pool of workers serve every list: tuning, trials, each round."""

    def __init__(self, options: RunOptions, store, writer: Writer, parent_run, progress,
                 done: dict, pool: executors.Pool | None = None):
        self.options, self.store, self.writer = options, store, writer
        self.parent_run = parent_run  # () -> (name, tags) of the parent run
        self.progress, self.done = progress, done
        self.parent: str | None = None  # created with the first trial that runs
        self.statuses: list[str] = []
        self.own_pool = pool is None  # else the caller's, left running for its next file
        self.pool = executors.Pool() if pool is None else pool  # workers start on first use

    def start_parent(self) -> str:
        """The parent run, by the writer: its id, or records.PARENT where no worker needs
        the id (the writer's jobs resolve it), so that the first trial waits for nothing."""
        ids = []
        self.writer.submit(records.open_parent, *self.parent_run(), then=ids.append)
        if not executors.is_server(self.store.uri):
            return records.PARENT
        self.writer.flush()  # workers log to the server themselves: they need the id
        return ids[0]

    def close(self, status: str | None) -> None:
        """End the parent run with `status` (if one was started), then stop the writer once
        it has written everything, and the pool's workers (unless the pool is the caller's).
        `None`: an error is on its way out; stop without waiting on the writer."""
        try:
            if status is None:
                self.writer.stop()
                return
            try:
                if self.parent is not None:
                    self.writer.submit(records.end_parent, self.parent, status)
                self.writer.close()
            except WriterError as exc:
                if status != "KILLED":
                    raise
                print(f"{exc}", file=sys.stderr)  # the interrupt is what the user asked for
        finally:
            if self.own_pool:
                self.pool.close()

    def run(self, trials: list[Trial], path: Path, table: TrialsTable | None = None
            ) -> TrialsTable:
        """Run what of `trials` the store has not finished, into `table` (a new one at
        `path`, or an earlier one extended by these trials)."""
        if table is None:
            table = TrialsTable(path, trials)
        else:
            table.order += [t.hash for t in trials if t.hash not in table.order]
        for t in trials:
            if t.hash in self.done:
                table.from_run(t, self.done[t.hash])
                self.statuses.append(self.done[t.hash].data.tags.get(STATUS_TAG, "finished"))
        todo = [t for t in trials if t.hash not in self.done]
        ran, written = [], [time.perf_counter()]

        def on_done(done) -> None:
            """Every finished (or killed) trial, wherever it ran: its row and its line."""
            out = done.outcome
            table.add(done.trial, out.status, {**out.final, "time/wall_s": done.wall_s,
                                                "time/setup_s": out.setup_s,
                                                "time/train_s": out.train_s},
                      done.run_id, out.error)
            if time.perf_counter() - written[0] >= TABLE_EVERY_S:
                table.write()
                written[0] = time.perf_counter()
            ran.append(out.status)
            self.statuses.append(out.status)
            self.progress.advance()
            self.progress.line(summary_line(len(ran), len(todo), done.trial, out, done.wall_s))

        if todo and self.parent is None:
            self.parent = self.start_parent()
        try:
            if todo:
                execute(self.options, self.store, self.parent, todo, on_done,
                        self.progress, self.writer, self.pool)
        finally:
            table.write()
        return table


def _rounds(exp, trials: list[Trial], table: TrialsTable, sweep: _Sweep, progress) -> None:
    """Seeds until decided: judge after each round, add seeds to the undecided claims' arms
    (harness/sweep/rounds.py), until every claim is decided or the plan's max is reached."""
    p, verdicts, look = rounds.plan(exp), None, 0
    while True:
        rows = [table.rows[h] for h in table.order if h in table.rows]
        verdicts, new = rounds.next_round(p, look, exp, trials, rows, verdicts)
        decided = sum(v.verdict in ("PASS", "FAIL") for v in verdicts)
        progress.line(f"look {look + 1} ({p.looks[look]} seeds a side): {decided} of "
                      f"{len(verdicts)} claim rows decided"
                      + (f"; {len(new)} more trials" if new else ""))
        if not new:
            return
        sweep.run(new, table.path, table)
        trials = [*trials, *new]
        look += 1


def execute(options: RunOptions, tracker, parent: str, todo: list[Trial], on_done,
            progress, writer, pool: executors.Pool | None = None) -> None:
    """Run `todo` on the chosen executor, its writes through `writer`, flushed before this
    returns; on an interrupt, what had finished is written and the rest marked KILLED.
    `pool`: the invocation's workers (--executor pool), kept for its next sweep."""
    try:
        if options.executor == "ray":
            executors.run_ray(writer, tracker, parent, todo, on_done, options.address)
        elif options.executor == "pool" and len(todo) > 1:
            executors.run_pool(writer, tracker, parent, todo, on_done,
                               options.workers or cores(), options.threads, pool)
        else:
            executors.run_local(writer, parent, todo, on_done, progress, options.threads)
    except KeyboardInterrupt:
        try:
            writer.flush()
        except WriterError as exc:  # the interrupt is what the user asked for: say, go on
            print(f"{exc}", file=sys.stderr)
        raise
    writer.flush()


def _dry_run(exp, trials: list[Trial], tuning: list[Trial] = ()) -> int:
    print(f"{exp.name}: {len(tuning) + len(trials)} trials (dry run: nothing is run or "
          "written)")
    width = len(str(len(trials) + len(tuning)))
    if tuning:
        print(f"  tuning: {len(tuning)} trials, then the {len(trials)} below with each arm's "
              "chosen values")
        for t in tuning:
            print(f"  {'t':>{width}}  {t.hash}  {t.label}")
    for t in trials:
        print(f"  {t.index:>{width}}  {t.hash}  {t.label}")
    return EXIT_OK


def run_folder(folder, overrides=(), options: RunOptions = RunOptions()) -> int:
    """Every experiment file of a folder, in name order, each into its own MLflow experiment,
    on one pool of workers (--executor pool). All files are read and checked first: one bad
    file refuses the lot (exit 2) before anything runs. The exit code is the worst of the
    files' (130 stops at once)."""
    files = sorted(Path(folder).glob("*.yaml"))
    if not files:
        print(f"{folder}: no *.yaml experiment file", file=sys.stderr)
        return EXIT_USAGE
    errors = []
    for f in files:
        try:
            load(f, list(overrides))
        except ConfigErrors as exc:
            errors += exc.errors
    if errors:
        return refuse(errors)
    codes = {}
    t0 = time.perf_counter()
    pool = executors.Pool()  # one set of workers for every file (--executor pool)
    try:
        for f in files:
            codes[f.name] = run(f, overrides, options, pool)
            if codes[f.name] == EXIT_INTERRUPTED:
                return EXIT_INTERRUPTED
    finally:
        pool.close()
    print(f"{folder}: {len(files)} experiments in {time.perf_counter() - t0:.0f} s; "
          + ", ".join(f"{name} exit {code}" for name, code in codes.items()), file=sys.stderr)
    return max(codes.values())
