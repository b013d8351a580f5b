"""NumPy conv beside torch's own CPU kernels, forward + backward (issues 2 and 16).

A standalone script, not a test: it is the only place outside backends/torch that imports
torch. For each layer it times, in float32, the forward and the full backward (dx, dW, db) of
backends/numpy/layers.py (on the path its dispatch picks) and of
torch.nn.functional.conv{2,3}d + autograd, on the same shapes, and reports the median of
several repeats after warmup, the GFLOP/s of each, the NumPy path's peak extra memory
(tracemalloc) and, as the roofline, this machine's sgemm rate measured in the same run.

    python benchmarks/conv_numpy_vs_torch.py [--repeats 7] [--warmup 2] [--threads N]
        [--clock wall|cpu] [--path im2col|shifted] [--paths]

--paths times instead NumPy's two paths against each other (layers.CONV_PATH forced to
"im2col", then to "shifted", alternately), on these layers and on the convolutions of the
harness's archs (PATH_LAYERS): the numbers behind the dispatch rule of layers.py.
--path forces NumPy's path for the main table (im2col is the code before issue 16).
--clock cpu times with the process's CPU time, which a loaded machine disturbs less than the
wall clock; it is meaningful only with --threads 1 (every thread's time is summed).

FLOPs: forward 2 N F prod(O) C prod(K); forward + backward is 3x that (dx and dW cost one
forward each; db is negligible).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backends.numpy import layers  # noqa: E402

# (name, x shape, filters, kernel, padding, target ratio numpy/torch: issue 16)
LAYERS = [
    ("wide 2D", (32, 64, 16, 16), 64, 3, 1, 1.5),
    ("wide 3D", (8, 32, 16, 16, 16), 32, 3, 1, 1.5),
    ("narrow 2D", (64, 16, 32, 32), 32, 3, 1, 2.0),
]
# (name, x shape, filters, kernel, stride, padding, transposed): the convolutions of the
# harness's archs at their experiments' batch sizes (backends/archs.py; digits 8x8 at 64,
# shapes3d 16^3 at 32, sdf 16^3 at 16), a 1x1 and a stride-2 one (both im2col by the rule)
# and stride-1 transposed convs
PATH_LAYERS = [
    *((name, x, f, k, 1, p, False) for name, x, f, k, p, _ in LAYERS),
    ("lenet conv1", (64, 1, 8, 8), 6, 3, 1, 1, False),
    ("lenet conv2", (64, 6, 4, 4), 16, 3, 1, 1, False),
    ("resnet stage1", (64, 16, 8, 8), 16, 3, 1, 1, False),
    ("resnet stage2", (64, 32, 4, 4), 32, 3, 1, 1, False),
    ("resnet stage3", (64, 64, 2, 2), 64, 3, 1, 1, False),
    ("resnet down", (64, 16, 8, 8), 32, 3, 2, 1, False),
    ("inception 5x5", (64, 8, 8, 8), 8, 5, 1, 2, False),
    ("1x1", (64, 32, 8, 8), 16, 1, 1, 0, False),
    ("RGB in", (32, 3, 16, 16), 16, 3, 1, 1, False),
    ("one filter", (32, 16, 16, 16), 1, 3, 1, 1, False),
    ("unet3d enc0 in", (16, 1, 16, 16, 16), 8, 3, 1, 1, False),
    ("unet3d enc0", (16, 8, 16, 16, 16), 8, 3, 1, 1, False),
    ("unet3d enc1", (16, 16, 8, 8, 8), 16, 3, 1, 1, False),
    ("unet3d enc2", (16, 32, 4, 4, 4), 32, 3, 1, 1, False),
    ("vgg3d conv1", (32, 8, 16, 16, 16), 8, 3, 1, 1, False),
    ("transposed 2D", (32, 32, 16, 16), 32, 3, 1, 1, True),
    ("transposed 3D", (8, 16, 8, 8, 8), 16, 3, 1, 1, True),
]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter


def median_ms(fn, repeats: int, warmup: int) -> float:
    return median_ms_pair(fn, None, repeats, warmup)[0]


def median_ms_pair(fa, fb, repeats: int, warmup: int) -> tuple[float, float]:
    """Median wall times of fa and fb, run alternately so both see the same machine load."""
    fns = [f for f in (fa, fb) if f is not None]
    for _ in range(warmup):
        for f in fns:
            f()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for f, ts in zip(fns, times):
            t0 = clock()
            f()
            ts.append(clock() - t0)
    medians = [1e3 * statistics.median(ts) for ts in times]
    return medians[0], (medians[1] if fb is not None else float("nan"))


def sgemm_gflops(repeats: int, n: int = 2048) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / median_ms(lambda: a @ b, repeats, 1) / 1e6


def peak_bytes(fn) -> int:
    """Peak memory that one call of fn allocates beyond what was live before (tracemalloc).

    The shifted path's scratch buffers, which outlive a call, are dropped first, so that the
    call allocates them again and they count."""
    import threading

    layers._SCRATCH = threading.local()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def numpy_problem(xshape, filters, k, stride, pad, transposed, seed=0):
    """(step, flops): one NumPy fwd+bwd of the layer on standard normal float32 data."""
    nd = len(xshape) - 2
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xshape, dtype=np.float32)
    wshape = (xshape[1], filters) if transposed else (filters, xshape[1])
    w = rng.standard_normal((*wshape, *(k,) * nd), dtype=np.float32) / math.sqrt(
        xshape[1] * k**nd)
    b = np.zeros(filters, np.float32)
    if transposed:
        def fwd():
            return layers.conv_transpose_forward(x, w, b, stride, pad, 0, 1)
        bwd = layers.conv_transpose_backward
    else:
        def fwd():
            return layers.conv_forward(x, w, b, stride, pad, 1)
        bwd = layers.conv_backward
    out_shape = fwd()[0].shape
    dout = rng.standard_normal(out_shape, dtype=np.float32)

    def step():
        _, cache = fwd()
        return bwd(dout, cache)

    # a conv multiplies each output position by C K^d weights per filter; a transposed conv
    # each input position
    positions = math.prod((xshape if transposed else out_shape)[2:]) * xshape[0]
    return step, 3 * 2 * positions * filters * xshape[1] * k**nd


def with_path(path, fn):
    def run():
        layers.CONV_PATH = path
        try:
            return fn()
        finally:
            layers.CONV_PATH = None
    return run


def bench_paths(repeats, warmup):
    print("| layer | input | filters | im2col ms | shifted ms | shifted/im2col "
          "| im2col GFLOP/s | shifted GFLOP/s | im2col peak MiB | shifted peak MiB | rule picks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, xshape, filters, k, stride, pad, transposed in PATH_LAYERS:
        step, flops = numpy_problem(xshape, filters, k, stride, pad, transposed)
        old, new = with_path("im2col", step), with_path("shifted", step)
        old_ms, new_ms = median_ms_pair(old, new, repeats, warmup)
        nd = len(xshape) - 2
        lo = ((k - 1) - pad if transposed else pad,) * nd
        picks = layers._conv_path((xshape[1], filters), xshape[2:], (k,) * nd, (stride,) * nd,
                                  lo, lo, (1,) * nd)
        kern = "x".join([str(k)] * nd)
        geom = f"{kern} s{stride} p{pad}" + (" transposed" if transposed else "")
        print(f"| {name} | {xshape} | {filters} {geom} | {old_ms:.2f} | {new_ms:.2f} "
              f"| {new_ms / old_ms:.2f} | {flops / old_ms / 1e6:.0f} | {flops / new_ms / 1e6:.0f} "
              f"| {peak_bytes(old) / 2**20:.1f} | {peak_bytes(new) / 2**20:.1f} | {picks} |")


def bench(xshape, filters, k, pad, repeats, warmup):
    import torch
    import torch.nn.functional as F

    nd = len(xshape) - 2
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xshape, dtype=np.float32)
    w = (rng.standard_normal((filters, xshape[1], *(k,) * nd), dtype=np.float32)
         / math.sqrt(xshape[1] * k**nd))
    b = np.zeros(filters, np.float32)
    out_shape = layers.conv_forward(x, w, b, 1, pad, 1)[0].shape
    dout = rng.standard_normal(out_shape, dtype=np.float32)

    def numpy_step():
        _, cache = layers.conv_forward(x, w, b, 1, pad, 1)
        return layers.conv_backward(dout, cache)

    conv = F.conv2d if nd == 2 else F.conv3d
    xt, wt, bt = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, w, b))
    dt = torch.from_numpy(dout)

    def torch_step():
        for t in (xt, wt, bt):
            t.grad = None
        conv(xt, wt, bt, padding=pad).backward(dt)

    np_ms, torch_ms = median_ms_pair(numpy_step, torch_step, repeats, warmup)
    peak = peak_bytes(numpy_step)
    flops = 3 * 2 * math.prod(out_shape) * xshape[1] * k**nd
    return np_ms, torch_ms, flops, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="cap both OpenBLAS and torch at this many threads (default: leave both "
                         "at their defaults); 1 gives steadier ratios on a loaded machine")
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                    help="wall (default) or cpu: the process's CPU time, steadier on a loaded "
                         "machine, meaningful with --threads 1")
    ap.add_argument("--path", choices=["im2col", "shifted"], default=None,
                    help="force NumPy's convolution path (default: its dispatch rule)")
    ap.add_argument("--paths", action="store_true",
                    help="time NumPy's im2col and shifted paths against each other instead")
    args = ap.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    import torch

    # the shifted path's gemm is scipy's, whose own OpenBLAS must be loaded to be capped
    layers._gemm(np.float32)
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
        torch.set_num_threads(args.threads)

    roof = sgemm_gflops(args.repeats)
    print(f"numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); sgemm 2048^3: {roof:.0f} GFLOP/s; "
          f"clock {args.clock}\n")
    if args.paths:
        bench_paths(args.repeats, args.warmup)
        return
    layers.CONV_PATH = args.path
    print(f"NumPy path: {args.path or 'the dispatch rule'}\n")
    print("| layer | input | filters | numpy ms | torch ms | numpy/torch (target) "
          "| numpy GFLOP/s | torch GFLOP/s | numpy peak extra MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, xshape, filters, k, pad, target in LAYERS:
        np_ms, t_ms, flops, peak = bench(xshape, filters, k, pad, args.repeats, args.warmup)
        kern = "x".join([str(k)] * (len(xshape) - 2))
        print(f"| {name} | {xshape} | {filters} {kern} pad {pad} | {np_ms:.1f} | {t_ms:.1f} "
              f"| {np_ms / t_ms:.2f} ({target}) | {flops / np_ms / 1e6:.0f} "
              f"| {flops / t_ms / 1e6:.0f} | {peak / 2**20:.0f} |")


if __name__ == "__main__":
    main()
