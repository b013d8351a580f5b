"""Where trials run: `local` (one after another, in the driver), `pool` (worker processes,
started with spawn, reused by every sweep of the invocation) and `ray` (a task per trial on
a Ray cluster) (SPEC 4.7).

Who writes to MLflow (SPEC 4.5): with a SQLite store the driver is the one writer, and a
remote trial hands its records back when it ends; with an http:// tracking server each
worker logs its own trial as it goes. A worker that dies takes its trials with it: they are
marked KILLED, never left RUNNING, and a re-run fills the gap.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from harness.config import Trial
from harness.sweep import records
from harness.sweep.threads import THREAD_VARS, cores, pinned_threads, restore, threads_in_use
from harness.sweep.tracking import Tracker, now_ms
from harness.sweep.train import Outcome, Sink, run_trial
from harness.sweep.writer import POLL_S


@dataclass
class Done:
    """What the driver learns of a finished trial, wherever it ran."""

    trial: Trial
    outcome: Outcome
    run_id: str
    wall_s: float


class WriterSink(Sink):
    """A running trial's epochs, handed to the writer as they end."""

    def __init__(self, writer, trial: Trial, progress=None):
        self.writer, self.trial, self.bar = writer, trial, progress

    def metrics(self, rows):
        self.writer.submit(records.log_epoch, self.trial.hash, rows)

    def progress(self, epoch, epochs, loss):
        if self.bar is not None:
            self.bar.epoch(self.trial, epoch, epochs, loss)


class _Buffer(Sink):
    def __init__(self):
        self.rows = []

    def metrics(self, rows):
        self.rows += rows


class Inline:
    """A writer that writes at once, in this process (a worker logging to a server)."""

    def __init__(self, tracker):
        self.tracker, self.runs = tracker, {}

    def submit(self, fn, *args, then=None):
        value = fn(self.tracker, self.runs, *args)
        if then is not None:
            then(value)

    def poll(self, timeout=None):
        pass


def _then(on_done, trial: Trial, outcome: Outcome, wall: float):
    """The callback that reports a trial to the driver once the writer has its run id."""
    return lambda run_id: on_done(Done(trial, outcome, run_id, wall))


def logged_trial(writer, parent: str, trial: Trial, on_done, progress=None) -> None:
    """Open the trial's run, train with its epochs logged as they end, close it; the driver
    hears of it (`on_done`) once the writer has written it."""
    writer.submit(records.open_trial, parent, trial, now_ms())
    start = time.perf_counter()
    try:
        outcome = run_trial(trial, WriterSink(writer, trial, progress))
    except KeyboardInterrupt:
        writer.submit(records.killed_trial, parent, trial, "interrupted")
        raise
    wall = time.perf_counter() - start
    writer.submit(records.close_trial, trial, records.slim(outcome), wall, threads_in_use(),
                  now_ms(), then=_then(on_done, trial, outcome, wall))


def run_local(writer, parent: str, todo: list[Trial], on_done, progress,
              threads: int | None = None) -> None:
    """In the driver, one after another; with `threads`, BLAS and torch pinned to that many
    (without, the libraries' defaults: on a busy machine their spinning threads can make a
    small model ten times slower)."""
    with pinned_threads(threads):
        for trial in todo:
            logged_trial(writer, parent, trial, on_done, progress)
            writer.poll()


# ----------------------------------------------------------------------------- remote work


def _started(folder: str | None, trial: Trial) -> None:
    """A worker marks the trials it has begun, so that the driver knows, should the worker
    die, which trials went with it and which had not started. The marker holds the worker's
    pid, which says who is inside which trial (the fault tests kill by it)."""
    if folder:
        with open(os.path.join(folder, trial.hash), "w") as f:
            f.write(str(os.getpid()))


def buffered_work(trial: Trial, started: str | None = None):
    """In a worker: train, keep the records, hand them back (the driver writes them)."""
    _started(started, trial)
    start_ms = int(time.time() * 1000)
    start = time.perf_counter()
    sink = _Buffer()
    outcome = run_trial(trial, sink)
    return outcome, sink.rows, start_ms, time.perf_counter() - start, threads_in_use()


def direct_work(trial: Trial, uri: str, experiment: str, parent: str,
                started: str | None = None):
    """In a worker, with a tracking server: log the trial to it directly."""
    _started(started, trial)
    done = []
    logged_trial(Inline(Tracker(uri, experiment)), parent, trial, done.append)
    done[0].outcome.params = {}  # the driver needs no weights: they are in the run's artifacts
    return done[0]


def finish_buffered(writer, parent: str, trial: Trial, result, on_done) -> None:
    """In the driver: hand the records a worker handed back to the writer."""
    outcome, rows, start_ms, wall, threads = result
    writer.submit(records.ended_trial, parent, trial, records.slim(outcome), rows, wall,
                  threads, start_ms, then=_then(on_done, trial, outcome, wall))


def mark_killed(writer, parent: str, trial: Trial, why: str, on_done=None) -> None:
    """A trial whose worker died: a KILLED run, so that a re-run fills the gap."""
    outcome = Outcome(status="killed", error=why)
    writer.submit(records.killed_trial, parent, trial, why,
                  then=None if on_done is None else _then(on_done, trial, outcome, 0.0))


@dataclass(frozen=True)
class Store:
    """Where the trials are logged (a Tracker has both fields too)."""

    uri: str
    experiment: str


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


class Pool:
    """The invocation's worker processes: started by its first pool sweep and reused by every
    later one (tuning, the trials, each round of seeds; with `run_folder`, every file), so
    that workers are spawned, import their backend and load their data once per invocation
    instead of once per sweep. A sweep that needs another size (fewer trials than workers,
    other threads) gets a pool of that size in its place; a worker that dies breaks the pool,
    and `discard` makes the next sweep start a fresh one. `close` at the invocation's end.

    No initializer: a worker imports torch only when it runs a torch trial (2 s a worker, for
    nothing, on a NumPy sweep), and torch then takes its thread count from OMP_NUM_THREADS,
    which the workers inherit (run_pool sets it before they are spawned; pinned by
    tests/test_pool_reuse.py)."""

    def __init__(self):
        self._executor: ProcessPoolExecutor | None = None
        self._size: tuple[int, int] | None = None  # (workers, threads)

    def get(self, workers: int, threads: int) -> ProcessPoolExecutor:
        if self._executor is not None and self._size != (workers, threads):
            self.close()
        if self._executor is None:
            self._executor = ProcessPoolExecutor(max_workers=workers,
                                                 mp_context=mp.get_context("spawn"))
            self._size = (workers, threads)
        return self._executor

    def pids(self) -> list[int]:
        """The live workers' process ids (spawned on demand, as trials are submitted)."""
        procs = getattr(self._executor, "_processes", None) or {}
        return sorted(p.pid for p in procs.values() if p.is_alive())

    def discard(self, kill: bool = False) -> None:
        """Drop a broken (or, with `kill`, an interrupted) pool without waiting on it."""
        if self._executor is None:
            return
        if kill:
            for proc in list(getattr(self._executor, "_processes", {}).values()):
                proc.terminate()
        self._executor.shutdown(wait=not kill, cancel_futures=True)
        self._executor, self._size = None, None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor, self._size = None, None


def run_pool(writer, tracker, parent: str, todo: list[Trial], on_done, workers: int,
             threads: int | None = None, pool: Pool | None = None) -> None:
    """N spawned workers; threads per worker so that workers x threads <= cores, unless
    `threads` says otherwise. On `pool`, kept for the next sweep (else one of its own)."""
    own = pool is None
    pool = Pool() if own else pool
    workers = max(1, min(workers, len(todo)))
    threads = threads or max(1, cores() // workers)
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})  # inherited by the spawn
    queue = list(todo)
    try:
        with tempfile.TemporaryDirectory(prefix="harness-started-") as started:
            while queue:  # a pool breaks when a worker dies: start another for the rest
                queue = _pool_round(writer, tracker, parent, queue, on_done,
                                    pool.get(workers, threads), pool, started)
    finally:
        restore(saved)
        if own:
            pool.close()


def _pool_round(writer, tracker, parent, queue, on_done, executor, pool,
                started) -> list[Trial]:
    """Run the queue on one pool; return what is left if a worker died."""
    direct = is_server(tracker.uri)
    futures = {}
    began = lambda t: os.path.exists(os.path.join(started, t.hash))  # noqa: E731
    try:
        for t in queue:
            fut = (executor.submit(direct_work, t, tracker.uri, tracker.experiment, parent,
                                   started)
                   if direct else executor.submit(buffered_work, t, started))
            futures[fut] = t
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
            writer.poll()
            # what finished well is recorded first, should a broken one end this round
            for fut in sorted(finished, key=lambda f: f.exception() is not None):
                trial = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:  # a worker died (SIGKILL, the OOM killer)
                    pool.discard()
                    left = [t for f, t in futures.items()
                            if not (f.done() and f.exception() is None)]
                    for t in left:
                        if began(t):
                            mark_killed(writer, parent, t, "its worker process died",
                                        on_done)
                    return [t for t in left if not began(t)]
                del futures[fut]
                if direct:
                    on_done(result)
                else:
                    finish_buffered(writer, parent, trial, result, on_done)
        return []
    except KeyboardInterrupt:
        pool.discard(kill=True)
        for t in futures.values():
            if began(t):
                mark_killed(writer, parent, t, "interrupted")
        raise


def run_ray(writer, tracker, parent: str, todo: list[Trial], on_done,
            address: str | None) -> None:
    """A Ray task per trial, asking for one CPU (and a GPU for a gpu trial); a local cluster
    when no address is given. Tasks are not retried: a crash is a KILLED trial."""
    import ray  # deferred: ray takes seconds to import and only --executor ray needs it

    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False, configure_logging=False)
    direct = is_server(tracker.uri)
    refs = {}
    for t in todo:
        opts = {"num_cpus": 1, "num_gpus": 1 if t.device == "gpu" else 0, "max_retries": 0}
        if direct:
            ref = ray.remote(direct_work).options(**opts).remote(t, tracker.uri,
                                                                 tracker.experiment, parent)
        else:
            ref = ray.remote(buffered_work).options(**opts).remote(t)
        refs[ref] = t
    try:
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=POLL_S)
            writer.poll()
            for ref in ready:
                trial = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError,
                        ray.exceptions.TaskCancelledError) as exc:
                    mark_killed(writer, parent, trial, f"ray: {type(exc).__name__}", on_done)
                    continue
                if direct:
                    on_done(result)
                else:
                    finish_buffered(writer, parent, trial, result, on_done)
    except KeyboardInterrupt:
        for ref, trial in refs.items():
            ray.cancel(ref, force=True)
            mark_killed(writer, parent, trial, "interrupted")
        raise
