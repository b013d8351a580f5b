"""NumPy conv (im2col + one sgemm) beside torch's own CPU kernels, forward + backward (issue 2).

A standalone script, not a test: it is the only place outside backends/torch that imports
torch. For each layer it times, in float32, the forward and the full backward (dx, dW, db) of
backends/numpy/layers.py and of torch.nn.functional.conv{2,3}d + autograd, on the same shapes,
and reports the median of several repeats after warmup, the GFLOP/s of each, the NumPy path's
peak extra memory (tracemalloc) and, as the roofline, this machine's sgemm rate measured in
the same run.

    python benchmarks/conv_numpy_vs_torch.py [--repeats 7] [--warmup 2] [--threads N]

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

# (name, x shape, filters, kernel, padding, target ratio numpy/torch)
LAYERS = [
    ("wide 2D", (32, 64, 16, 16), 64, 3, 1, 1.25),
    ("wide 3D", (8, 32, 16, 16, 16), 32, 3, 1, 1.25),
    ("narrow 2D", (64, 16, 32, 32), 32, 3, 1, 2.0),
]


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
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    medians = [1e3 * statistics.median(ts) for ts in times]
    return medians[0], (medians[1] if fb is not None else float("nan"))


def sgemm_gflops(repeats: int, n: int = 2048) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / median_ms(lambda: a @ b, repeats, 1) / 1e6


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
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    numpy_step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    flops = 3 * 2 * math.prod(out_shape) * xshape[1] * k**nd
    return np_ms, torch_ms, flops, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None,
                    help="cap both OpenBLAS and torch at this many threads (default: leave both "
                         "at their defaults); 1 gives steadier ratios on a loaded machine")
    args = ap.parse_args(argv)
    import torch

    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads, user_api="blas")
        torch.set_num_threads(args.threads)

    roof = sgemm_gflops(args.repeats)
    print(f"numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); sgemm 2048^3: {roof:.0f} GFLOP/s\n")
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
