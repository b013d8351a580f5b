"""The `pool` executor: N worker processes, started with spawn and reused across trials.

Workers train and hand back their records (metrics, outcome); the driver, the one writer of
the store, creates each trial's run and logs it (SPEC 4.5). Each worker gets
cores // workers BLAS and torch threads, so workers x threads never exceed the cores.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

from .train import Sink, run_trial

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class _Buffer(Sink):
    def __init__(self):
        self.rows = []

    def metrics(self, rows):
        self.rows += rows


def _init_worker(threads: int) -> None:
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def _work(trial):
    start_ms = int(time.time() * 1000)
    start = time.perf_counter()
    sink = _Buffer()
    outcome = run_trial(trial, sink)
    return outcome, sink.rows, start_ms, time.perf_counter() - start


def run_pool(tracker, parent: str, todo, table, progress, workers: int | None) -> list[str]:
    from .runner import cores, record, summary_line

    workers = max(1, min(workers or cores(), len(todo)))
    threads = max(1, cores() // workers)
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})  # inherited by the spawn
    statuses = []
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))
    try:
        futures = {pool.submit(_work, t): t for t in todo}
        pending = set(futures)
        n = 0
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                trial = futures[fut]
                outcome, rows, start_ms, wall = fut.result()
                run_id = tracker.start_trial(parent, trial, {}, start_time=start_ms)
                tracker.log_metrics(run_id, rows)
                record(tracker, run_id, trial, outcome, wall)
                table.add(trial, outcome.status, {**outcome.final, "time/wall_s": wall,
                                                  "time/setup_s": outcome.setup_s,
                                                  "time/train_s": outcome.train_s},
                          run_id, outcome.error)
                table.write()
                n += 1
                progress.advance()
                progress.line(summary_line(n, len(todo), trial, outcome, wall))
                statuses.append(outcome.status)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return statuses
