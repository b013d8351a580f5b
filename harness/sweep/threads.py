"""Threads: how many BLAS and torch threads a trial runs with, pinned and recorded.

On 2 shared cores OpenBLAS's and torch's spinning threads can slow a small model tenfold, so
the pool pins cores // workers per worker and `run --threads N` pins the local executor;
each run records its counts as `harness.threads.*` tags (SPEC 6: determinism needs them).
"""

from __future__ import annotations

import contextlib
import os
import sys

from harness.names import THREADS_TAG

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def threads_in_use() -> dict[str, str]:
    """The thread counts a trial ran with, as tags (SPEC 6: determinism needs them pinned)."""
    tags = {f"{THREADS_TAG}{k}": os.environ[k] for k in THREAD_VARS if k in os.environ}
    from threadpoolctl import threadpool_info  # deferred: only a trial that ran needs it

    tags[f"{THREADS_TAG}blas"] = str(max((i["num_threads"] for i in threadpool_info()),
                                         default=0))
    if "torch" in sys.modules:
        tags[f"{THREADS_TAG}torch"] = str(sys.modules["torch"].get_num_threads())
    return tags


@contextlib.contextmanager
def pinned_threads(threads: int | None):
    """BLAS (loaded: threadpoolctl; not yet loaded: the environment) and torch (imported:
    set_num_threads; not yet: OMP_NUM_THREADS, read at its import) to `threads`, restored
    after. None: nothing changes."""
    if threads is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    torch_before = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    os.environ.update({k: str(threads) for k in THREAD_VARS})
    if torch_before is not None:
        sys.modules["torch"].set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits  # deferred: only pinned trials need it

        with threadpool_limits(limits=threads):
            yield
    finally:
        restore(saved)
        if "torch" in sys.modules:  # imported inside: back to its default of one per core
            sys.modules["torch"].set_num_threads(torch_before or cores())


def restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
