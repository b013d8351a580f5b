"""The driver's one MLflow writer: a process of its own that makes every trial's writes, so
that neither the training loop (local) nor the collection of results (pool, ray) waits on
SQLite, MLflow or matplotlib (issue 16; SPEC 4.5: still one writer per store).

A thread would not do: MLflow's SQLAlchemy store is Python, and would take the GIL from a
local trial's training loop; a process runs on another core. It is spawned once per
invocation, at its start, and imports mlflow and opens the store (a new one: creates it)
while the driver reads the file and trains the first trial.

Jobs are module-level functions (harness/sweep/records.py) called as `fn(tracker, runs,
*args)` in the writer, first in, first out: a trial's run is created before its epochs are
logged, and its epochs before it is closed. What a job returns comes back to the driver's
`then` callback, run in the driver's thread by `poll` and `flush`. A job that raises stops
the writer: the jobs after it are dropped (nothing half-written goes on), every job before
it is in the store once, and the driver gets `WriterError` at its next submit, poll or
flush. The writer ignores SIGINT (Ctrl-C reaches the whole process group), so that an
interrupted driver can flush what had finished before it marks the rest KILLED; it exits on
`close`, or by itself once the driver is gone.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import traceback

POLL_S = 0.2  # how often a waiting side looks again (and the writer checks its driver)


class WriterError(RuntimeError):
    """A write of the driver's writer failed; what it wrote before is in the store."""


def _serve(uri: str, experiment: str, context: dict, jobs, results, driver: int) -> None:
    """The writer process: run jobs until told to stop or until the driver has gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results.cancel_join_thread()  # exiting never waits on a driver that reads no more
    from harness.sweep.tracking import Tracker

    tracker, runs, failed, broke = None, {}, False, None
    try:  # at once, not on the first job: mlflow's import and the store's opening (or its
        # creation, for a new one) overlap the driver's start and its first trial
        tracker = Tracker(uri, experiment, context)
    except BaseException:  # noqa: BLE001 -- reported with the first job
        broke = traceback.format_exc()
    while True:
        try:
            item = jobs.get(timeout=POLL_S)
        except queue.Empty:
            if os.getppid() != driver:  # the driver died: nobody will read the results
                return
            continue
        if item is None:
            return
        job_id, fn, args = item
        if failed:
            results.put((job_id, "dropped", None))
            continue
        if broke is not None:
            failed = True
            results.put((job_id, "error", broke))
            continue
        try:
            results.put((job_id, "ok", fn(tracker, runs, *args)))
        except BaseException:  # noqa: BLE001 -- reported to the driver, which raises it
            failed = True
            results.put((job_id, "error", traceback.format_exc()))


class Writer:
    """The driver's handle on its writer process."""

    def __init__(self, uri: str, experiment: str, context: dict):
        ctx = mp.get_context("spawn")
        self._jobs, self._results = ctx.Queue(), ctx.Queue()
        self._proc = ctx.Process(target=_serve, name="harness-writer", daemon=True,
                                 args=(uri, experiment, context, self._jobs, self._results,
                                       os.getpid()))
        self._proc.start()
        self._pending: dict[int, object] = {}  # job id -> callback (or None)
        self._next = 0
        self._error: str | None = None

    def submit(self, fn, *args, then=None) -> None:
        """Queue `fn(tracker, runs, *args)`; `then(result)` runs in the driver once it has."""
        self.poll()
        self._pending[self._next] = then
        self._jobs.put((self._next, fn, args))
        self._next += 1

    def poll(self, timeout: float | None = None) -> None:
        """Run the callbacks of the jobs done (waiting up to `timeout` for the first); raise
        the writer's failure, if it had one."""
        while self._pending:
            try:
                job_id, status, value = self._results.get(timeout=timeout) if timeout \
                    else self._results.get_nowait()
            except queue.Empty:
                break
            timeout = None
            then = self._pending.pop(job_id)
            if status == "error" and self._error is None:
                self._error = value
            elif status == "ok" and then is not None:
                then(value)
        self.check()

    def check(self) -> None:
        if self._error is not None:
            raise WriterError(f"writing to MLflow failed in the writer process:\n{self._error}")
        if self._pending and not self._proc.is_alive() and self._results.empty():
            raise WriterError(f"the writer process died (exit code {self._proc.exitcode}) "
                              f"with {len(self._pending)} writes not done")

    def flush(self) -> None:
        """Wait until every job has run and its callback too."""
        while self._pending:
            self.poll(timeout=POLL_S)

    def close(self) -> None:
        """Flush, then stop the process."""
        try:
            self.flush()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the process after the jobs already queued (their callbacks are not run); one
        that was given no job is killed at once (a re-run that found everything done)."""
        if self._next == 0 and self._proc.is_alive():
            self._proc.kill()
        if self._proc.is_alive():
            self._jobs.put(None)
        for _ in range(int(60 / POLL_S)):
            self._proc.join(timeout=POLL_S)
            if not self._proc.is_alive():
                break
            while True:  # results nobody will read, so that the writer's pipe never fills
                try:
                    self._results.get_nowait()
                except queue.Empty:
                    break
        if self._proc.is_alive():
            self._proc.kill()
        self._pending.clear()  # their results were dropped above
