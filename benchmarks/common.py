"""What every benchmark shares: optional imports, skips, thread limits, timing and the roofline.

A framework is imported only by the benchmark that needs it, inside `setup()`; a missing
framework or device raises NotImplementedError there, which is asv's way to skip a
parameter combination (scipy's benchmarks/benchmarks/common.py does the same with its
`safe_import`). Nothing here imports torch or jax at module level, except `preimport` under
asv, for its forkserver.

Threads: every benchmark runs with `HARNESS_BENCH_THREADS` threads per library (default 1;
0 leaves OpenBLAS, torch and XLA at their defaults). One thread each is what stays steady on
a shared 2-core machine; the roofline is measured with the same setting, so the fractions
compare like with like.

Timing: a sample is as many calls as take at least 20 ms (so that it spans many scheduler
slices), timed with `CLOCK`: the process's CPU time when one thread runs the work (it leaves
out the time other processes hold the core, the main noise on a shared machine), else wall
time. `median_seconds` takes the median of several samples after a warmup; `paired` runs
two callables alternately, so that both see the same machine load, and returns the median
of their per-sample ratio as well. Every figure the CI gate compares is such a ratio.
"""

from __future__ import annotations

import functools
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BACKENDS = ["numpy", "torch", "jax"]
DEVICES = ["cpu", "gpu"]
THREADS = int(os.environ.get("HARNESS_BENCH_THREADS", "1"))
ROOF_N = 1024  # the roofline's sgemm is (ROOF_N x ROOF_N) @ (ROOF_N x ROOF_N), float32
CLOCK = time.process_time if THREADS == 1 else time.perf_counter
SAMPLE_S = 0.02  # the shortest sample: shorter ones swing by 2x on a loaded machine

_XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


class safe_import:
    """`with safe_import(): import torch` -- an ImportError is swallowed, as in scipy's
    benchmarks/benchmarks/common.py; `.error` says whether one happened."""

    def __enter__(self):
        self.error = False
        return self

    def __exit__(self, type_, value, traceback):
        if type_ is not None and issubclass(type_, ImportError):
            self.error = True
            return True
        return False


def preimport() -> None:
    """Under asv (which sets ASV=true), import the installed backends once, in its forkserver:
    every benchmark runs in a forked child, which then skips a multi-second torch import."""
    import backends

    for name in backends.BACKENDS:
        if backends.installed(name):
            with safe_import():
                backends.load(name)


_limits = []  # keeps threadpoolctl's limit object alive


def limit_threads() -> None:
    """Cap OpenBLAS, torch and XLA at THREADS threads (idempotent; a no-op for THREADS = 0).

    XLA's limit holds only if no JAX computation has run yet in this process."""
    if THREADS <= 0:
        return
    if _XLA_ONE_THREAD not in os.environ.get("XLA_FLAGS", ""):
        # XLA reads its flags when its CPU client starts, at the first JAX computation
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_ONE_THREAD}".strip()
    if not _limits:
        # scipy's own OpenBLAS (the NumPy backend's shifted-slab conv accumulates with its
        # gemm) must be loaded before the cap, which reaches only the libraries loaded now
        import scipy.linalg.blas  # noqa: F401
        from threadpoolctl import threadpool_limits

        _limits.append(threadpool_limits(limits=THREADS, user_api="blas"))
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != THREADS:
            torch.set_num_threads(THREADS)


def thread_env() -> dict[str, str]:
    """os.environ for a child process, with the same thread limit as this one."""
    env = dict(os.environ)
    if THREADS > 0:
        for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[key] = str(THREADS)
    return env


def gpu_present() -> bool:
    """Whether this machine has a GPU driver at all; checked before any framework is imported."""
    return (any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/kfd"))
            or shutil.which("nvidia-smi") is not None)


def require(backend: str, device: str):
    """The backend module `backends.<backend>`, or NotImplementedError (asv's skip) when its
    framework is not installed or the device is absent."""
    import backends

    if backend not in backends.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    if not backends.installed(backend):
        raise NotImplementedError(f"{backend} is not installed")
    if device == "gpu" and not gpu_present():
        raise NotImplementedError("no GPU on this machine")
    with safe_import() as imported:
        module = backends.load(backend)
    if imported.error:
        raise NotImplementedError(f"{backend} does not import")
    limit_threads()
    if device not in module.devices():
        raise NotImplementedError(f"{backend} sees no {device}")
    return module


def synchronizer(backend: str, device: str):
    """A function that waits for a result to be computed (asynchronous GPU and XLA work)."""
    if backend == "jax":
        import jax

        return jax.block_until_ready
    if backend == "torch" and device == "gpu":
        import torch

        def sync(result):
            torch.cuda.synchronize()
            return result

        return sync
    return lambda result: result


# ----------------------------------------------------------------------------- timing


def calibrate(fn, min_sample_s: float = SAMPLE_S, max_number: int = 1000, clock=None) -> int:
    """How many calls make one sample last at least min_sample_s (asv's sample_time idea)."""
    clock = clock or CLOCK
    number = 1
    while number < max_number:
        t0 = clock()
        for _ in range(number):
            fn()
        if clock() - t0 >= min_sample_s:
            return number
        number *= 4
    return max_number


def _sample(fn, number: int, clock) -> float:
    t0 = clock()
    for _ in range(number):
        fn()
    return (clock() - t0) / number


def median_seconds(fn, repeats: int = 5, warmup: int = 1, clock=None) -> float:
    """Median seconds per call over `repeats` samples, after `warmup` calls."""
    clock = clock or CLOCK
    for _ in range(warmup):
        fn()
    number = calibrate(fn, clock=clock)
    return statistics.median(_sample(fn, number, clock) for _ in range(repeats))


def paired(fa, fb, repeats: int = 5, warmup: int = 2, clock=None) -> tuple[float, float, float]:
    """(median s/call of fa, of fb, median of the per-sample ratio fa/fb), fa and fb timed
    alternately so that a change in the machine's load hits both."""
    clock = clock or CLOCK
    for _ in range(warmup):
        fa()
        fb()
    na, nb = calibrate(fa, clock=clock), calibrate(fb, clock=clock)
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_sample(fa, na, clock))
        tb.append(_sample(fb, nb, clock))
    ratio = statistics.median(a / b for a, b in zip(ta, tb))
    return statistics.median(ta), statistics.median(tb), ratio


def children_cpu_s() -> float:
    """CPU seconds used so far by this process's finished children: a clock for subprocesses."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- roofline


@functools.cache
def sgemm(device: str, n: int = ROOF_N):
    """(a callable doing one float32 n^3 matrix product on `device`, its FLOPs).

    The roofline: NumPy's BLAS on the CPU (OpenBLAS here), cuBLAS through torch on a GPU
    (TF32 off, as the torch backend builds it), else XLA through JAX.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2 * n**3
    if device == "cpu":
        limit_threads()
        out = np.empty((n, n), np.float32)
        return (lambda: np.matmul(a, b, out=out)), flops
    if not gpu_present():
        raise NotImplementedError("no GPU on this machine")
    import backends

    if backends.installed("torch"):
        require("torch", "gpu")
        import torch

        ta, tb = (torch.from_numpy(m).cuda() for m in (a, b))

        def run():
            torch.mm(ta, tb)
            torch.cuda.synchronize()

        return run, flops
    require("jax", "gpu")
    import jax
    import jax.numpy as jnp

    dev = jax.devices("gpu")[0]
    ja, jb = (jax.device_put(m, dev) for m in (a, b))
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, precision=jax.lax.Precision.HIGHEST))
    return (lambda: mm(ja, jb).block_until_ready()), flops


@functools.cache
def roofline_gflops(device: str, repeats: int = 5) -> float:
    """This machine's float32 sgemm rate on `device`, GFLOP/s, measured once per process."""
    fn, flops = sgemm(device)
    return flops / median_seconds(fn, repeats) / 1e9


def roofline_fraction(fn, flops: float, device: str, repeats: int = 5) -> float:
    """fn's FLOP rate as a fraction of the sgemm roofline, the two timed alternately."""
    roof, roof_flops = sgemm(device)
    _, _, ratio = paired(fn, roof, repeats)  # t_fn / t_roof
    return (flops / roof_flops) / ratio


if os.environ.get("ASV") == "true":
    preimport()
