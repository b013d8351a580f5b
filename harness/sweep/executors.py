"""Where trials run: `local` (one after another, in the driver), `pool` (worker processes,
started with spawn and reused) and `ray` (a task per trial on a Ray cluster) (SPEC 4.7).

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
from harness.names import ERROR_TAG, STATUS_TAG
from harness.sweep.records import record
from harness.sweep.threads import THREAD_VARS, cores, pinned_threads, restore, threads_in_use
from harness.sweep.tracking import Tracker, now_ms
from harness.sweep.train import Outcome, Sink, run_trial


@dataclass
class Done:
    """What the driver learns of a finished trial, wherever it ran."""

    trial: Trial
    outcome: Outcome
    run_id: str
    wall_s: float


class TrackerSink(Sink):
    """Writes a running trial's epochs to MLflow as they end."""

    def __init__(self, tracker, run_id: str, trial: Trial, progress=None):
        self.tracker, self.run_id, self.trial, self.bar = tracker, run_id, trial, progress

    def metrics(self, rows):
        self.tracker.log_metrics(self.run_id, rows)

    def progress(self, epoch, epochs, loss):
        if self.bar is not None:
            self.bar.epoch(self.trial, epoch, epochs, loss)


class _Buffer(Sink):
    def __init__(self):
        self.rows = []

    def metrics(self, rows):
        self.rows += rows


def logged_trial(tracker, parent: str, trial: Trial, progress=None) -> Done:
    """Create the trial's run, train with its epochs logged as they end, record the rest."""
    run_id = tracker.start_trial(parent, trial, {})
    start = time.perf_counter()
    try:
        outcome = run_trial(trial, TrackerSink(tracker, run_id, trial, progress))
    except KeyboardInterrupt:
        tracker.set_tags(run_id, {STATUS_TAG: "killed"})
        tracker.end(run_id, "KILLED", end_time=now_ms())
        raise
    wall = time.perf_counter() - start
    tracker.set_tags(run_id, threads_in_use())
    record(tracker, run_id, trial, outcome, wall)
    return Done(trial, outcome, run_id, wall)


def run_local(tracker, parent: str, todo: list[Trial], on_done, progress,
              threads: int | None = None) -> None:
    """In the driver, one after another; with `threads`, BLAS and torch pinned to that many
    (without, the libraries' defaults: on a busy machine their spinning threads can make a
    small model ten times slower)."""
    with pinned_threads(threads):
        for trial in todo:
            on_done(logged_trial(tracker, parent, trial, progress))


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
    done = logged_trial(Tracker(uri, experiment), parent, trial)
    done.outcome.params = {}  # the driver needs no weights: they are in the run's artifacts
    return done


def finish_buffered(tracker, parent: str, trial: Trial, result) -> Done:
    """In the driver: write the records a worker handed back."""
    outcome, rows, start_ms, wall, threads = result
    run_id = tracker.start_trial(parent, trial, {}, start_time=start_ms)
    tracker.log_metrics(run_id, rows)
    tracker.set_tags(run_id, threads)
    record(tracker, run_id, trial, outcome, wall)
    return Done(trial, outcome, run_id, wall)


def mark_killed(tracker, parent: str, trial: Trial, why: str) -> Done:
    """A trial whose worker died: a KILLED run, so that a re-run fills the gap."""
    run_id = tracker.start_trial(parent, trial, {})
    tracker.set_tags(run_id, {STATUS_TAG: "killed", ERROR_TAG: why})
    tracker.end(run_id, "KILLED")
    return Done(trial, Outcome(status="killed", error=why), run_id, 0.0)


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _init_worker(threads: int) -> None:
    try:
        import torch  # deferred: only a worker that will train torch trials needs it

        torch.set_num_threads(threads)
    except ImportError:
        pass


def run_pool(tracker, parent: str, todo: list[Trial], on_done, workers: int,
             threads: int | None = None) -> None:
    """N spawned workers; threads per worker so that workers x threads <= cores, unless
    `threads` says otherwise."""
    workers = max(1, min(workers, len(todo)))
    threads = threads or max(1, cores() // workers)
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})  # inherited by the spawn
    queue = list(todo)
    try:
        with tempfile.TemporaryDirectory(prefix="harness-started-") as started:
            while queue:  # a pool breaks when a worker dies: start another for the rest
                queue = _pool_round(tracker, parent, queue, on_done, workers, threads, started)
    finally:
        restore(saved)


def _pool_round(tracker, parent, queue, on_done, workers, threads, started) -> list[Trial]:
    """Run the queue on one pool; return what is left if a worker died."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    direct = _is_server(tracker.uri)
    futures = {}
    began = lambda t: os.path.exists(os.path.join(started, t.hash))  # noqa: E731
    try:
        for t in queue:
            fut = (pool.submit(direct_work, t, tracker.uri, tracker.experiment, parent, started)
                   if direct else pool.submit(buffered_work, t, started))
            futures[fut] = t
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            # what finished well is recorded first, should a broken one end this round
            for fut in sorted(finished, key=lambda f: f.exception() is not None):
                trial = futures[fut]
                try:
                    result = fut.result()
                except BrokenProcessPool:  # a worker died (SIGKILL, the OOM killer)
                    left = [t for f, t in futures.items()
                            if not (f.done() and f.exception() is None)]
                    for t in left:
                        if began(t):
                            on_done(mark_killed(tracker, parent, t, "its worker process died"))
                    return [t for t in left if not began(t)]
                del futures[fut]
                on_done(result if direct else finish_buffered(tracker, parent, trial, result))
        return []
    except KeyboardInterrupt:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        for t in futures.values():
            if began(t):
                mark_killed(tracker, parent, t, "interrupted")
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_ray(tracker, parent: str, todo: list[Trial], on_done, address: str | None) -> None:
    """A Ray task per trial, asking for one CPU (and a GPU for a gpu trial); a local cluster
    when no address is given. Tasks are not retried: a crash is a KILLED trial."""
    import ray  # deferred: ray takes seconds to import and only --executor ray needs it

    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True,
             log_to_driver=False, configure_logging=False)
    direct = _is_server(tracker.uri)
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
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                trial = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError,
                        ray.exceptions.TaskCancelledError) as exc:
                    on_done(mark_killed(tracker, parent, trial, f"ray: {type(exc).__name__}"))
                    continue
                on_done(result if direct else finish_buffered(tracker, parent, trial, result))
    except KeyboardInterrupt:
        for ref, trial in refs.items():
            ray.cancel(ref, force=True)
            mark_killed(tracker, parent, trial, "interrupted")
        raise
