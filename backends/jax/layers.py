"""The JAX layers: one pure function of jax.lax / jax.nn per spec leaf, for nn.py's walk.

Params are in PyTorch's layouts: linear weight (out, in); conv weight (out, in, *k);
transposed conv weight (in, out, *k). Signals are channels-first: (N, C, L), (N, C, H, W),
(N, C, D, H, W).

Every matmul and convolution asks for `Precision.HIGHEST`: on GPUs XLA's default for float32
may use TF32 (10-bit mantissa), which would break parity with the canonical math.

References: PyTorch `torch.nn.functional` (the semantics matched); Dumoulin & Visin 2016, "A
guide to convolution arithmetic for deep learning", chapter 4 (transposed convolution as a
direct convolution of the stride-dilated input); Ioffe & Szegedy 2015 (BatchNorm); Srivastava
et al. 2014 (dropout); Goodfellow et al. 2013 (maxout); torch docs,
torch.nn.functional.interpolate (upsampling, align_corners=False).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

HIGHEST = lax.Precision.HIGHEST
# lhs / rhs / out layouts per spatial rank: torch's NC(D)HW activations, OI(D)HW weights.
_DIMS = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}
# Transposed conv weights are (in, out, *k): the same letters with I and O swapped.
_DIMS_T = {n: (lhs, "IO" + rhs[2:], out) for n, (lhs, rhs, out) in _DIMS.items()}


def _channel(v, ndim: int):
    """(C,) -> (1, C, 1, ..., 1) to broadcast over (N, C, *ndim spatial)."""
    return v.reshape((1, -1) + (1,) * ndim)


# ----------------------------------------------------------------------------- leaves


def linear(x, w, b=None):
    """(N, in) @ (out, in)^T + (out,) -> (N, out)."""
    y = jnp.matmul(x, w.T, precision=HIGHEST)
    return y if b is None else y + b


def conv(x, w, b, stride, padding, dilation):
    """Cross-correlation as torch's convNd: (N, Cin, *d) * (Cout, Cin, *k) -> (N, Cout, *d').

    d' = floor((d + 2p - dil (k - 1) - 1) / s) + 1 per axis.
    """
    nd = w.ndim - 2
    y = lax.conv_general_dilated(x, w, window_strides=stride,
                                 padding=[(p, p) for p in padding], rhs_dilation=dilation,
                                 dimension_numbers=_DIMS[nd], precision=HIGHEST)
    return y if b is None else y + _channel(b, nd)


def conv_transpose(x, w, b, stride, padding, output_padding, dilation):
    """torch's conv_transposeNd: (N, Cin, *d) with weight (Cin, Cout, *k) -> (N, Cout, *d').

    d' = (d - 1) s - 2p + dil (k - 1) + output_padding + 1. Computed the way a convolution's
    input gradient is (Dumoulin & Visin 2016, ch. 4, "zero padding, non-unit strides,
    transposed"): insert s - 1 zeros between input samples (lhs_dilation = s), pad by
    dil (k - 1) - p on the low side and dil (k - 1) - p + output_padding on the high side
    (negative padding crops), and correlate with the kernel flipped in space and its in/out
    roles swapped (the "IO..." layout reads w as it is).
    """
    nd = w.ndim - 2
    w = jnp.flip(w, axis=tuple(range(2, w.ndim)))  # (Cin, Cout, *k), spatially reversed
    pads = [(dil * (k - 1) - p, dil * (k - 1) - p + op)
            for k, p, op, dil in zip(w.shape[2:], padding, output_padding, dilation)]
    y = lax.conv_general_dilated(x, w, window_strides=(1,) * nd, padding=pads,
                                 lhs_dilation=stride, rhs_dilation=dilation,
                                 dimension_numbers=_DIMS_T[nd], precision=HIGHEST)
    return y if b is None else y + _channel(b, nd)


def pool(x, mode, kernel, stride, padding):
    """Max or average pooling over (N, C, *d) -> (N, C, *d'), d' as for conv with dil 1.

    Max pads with -inf (a pad never wins); avg pads with zeros that count in the mean, i.e.
    divides every window by the kernel volume (torch's count_include_pad=True). A tie in a max
    window sends the whole gradient to its first maximum in row-major window order: the
    gradient is XLA's SelectAndScatter with `>=`, which keeps the first of equals, as torch's
    max_pool indices do.
    """
    window, strides = (1, 1, *kernel), (1, 1, *stride)
    pads = ((0, 0), (0, 0), *((p, p) for p in padding))
    if mode == "max":
        # A concrete NumPy init value lets lax pick its differentiable reduce_window_max
        # (a traced jnp scalar would fall back to the generic, non-differentiable reducer).
        init = np.array(-np.inf, x.dtype)
        return lax.reduce_window(x, init, lax.max, window, strides, pads)
    if mode == "avg":
        total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, window, strides, pads)
        return total / math.prod(kernel)
    raise ValueError(f"pool mode must be 'max' or 'avg', got {mode!r}")


def _linear_taps(d, s):
    """Per output sample along one axis: (i0, i1, lam) as int and float64 NumPy arrays (d s,).

    torch's align_corners=False source index (aten/src/ATen/native/UpSample.h,
    area_pixel_compute_source_index): src = (1 / s) (o + 0.5) - 0.5, clamped below at 0;
    i0 = floor(src), i1 = min(i0 + 1, d - 1), lam = src - i0. Static: shapes are known at
    trace time.
    """
    o = np.arange(d * s)
    src = np.maximum((1.0 / s) * (o + 0.5) - 0.5, 0.0)
    i0 = np.floor(src).astype(np.int32)
    return i0, np.minimum(i0 + 1, d - 1).astype(np.int32), src - i0


def upsample(x, scale, mode):
    """(N, C, *S) -> (N, C, *(S * scale)), as torch's F.interpolate(..., align_corners=False).

    Written out per axis, not with jax.image.resize (whose linear kernel renormalises at the
    border instead of clamping: the same numbers for upsampling, but a second reading of the
    rule to check): nearest repeats each sample `scale` times; linear gathers the two taps
    of `_linear_taps` and mixes them, out = (1 - lam) x[i0] + lam x[i1], axis by axis (1D
    linear, 2D bilinear, 3D trilinear are separable). The gradient is JAX's, of gather and
    repeat: a scatter-add, the adjoint.
    """
    for axis, s in enumerate(scale, start=2):
        if mode == "nearest":
            x = jnp.repeat(x, s, axis=axis)  # (N, C, ..., d s, ...)
        elif mode == "linear":
            i0, i1, lam = _linear_taps(x.shape[axis], s)
            lam = lam.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - axis - 1))
            x = jnp.take(x, i0, axis=axis) * (1 - lam) + jnp.take(x, i1, axis=axis) * lam
        else:
            raise ValueError(f"upsample mode must be 'nearest' or 'linear', got {mode!r}")
    return x


def batchnorm(x, w, b, running_mean, running_var, *, train, momentum, eps):
    """(N, C, *spatial) or (N, C) -> (same, new running_mean (C,), new running_var (C,)).

    Train: normalise with the batch mean and biased variance over every axis but 1; update
    running = (1 - momentum) running + momentum batch, with the *unbiased* variance
    (n / (n - 1), n = N * spatial volume), as torch does. Eval: the running statistics.
    """
    nd = x.ndim - 2
    if train:
        axes = (0, *range(2, x.ndim))
        mean = jnp.mean(x, axis=axes)  # (C,)
        var = jnp.mean(jnp.square(x - _channel(mean, nd)), axis=axes)  # (C,), biased
        n = x.size // x.shape[1]
        running_mean = (1 - momentum) * running_mean + momentum * lax.stop_gradient(mean)
        unbiased = lax.stop_gradient(var) * (n / max(n - 1, 1))
        running_var = (1 - momentum) * running_var + momentum * unbiased
    else:
        mean, var = running_mean, running_var
    y = (x - _channel(mean, nd)) / jnp.sqrt(_channel(var, nd) + eps)
    return y * _channel(w, nd) + _channel(b, nd), running_mean, running_var


def dropout(x, mask, p):
    """Inverted dropout, (N, ...) -> (N, ...): x * mask / (1 - p); mask 1 keeps a unit."""
    return x * mask.astype(x.dtype) / (1 - p)


def activation(x, fn, slope=0.1, k=2):
    """Elementwise nonlinearity, or maxout (N, C * k, ...) -> (N, C, ...)."""
    if fn == "sigmoid":
        return jax.nn.sigmoid(x)
    if fn == "tanh":
        return jnp.tanh(x)
    if fn == "relu":
        return jax.nn.relu(x)  # its custom JVP gives gradient 0 at 0, as torch does
    if fn == "leaky_relu":
        # max(slope x, x), written with `where` so that the gradient at 0 is the slope for
        # any slope (torch's convention) instead of jnp.maximum's tie-splitting (1 + slope) / 2.
        if slope <= 1:
            return jnp.where(x > 0, x, slope * x)
        return jnp.where(x >= 0, slope * x, x)
    if fn == "maxout":
        n, ck = x.shape[:2]
        pieces = x.reshape(n, ck // k, k, *x.shape[2:])  # (N, C, k, ...): channel c*k+j -> [c, j]
        return jnp.max(pieces, axis=2)  # tied maxima share the gradient evenly, as torch's amax
    raise ValueError(f"unknown activation {fn!r}")
