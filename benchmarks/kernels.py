"""Kernel throughput per backend and device: time, GFLOP/s, and fraction of the sgemm roofline.

Each kernel is one backends.spec layer, run the way its backend runs it in training:
NumPy's hand-written `*_forward` / `*_backward` (backends/numpy/layers.py), the torch backend's
module (backends/torch/nn.py) under autograd, the JAX backend's `nn.apply` under `jax.jit`
(and `jax.vjp` for the backward). "fwd" is the forward alone (torch without autograd);
"fwd+bwd" adds the full backward (dx and every parameter gradient), counted as 3x the
forward's FLOPs (benchmarks/flops.py). float32 throughout.

    asv run --python=same --bench kernels       # through asv
    python -m benchmarks.kernels                # the markdown table of benchmarks/README.md
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from backends import spec as S

from . import flops as F
from .common import (
    BACKENDS,
    CLOCK,
    DEVICES,
    ROOF_N,
    THREADS,
    limit_threads,
    median_seconds,
    paired,
    require,
    roofline_fraction,
    roofline_gflops,
    sgemm,
    synchronizer,
)

PASSES = ["fwd", "fwd+bwd"]
# name -> (layer, input shape without the batch, batch)
KERNELS = {
    "matmul": (S.Linear(name="k", in_features=1024, out_features=1024, bias=False), (1024,), 1024),
    "conv1d": (S.Conv(name="k", ndim=1, in_channels=64, out_channels=64, kernel=3, padding=1),
               (64, 256), 32),
    "conv2d": (S.Conv(name="k", ndim=2, in_channels=64, out_channels=64, kernel=3, padding=1),
               (64, 16, 16), 32),
    "conv3d": (S.Conv(name="k", ndim=3, in_channels=32, out_channels=32, kernel=3, padding=1),
               (32, 8, 16, 16), 8),
    "conv_transpose2d": (S.ConvTranspose(name="k", ndim=2, in_channels=64, out_channels=32,
                                         kernel=3, stride=2, padding=1, output_padding=1),
                         (64, 16, 16), 32),
    "maxpool2d": (S.Pool(name="k", ndim=2, mode="max", kernel=2), (64, 32, 32), 32),
    "avgpool2d": (S.Pool(name="k", ndim=2, mode="avg", kernel=2), (64, 32, 32), 32),
    "batchnorm2d": (S.BatchNorm(name="k", num_features=64, ndim=2), (64, 32, 32), 32),
}


def kernel_flops(name: str, pass_: str) -> int:
    layer, shape, n = KERNELS[name]
    count = F.leaf(layer, shape, S.output_shape(layer, shape)).total * n
    return count * (F.TRAIN_FACTOR if pass_ == "fwd+bwd" else 1)


def _problem(name: str):
    """(spec, params, buffers, x, dout): one layer, He-initialised, standard normal data."""
    from backends.init import init_params

    layer, shape, n = KERNELS[name]
    body = S.Sequential(name="b", layers=(layer,))
    spec = S.ModelSpec(arch=name, input_shape=shape, body=body, loss="mse")
    rng = np.random.default_rng(0)
    params, buffers = init_params(spec, "he", rng)
    x = rng.standard_normal((n, *shape), dtype=np.float32)
    dout = rng.standard_normal((n, *spec.output_shape), dtype=np.float32)
    return spec, params, buffers, x, dout


def _numpy(layer, params, buffers, x, dout, backward: bool):
    from backends.numpy import layers

    w, b = params.get("k.weight"), params.get("k.bias")
    if isinstance(layer, S.Linear):
        fwd, bwd = (lambda: layers.linear_forward(x, w, b)), layers.linear_backward
    elif isinstance(layer, S.Conv):
        fwd = lambda: layers.conv_forward(x, w, b, layer.stride, layer.padding, layer.dilation)
        bwd = layers.conv_backward
    elif isinstance(layer, S.ConvTranspose):
        fwd = lambda: layers.conv_transpose_forward(x, w, b, layer.stride, layer.padding,
                                                    layer.output_padding, layer.dilation)
        bwd = layers.conv_transpose_backward
    elif isinstance(layer, S.Pool):
        fwd = lambda: layers.pool_forward(x, layer.mode, layer.kernel, layer.stride,
                                          layer.padding)
        bwd = layers.pool_backward
    else:
        fwd = lambda: layers.batchnorm_forward(x, w, b, buffers["k.running_mean"],
                                               buffers["k.running_var"], train=True,
                                               eps=layer.eps, momentum=layer.momentum)
        bwd = layers.batchnorm_backward
    if not backward:
        return fwd

    def run():
        _, cache = fwd()
        return bwd(dout, cache)

    return run


def _torch(spec, params, buffers, x, dout, backward: bool, device: str):
    import torch

    from backends.torch import nn as tnn

    dev = torch.device("cuda" if device == "gpu" else "cpu")
    module = tnn.build(spec, params, buffers, dtype=torch.float32, device=dev).train()
    xt, dt = torch.from_numpy(x).to(dev), torch.from_numpy(dout).to(dev)
    sync = synchronizer("torch", device)
    if not backward:
        def run():
            with torch.no_grad():
                return sync(module(xt, None))

        return run
    xt.requires_grad_()

    def run_backward():
        xt.grad = None
        module.zero_grad(set_to_none=True)
        module(xt, None).backward(dt)
        return sync(xt.grad)

    return run_backward


def _jax(spec, params, buffers, x, dout, backward: bool, device: str):
    import jax

    from backends.jax import nn as jnn

    dev = jax.devices(device)[0]
    p, b, xj, dj = (jax.device_put(a, dev) for a in (params, buffers, x, dout))

    def forward(p, x):
        return jnn.apply(spec, p, b, x, True)[0]

    if not backward:
        fwd = jax.jit(forward)
        return lambda: fwd(p, xj).block_until_ready()

    def forward_backward(p, x, d):
        out, pullback = jax.vjp(forward, p, x)
        return out, pullback(d)  # out too: else XLA drops the forward, which no gradient needs

    fb = jax.jit(forward_backward)
    return lambda: jax.block_until_ready(fb(p, xj, dj))


@functools.cache
def make(name: str, backend: str, device: str, pass_: str):
    """(a zero-argument callable running the kernel once, to completion; its FLOPs).

    NotImplementedError when the backend or device is missing (asv's skip). Cached, so that
    asv's setup, which it reruns before every timed call, costs nothing after the first.
    """
    require(backend, device)
    spec, params, buffers, x, dout = _problem(name)
    layer, backward = KERNELS[name][0], pass_ == "fwd+bwd"
    if backend == "numpy":
        fn = _numpy(layer, params, buffers, x, dout, backward)
    elif backend == "torch":
        fn = _torch(spec, params, buffers, x, dout, backward, device)
    else:
        fn = _jax(spec, params, buffers, x, dout, backward, device)
    fn()  # compile (jax), allocate, warm the caches
    return fn, kernel_flops(name, pass_)


# ----------------------------------------------------------------------------- asv


class Roofline:
    """The machine's own float32 sgemm rate per device: what every fraction divides by."""

    params = [DEVICES]
    param_names = ["device"]
    timeout = 120
    timer = CLOCK

    def setup(self, device):
        self.fn, self.flops = sgemm(device)

    def time_sgemm(self, device):
        self.fn()

    def track_sgemm_gflops(self, device):
        return roofline_gflops(device)

    track_sgemm_gflops.unit = "GFLOP/s"


class _Kernel:
    """time_kernel, track_gflops and track_roofline_fraction of the kernel `setup` picks."""

    timeout = 180
    timer = CLOCK  # asv's time_* too: CPU time with one thread (see common.py)

    def _prepare(self, name, backend, device, pass_):
        self.fn, self.flops = make(name, backend, device, pass_)
        self.device = device
        limit_threads()

    def time_kernel(self, *args):
        self.fn()

    def track_gflops(self, *args):
        return self.flops / median_seconds(self.fn) / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_roofline_fraction(self, *args):
        return roofline_fraction(self.fn, self.flops, self.device)

    track_roofline_fraction.unit = "fraction of sgemm"


class Matmul(_Kernel):
    """(1024, 1024) @ (1024, 1024)^T: a bias-free Linear layer on a batch of 1024."""

    params = [BACKENDS, DEVICES, PASSES]
    param_names = ["backend", "device", "pass"]

    def setup(self, backend, device, pass_):
        self._prepare("matmul", backend, device, pass_)


class Conv(_Kernel):
    """3-wide kernels, same padding: 1D (32, 64, 256), 2D (32, 64, 16, 16),
    3D (8, 32, 8, 16, 16), as many filters as input channels."""

    params = [BACKENDS, DEVICES, ["1d", "2d", "3d"], PASSES]
    param_names = ["backend", "device", "ndim", "pass"]

    def setup(self, backend, device, ndim, pass_):
        self._prepare(f"conv{ndim}", backend, device, pass_)


class ConvPath(_Kernel):
    """NumPy's two convolution paths forced (layers.CONV_PATH) on the Conv kernels, fwd+bwd:
    im2col beside the row-blocked shifted slabs that the dispatch picks for all three."""

    params = [["im2col", "shifted"], ["1d", "2d", "3d"]]
    param_names = ["path", "ndim"]

    def setup(self, path, ndim):
        from backends.numpy import layers

        self._prepare(f"conv{ndim}", "numpy", "cpu", "fwd+bwd")
        run = self.fn

        def forced():
            layers.CONV_PATH = path
            try:
                return run()
            finally:
                layers.CONV_PATH = None

        self.fn = forced


class ConvTranspose(_Kernel):
    """2x learned upsampling: (32, 64, 16, 16) -> (32, 32, 32, 32), 3x3, stride 2."""

    params = [BACKENDS, DEVICES, PASSES]
    param_names = ["backend", "device", "pass"]

    def setup(self, backend, device, pass_):
        self._prepare("conv_transpose2d", backend, device, pass_)


class Pool(_Kernel):
    """2x2 max and average pooling, stride 2, of (32, 64, 32, 32)."""

    params = [BACKENDS, DEVICES, ["max", "avg"], PASSES]
    param_names = ["backend", "device", "mode", "pass"]

    def setup(self, backend, device, mode, pass_):
        self._prepare(f"{mode}pool2d", backend, device, pass_)


class BatchNorm(_Kernel):
    """Training-mode BatchNorm2d of (32, 64, 32, 32)."""

    params = [BACKENDS, DEVICES, PASSES]
    param_names = ["backend", "device", "pass"]

    def setup(self, backend, device, pass_):
        self._prepare("batchnorm2d", backend, device, pass_)


# ----------------------------------------------------------------------------- the table


def measure(name, backend, device, pass_, repeats=5):
    """(GFLOP/s, fraction of the roofline) from one interleaved measurement; None if skipped."""
    try:
        fn, flops = make(name, backend, device, pass_)
    except NotImplementedError:
        return None
    roof, roof_flops = sgemm(device)
    t, _, ratio = paired(fn, roof, repeats)
    return flops / t / 1e9, flops / roof_flops / ratio


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="GFLOP/s per kernel, backend and device")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--devices", nargs="+", default=DEVICES)
    args = ap.parse_args(argv)
    limit_threads()
    for device in args.devices:
        try:
            roof = roofline_gflops(device, args.repeats)
        except NotImplementedError:
            continue
        print(f"\n{device}, {THREADS or 'default'} thread(s): roofline (sgemm {ROOF_N}^3) "
              f"{roof:.1f} GFLOP/s\n")
        heads = " | ".join(f"{b} GFLOP/s (fraction)" for b in BACKENDS)
        print(f"| kernel | pass | GFLOP | {heads} |")
        print("|---|---|---|" + "---|" * len(BACKENDS))
        for name, pass_ in itertools.product(KERNELS, PASSES):
            cells = []
            for backend in BACKENDS:
                got = measure(name, backend, device, pass_, args.repeats)
                cells.append("-" if got is None else f"{got[0]:.3g} ({got[1]:.2g})")
            print(f"| {name} | {pass_} | {kernel_flops(name, pass_) / 1e9:.3f} | "
                  + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
