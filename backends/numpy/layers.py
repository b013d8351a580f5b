"""The NumPy backend's layers, each a forward and its hand-written backward side by side.

Every op is `op_forward(x, ...) -> (out, cache)` followed by `op_backward(dout, cache) ->
(dx, grads)`, with `grads` a tuple of the gradients of the forward's parameter inputs in
their order (empty for a parameter-free op). Losses are `loss_forward(out, y) -> (loss,
cache)` and `loss_backward(cache) -> dout`. Every op keeps its input's dtype (float32 or
float64). nn.py walks the model spec onto them.

Convolution takes one of two paths. im2col: the windows are taken channels-last, (N, *S, C),
so that each window row is a run of C contiguous values, and the product is a plain
(N*O, K*C) x (K*C, F) sgemm. Shifted slabs (implicit GEMM without the copy; Chetlur et al.
2014, "cuDNN", section 3; Lavin & Gray 2016 for the per-tap view): the padded batch lies
flat channels-last, (rows, C), each axis's row followed by the zeros it shares with the next
as padding, so that under kernel tap k every output position reads the input row `offsets[k]`
further on: the output over the grid is sum_k xg[off_k : off_k + L] @ w_k, one gemm per tap
on a contiguous slice, accumulated in place by BLAS (beta = 1; scipy.linalg.blas, as numpy's
matmul has no beta), and the few positions past O on each axis are computed and dropped.
The gemms run in blocks of grid rows, every tap on one block before the next, each block
small enough (B C F <= 100^3) for OpenBLAS's small-matrix kernel, which does not pack its
operands, and for the block's rows to stay in cache across the taps (`_blocks`; fwd+bwd
1.1x, 1.5x and 1.7x faster on wide 2D, wide 3D and narrow 2D than one gemm per tap over the
whole grid, measured in one run). Its backward uses the same slices (dw)
and the adjoint shifts (dx, a correlation of dout's grid with the flipped kernel). Grouping
taps to raise a gemm's K (copying g shifted slices side by side, a partial im2col) was
measured and dropped: g = 3 and 9 were 1.2-2.2x slower than per-tap gemms, blocked or not,
the copy and the g-fold working set costing more than the longer K saved. The backward of a
convolution's input is a transposed convolution and the backward of a transposed
convolution's input a convolution (Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning", 2016, section 4), so the two share their cores: `_conv` (im2col, then
matmul), `_conv_t` (matmul, then col2im) and `_shifted`.

The rule (`_conv_path`; CONV_PATH forces a path): shifted slabs when stride is 1, no
transposed conv crops (p <= dil (K - 1)), min(C, F) >= 2 and the grid computes at most 1.5
positions per output (prod(S + p) / prod(O) for a same-padded conv: 1.13 at 16x16, 1.19 at
16^3, 1.27 at 8x8, 1.56 at 4x4); im2col otherwise. Measured fwd+bwd, float32, one thread
(`python benchmarks/conv_numpy_vs_torch.py --paths --threads 1 --clock cpu`, load 1.2-1.7):
shifted takes 0.4-0.85x im2col's time and a quarter to a tenth of its memory from 8x8 up
(2D and 3D, conv and transposed; 0.86x on a 1x1 conv), and loses (1.2-1.6x) at 4x4 and 2x2,
where the junk positions outnumber the savings, and with one input channel or one filter
(1.2-2.5x), where each gemm degenerates to a vector product.

References: cs231n assignment 2 `layers.py` (the forward/backward/cache shape, BatchNorm's
backward); Ioffe & Szegedy 2015 (BatchNorm); Goodfellow et al. 2013 (Maxout).
"""

from __future__ import annotations

import functools
import math
import threading
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..spec import conv_out, conv_transpose_out

# ----------------------------------------------------------------------------- dense


def linear_forward(x, w, b):
    """y = x w^T + b. x (N, I), w (O, I), b (O,) or None -> out (N, O)."""
    out = x @ w.T
    if b is not None:
        out += b
    return out, (x, w, b is not None)


def linear_backward(dout, cache):
    """dout (N, O) -> (dx (N, I), (dw (O, I), db (O,) or None))."""
    x, w, has_bias = cache
    return dout @ w, (dout.T @ x, dout.sum(0) if has_bias else None)


def flatten_forward(x):
    """(N, C, ...) -> (N, C * ...)."""
    return x.reshape(x.shape[0], -1), x.shape  # (N, C * ...)


def flatten_backward(dout, cache):
    return dout.reshape(cache), ()  # (N, C, ...)


# ----------------------------------------------------------------------------- activations


def sigmoid_forward(x):
    out = 0.5 * (1 + np.tanh(0.5 * x))  # = 1 / (1 + e^-x), without overflow in exp
    return out, out


def sigmoid_backward(dout, cache):
    return dout * cache * (1 - cache), ()


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache * cache), ()


def relu_forward(x):
    return np.maximum(x, 0), x > 0


def relu_backward(dout, cache):
    return dout * cache, ()


def leaky_relu_forward(x, slope=0.1):
    """max(slope x, x), the lecture's definition, for any slope. x (N, ...) -> out (N, ...).

    At x = 0 the slope piece is taken, so the gradient there is the slope: torch's
    leaky_relu convention (backends/spec.py, "Kinks and ties").
    """
    on_slope = x <= 0 if slope <= 1 else x >= 0  # where slope x >= x, 0 included
    return np.where(on_slope, slope * x, x), (on_slope, slope)


def leaky_relu_backward(dout, cache):
    on_slope, slope = cache
    return np.where(on_slope, slope * dout, dout), ()


def maxout_forward(x, k=2):
    """x (N, C*k, *S) -> out (N, C, *S), out[:, c] = max_j x[:, c*k + j].

    Tied maxima share the gradient evenly, as torch's amax and jnp.max do.
    """
    n, ck, *spatial = x.shape
    groups = x.reshape(n, ck // k, k, *spatial)  # (N, C, k, *S)
    out = groups.max(axis=2)  # (N, C, *S)
    share = (groups == out[:, :, None]).astype(x.dtype)  # (N, C, k, *S), 1 at each maximum
    share /= share.sum(axis=2, keepdims=True)
    return out, share


def maxout_backward(dout, cache):
    """dout (N, C, *S) -> (dx (N, C*k, *S), ())."""
    dgroups = cache * dout[:, :, None]  # (N, C, k, *S)
    return dgroups.reshape(dgroups.shape[0], -1, *dgroups.shape[3:]), ()  # (N, C*k, *S)


ACTIVATIONS = {"sigmoid": (sigmoid_forward, sigmoid_backward),
               "tanh": (tanh_forward, tanh_backward),
               "relu": (relu_forward, relu_backward),
               "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
               "maxout": (maxout_forward, maxout_backward)}

# ----------------------------------------------------------------------------- regularisers


def dropout_forward(x, mask, p):
    """Inverted dropout: y = x * mask / (1 - p). x, mask (N, *S), mask 1 = keep."""
    scale = mask.astype(x.dtype) * (1.0 / (1.0 - p))
    return x * scale, scale


def dropout_backward(dout, cache):
    return dout * cache, ()


def batchnorm_forward(x, gamma, beta, running_mean, running_var, *, train, eps=1e-5,
                      momentum=0.1):
    """BatchNorm over axis 1. x (N, C) or (N, C, *S); gamma, beta, running_* (C,).

    Train: normalise with the batch mean and biased variance; the cache's "running" holds the
    updated running statistics (momentum, unbiased variance: torch's convention) for the
    caller to keep or drop. Eval: normalise with the running statistics.
    """
    axes = (0, *range(2, x.ndim))
    bshape = (1, -1) + (1,) * (x.ndim - 2)  # broadcasts (C,) over (N, C, *S)
    cache = {"gamma": gamma, "axes": axes, "bshape": bshape, "train": train}
    if train:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        m = x.size // x.shape[1]
        unbiased = var * (m / max(m - 1, 1))
        cache["running"] = ((1 - momentum) * running_mean + momentum * mean,
                            (1 - momentum) * running_var + momentum * unbiased)
    else:
        mean, var = running_mean, running_var
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
    cache.update(xhat=xhat, inv_std=inv_std)
    return gamma.reshape(bshape) * xhat + beta.reshape(bshape), cache


def batchnorm_backward(dout, cache):
    """-> (dx, (dgamma, dbeta)). The running statistics take no gradient."""
    xhat, inv_std, axes, bshape = cache["xhat"], cache["inv_std"], cache["axes"], cache["bshape"]
    dgamma, dbeta = (dout * xhat).sum(axis=axes), dout.sum(axis=axes)
    dxhat = dout * cache["gamma"].reshape(bshape)
    if not cache["train"]:
        return dxhat * inv_std.reshape(bshape), (dgamma, dbeta)
    # the batch mean and variance depend on x too (cs231n's batchnorm_backward_alt)
    m = dout.size // dout.shape[1]
    dx = (inv_std / m).reshape(bshape) * (
        m * dxhat - dxhat.sum(axis=axes).reshape(bshape)
        - xhat * (dxhat * xhat).sum(axis=axes).reshape(bshape))
    return dx, (dgamma, dbeta)


# ----------------------------------------------------------------------------- windows


def _tup(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


def _windows(xp, out, kernel, stride, dilation, first):
    """A read-only view of every window of xp, whose nd spatial axes start at axis `first`.

    xp (*lead, *Sp, *trail) -> (*lead, *out, *kernel, *trail), with
    view[..., o, k, ...] = xp[..., o * stride + k * dilation, ...]. No copy.
    """
    nd = len(out)
    st = xp.strides
    sp = st[first:first + nd]
    shape = (*xp.shape[:first], *out, *kernel, *xp.shape[first + nd:])
    strides = (*st[:first], *(a * s for a, s in zip(sp, stride)),
               *(a * d for a, d in zip(sp, dilation)), *st[first + nd:])
    return as_strided(xp, shape, strides, writeable=False)


def _add_windows(buf, win, stride, dilation, first):
    """col2im: buf[..., o * stride + k * dilation, ...] += win[..., o, k, ...], in place.

    The adjoint of `_windows`; one vectorised add per kernel offset (k^d of them).
    """
    nd = len(stride)
    out, kernel = win.shape[first:first + nd], win.shape[first + nd:first + 2 * nd]
    lead = (slice(None),) * first
    for k in np.ndindex(*kernel):
        dst = tuple(slice(ki * d, ki * d + s * (o - 1) + 1, s)
                    for ki, d, s, o in zip(k, dilation, stride, out))
        buf[(*lead, *dst)] += win[(*lead, *(slice(None),) * nd, *k)]


def _pad_last(x, pad, hi=None):
    """(N, C, *S) -> zero-padded channels-last (N, *(S + pad + hi), C), one copy."""
    hi = pad if hi is None else hi
    n, c, *spatial = x.shape
    buf = np.zeros((n, *(d + a + b for d, a, b in zip(spatial, pad, hi)), c), x.dtype)
    inner = tuple(slice(a, a + d) for a, d in zip(pad, spatial))
    buf[(slice(None), *inner)] = np.moveaxis(x, 1, -1)  # (N, *S, C)
    return buf


def _first(y):
    """Channels-last (N, *S, C) -> contiguous channels-first (N, C, *S)."""
    return np.ascontiguousarray(np.moveaxis(y, -1, 1))


def _w_last(w):
    """A conv weight (A, B, *K) -> (A, K*B), B moved last to match channels-last windows."""
    return np.ascontiguousarray(np.moveaxis(w, 1, -1)).reshape(w.shape[0], -1)  # (A, *K, B)


# ----------------------------------------------------------------------------- convolution

CONV_PATH = None  # "im2col" or "shifted" forces a path (tests, benchmarks); None: the rule
SHIFTED_MIN_CHANNELS = 2  # the rule's bounds (module docstring): min(C, F) at least this
SHIFTED_MAX_JUNK = 1.5  # and grid positions per output at most this
SHIFTED_GEMM_MNK = 100**3  # shifted slabs' gemm size, M N K at most this (`_blocks`)
SHIFTED_CALL_MNK = 125_000  # a gemm call's overhead, in M N K (`_blocks`)


def _conv_path(channels, spatial, kernel, stride, lo, hi, dilation, out=None) -> str:
    """Which core a stride-1-able convolution takes: CONV_PATH if set, else the rule of the
    module docstring. channels: (C in, F out); spatial: the input's S.

    Shifted slabs need stride 1 and no negative padding (a crop); anything else is im2col.
    """
    if any(s != 1 for s in stride) or min(lo) < 0 or min(hi) < 0:
        return "im2col"
    if CONV_PATH is not None:
        return CONV_PATH
    if out is None:
        out = tuple(d + a + b - dl * (k - 1) for d, a, b, k, dl
                    in zip(spatial, lo, hi, kernel, dilation))
    pitch = _pitch(spatial, lo, hi, out)
    junk = math.prod(pitch) / math.prod(out)  # grid positions computed per output
    if min(channels) >= SHIFTED_MIN_CHANNELS and junk <= SHIFTED_MAX_JUNK:
        return "shifted"
    return "im2col"


def _conv(x, w, stride, padding, dilation, hi=None, out=None):
    """Cross-correlation core. x (N, C, *S), w (F, C, *K) -> (out (N*O, F), cols, O).

    Pads `padding` before and `hi` (default: `padding`) after each axis; `out` (default: all
    that fit) is how many windows to take per axis. cols (N*O, K*C) is the im2col matrix,
    kept for the weight gradient.
    """
    kernel, hi = w.shape[2:], padding if hi is None else hi
    if out is None:
        out = tuple(conv_out(d + a + b, k, s, 0, dl) for d, k, s, a, b, dl
                    in zip(x.shape[2:], kernel, stride, padding, hi, dilation))
    xp = _pad_last(x, padding, hi)  # (N, *Sp, C)
    win = _windows(xp, out, kernel, stride, dilation, first=1)  # (N, *O, *K, C)
    cols = np.ascontiguousarray(win).reshape(x.shape[0] * math.prod(out), -1)  # (N*O, K*C)
    return cols @ _w_last(w).T, cols, out  # (N*O, F)


def _conv_t(x, w, stride, padding, output_padding, dilation):
    """Transposed-convolution core by im2col. x (N, C, *S), w (C, F, *K) -> out (N, F, *O).

    Each input value scatters x * w over its window of the output: one matmul, then col2im
    into the full output (N, *(O + 2p), F), cropped by the padding. With stride 1 it is
    instead the convolution of x with the flipped kernel, in and out swapped, padded by
    dil (K - 1) - p (Dumoulin & Visin, section 4.1): a copy (im2col) is cheaper than the
    k^d read-modify-write passes of col2im.
    """
    n, c, *spatial = x.shape
    f, kernel = w.shape[1], w.shape[2:]
    lo = tuple(dl * (k - 1) - p for k, p, dl in zip(kernel, padding, dilation))
    if all(s == 1 for s in stride) and min(lo) >= 0:
        hi = tuple(a + op for a, op in zip(lo, output_padding))
        out2, _, out = _conv(x, _flipped(w), stride, lo, dilation, hi)  # (N*O, F)
        return _first(out2.reshape(n, *out, f))  # (N, F, *O)
    full = [conv_transpose_out(d, k, s, 0, op, dl) for d, k, s, op, dl
            in zip(spatial, kernel, stride, output_padding, dilation)]
    x_last = np.moveaxis(x, 1, -1).reshape(-1, c)  # (N*S, C)
    cols = (x_last @ _w_last(w)).reshape(n, *spatial, *kernel, f)  # (N, *S, *K, F)
    buf = np.zeros((n, *full, f), x.dtype)  # (N, *Full, F)
    _add_windows(buf, cols, stride, dilation, first=1)
    crop = tuple(slice(p, d - p) for p, d in zip(padding, full))
    return _first(buf[(slice(None), *crop)])  # (N, F, *O)


def _flipped(w):
    """A transposed conv's weight (C, F, *K) -> the conv weight (F, C, *K) of its stride-1
    equivalent: the kernel flipped on every spatial axis, in and out swapped."""
    return np.flip(w, axis=tuple(range(2, w.ndim))).swapaxes(0, 1)  # (F, C, *K)


# ----------------------------------------------------------------------------- shifted slabs


class _Grid(NamedTuple):
    """A batch laid flat for shifted slabs: row n P + sum_a q_a step_a of a (rows, C) array
    holds position q of sample n, P = prod(pitch). Each axis's pitch is S + max(lo, hi), so
    the zeros after one row double as the padding before the next; an output position o reads
    its input at row(o) + offsets[k] under kernel tap k (row-major over K)."""

    n: int
    pitch: tuple  # (E_1, ..., E_d) positions per axis, padding included
    offsets: tuple  # (prod K,) rows from an output position to its input under each tap
    live: int  # output rows computed: the last valid output's row + 1
    rows: int  # rows of an input grid: the batch and the zero tail its last taps read


def _pitch(spatial, lo, hi, out):
    """Positions per axis of the flat grid: S and the zeros shared by two neighbouring rows
    (the padding after one and before the next), and at least O."""
    return tuple(max(d + max(a, b), o) for d, a, b, o in zip(spatial, lo, hi, out))


def _grid(n, spatial, lo, hi, kernel, dilation, out) -> _Grid:
    """The layout of a stride-1 conv: input at [lo, lo + S) on each axis, output at [0, O)."""
    pitch = _pitch(spatial, lo, hi, out)
    step = [math.prod(pitch[a + 1:]) for a in range(len(pitch))]  # rows per unit of axis a
    offsets = tuple(sum(k * dl * s for k, dl, s in zip(tap, dilation, step))
                    for tap in np.ndindex(*kernel))
    per = math.prod(pitch)
    live = (n - 1) * per + sum((o - 1) * s for o, s in zip(out, step)) + 1
    return _Grid(n, pitch, offsets, live, max(n * per, live + offsets[-1]))


def _spans(grid, start, size):
    """The grid rows of the box [start, start + size) of each sample, one (first, end) run
    per sample: the box's first and last positions and the rows between them. Rows outside
    (the zeros that pad an axis after a sample's last row, and the plane(s) between samples:
    6% of a 16^2 or 16^3 grid) are skipped."""
    per = math.prod(grid.pitch)
    step = [math.prod(grid.pitch[a + 1:]) for a in range(len(grid.pitch))]
    first = sum(s * t for s, t in zip(start, step))
    end = sum((s + d - 1) * t for s, d, t in zip(start, size, step)) + 1
    return [(i * per + first, i * per + end) for i in range(grid.n)]


def _to_grid(a, grid, start, rows):
    """a (N, C, *S) -> (rows, C): zeros, with a at [start, start + S) of each sample."""
    buf = np.zeros((rows, a.shape[1]), a.dtype)  # (rows, C)
    box = tuple(slice(s, s + d) for s, d in zip(start, a.shape[2:]))
    lay = buf[:grid.n * math.prod(grid.pitch)].reshape(grid.n, *grid.pitch, -1)  # (N, *E, C)
    lay[(slice(None), *box)] = np.moveaxis(a, 1, -1)  # (N, *S, C)
    return buf


def _from_grid(buf, grid, start, size):
    """(rows, C) -> channels-first (N, C, *size), read at [start, start + size)."""
    lay = buf[:grid.n * math.prod(grid.pitch)].reshape(grid.n, *grid.pitch, -1)  # (N, *E, C)
    box = tuple(slice(s, s + d) for s, d in zip(start, size))
    return _first(lay[(slice(None), *box)])  # (N, C, *size)


_SCRATCH = threading.local()  # per thread: tag -> the largest buffer `_scratch` has lent


def _scratch(tag, shape, dtype):
    """An uninitialised array for a temporary that dies before its caller returns, lent from
    one buffer per tag and thread, grown to the largest request. Freshly mapped memory
    page-faults on first touch: fresh grids cost 10-15% of a wide 3D fwd+bwd (glibc returns
    them to the kernel; measured with its MALLOC_MMAP_THRESHOLD_ and TRIM_THRESHOLD_
    raised). The buffers stay allocated: 15 MiB for wide 3D's three grids."""
    size = math.prod(shape) * np.dtype(dtype).itemsize
    buf = getattr(_SCRATCH, tag, None)
    if buf is None or buf.nbytes < size:
        buf = np.empty(size, np.uint8)
        setattr(_SCRATCH, tag, buf)
    return buf[:size].view(dtype).reshape(shape)


def _taps(w):
    """A conv weight (F, C, *K) -> (prod K, C, F): one (C, F) slab per kernel tap."""
    return np.ascontiguousarray(w.reshape(*w.shape[:2], -1).transpose(2, 1, 0))


@functools.cache
def _gemm(dtype):
    """BLAS's gemm, c = alpha op(a) op(b) + beta c in place: numpy's matmul has no beta.
    Imported at first use: scipy.linalg costs a second to import."""
    from scipy.linalg import blas

    return blas.get_blas_funcs("gemm", dtype=np.dtype(dtype))


def _blocks(spans, channels):
    """(r0, r1) row blocks of the gemms over spans, for channels (C, F).

    A block has at most B rows, the most that keep B C F within SHIFTED_GEMM_MNK, the size
    up to which OpenBLAS's SkylakeX kernels (used on this AVX-512 machine) take their
    small-matrix path, which skips packing the operands (OpenMathLib/OpenBLAS
    kernel/x86_64/sgemm_small_kernel_permit_skylakex.c: M N K <= 100^3). Measured fwd+bwd,
    float32, one thread: one block size past that bound costs 1.3-1.5x (wide 2D, B 192 ->
    256; wide 3D, 768 -> 1024; narrow 2D, 1536 -> 2048); below it, the rows of a block also
    stay in cache across its prod(K) taps.
    Two spans closer than SHIFTED_CALL_MNK / (C F) rows are bridged, the junk between them
    computed: a gemm call costs about 3 us, 2.5e5 flops at 90 GFLOP/s (with every sample a
    span of its own, an 8x8 batch of 64 took 2.5x im2col's time).
    """
    block = max(8, SHIFTED_GEMM_MNK // math.prod(channels))
    bridge = SHIFTED_CALL_MNK // math.prod(channels)
    runs = []
    for first, end in spans:
        if runs and first - runs[-1][1] < bridge:
            runs[-1][1] = end
        else:
            runs.append([first, end])
    return [(r0, min(r0 + block, end)) for first, end in runs
            for r0 in range(first, end, block)]


def _correlate(a, offsets, wk, c, spans, bias=None):
    """c[r] = bias + sum_k a[r + offsets[k]] @ wk[k] for r in each (first, end) of spans, in
    place; other rows of c are left as they were.

    a (> last end + offsets[-1], C), c (>= last end, F), wk (prod K, C, F), C-ordered.
    Row-blocked (`_blocks`): every tap's gemm runs on one block of B rows before the next
    block starts, so that the block's rows of a and c stay in cache across the taps; the
    gemms see a, c and wk as their Fortran-ordered transposes, (C, B), (F, B) and (F, C),
    and BLAS accumulates in place (beta = 1).
    """
    gemm = _gemm(c.dtype)
    for r0, r1 in _blocks(spans, a.shape[1:] + c.shape[1:]):
        beta = 0.0
        if bias is not None:
            c[r0:r1] = bias
            beta = 1.0
        for k, off in enumerate(offsets):
            res = gemm(1.0, wk[k].T, a[r0 + off:r1 + off].T, beta=beta, c=c[r0:r1].T,
                       overwrite_c=True)  # (F, B) += (F, C) (C, B)
            beta = 1.0
    if res.ctypes.data != c[r0:r1].ctypes.data:  # f2py copied c
        raise RuntimeError("gemm did not write in place")


def _correlate_grads(a, offsets, d, spans):
    """The weight gradient of `_correlate`: g[k] = sum_r a[r + offsets[k]]^T d[r] over the
    rows of spans.

    a (> last end + offsets[-1], C), d (>= last end, F) -> g (prod K, C, F). Row-blocked as
    `_correlate`; each block adds its (F, C) products into g in place.
    """
    gemm = _gemm(d.dtype)
    g = np.empty((len(offsets), a.shape[1], d.shape[1]), d.dtype)  # (prod K, C, F)
    beta = 0.0
    for r0, r1 in _blocks(spans, a.shape[1:] + d.shape[1:]):
        for k, off in enumerate(offsets):
            res = gemm(1.0, d[r0:r1].T, a[r0 + off:r1 + off].T, beta=beta, c=g[k].T,
                       trans_b=1, overwrite_c=True)  # (F, C) += (F, B) (B, C)
        beta = 1.0
    if res.ctypes.data != g[-1].ctypes.data:  # f2py copied g
        raise RuntimeError("gemm did not write in place")
    return g


def _shifted(x, w, lo, hi, dilation, out=None, b=None):
    """Stride-1 cross-correlation by shifted slabs. x (N, C, *S), w (F, C, *K), b (F,) or None
    -> (y (N, F, *O), xg (rows, C), grid).

    y at grid row r = b + sum_k xg[r + offsets[k]] @ w_k (`_correlate`), over each sample's
    rows from its first output to its last; the positions between (past O on an axis) are
    junk and never read. xg is kept for the weight gradient.
    """
    n, c, *spatial = x.shape
    f, kernel = w.shape[0], w.shape[2:]
    if out is None:
        out = tuple(d + a + e - dl * (k - 1) for d, a, e, k, dl
                    in zip(spatial, lo, hi, kernel, dilation))
    grid = _grid(n, spatial, lo, hi, kernel, dilation, out)
    xg = _to_grid(x, grid, lo, grid.rows)  # (rows, C)
    yg = _scratch("out", (n * math.prod(grid.pitch), f), x.dtype)  # (N*P, F)
    _correlate(xg, grid.offsets, _taps(w), yg, _spans(grid, (0,) * len(out), out), bias=b)
    return _from_grid(yg, grid, (0,) * len(out), out), xg, grid


def _shifted_grads(dout, xg, grid, w, lo, spatial, need_dx=True):
    """The backward of `_shifted`: dout (N, F, *O) -> (dx (N, C, *S) or None, dw (F, C, *K)).

    dout goes onto the grid channels last, zeros at the junk positions, behind `lead` =
    offsets[-1] zero rows: dg[lead + r] = dout at grid row r. dw_k = sum_r xg[r + off_k]^T
    dg[lead + r] over the output rows (`_correlate_grads`). dx is the adjoint shift, over the
    input rows, dxg[r] = sum_k dg[lead + r - off_k] @ w_k^T, and lead - off_k is the offset
    of the mirrored tap, offsets[-1 - k]: a `_correlate` of dg with the taps of the flipped
    kernel, in and out swapped (`_flipped`; a copy of the slabs: OpenBLAS's gemm reading a
    (C, F) slab transposed was 20% slower on wide 3D).
    """
    f, c, *kernel = w.shape
    per, lead = grid.n * math.prod(grid.pitch), grid.offsets[-1]
    dg = _scratch("dout", (lead + per, f), dout.dtype)  # (lead + N*P, F)
    dg.fill(0)
    lay = dg[lead:].reshape(grid.n, *grid.pitch, f)  # (N, *E, F)
    lay[(slice(None), *(slice(0, o) for o in dout.shape[2:]))] = np.moveaxis(dout, 1, -1)
    spans = _spans(grid, (0,) * len(kernel), dout.shape[2:])
    dwk = _correlate_grads(xg, grid.offsets, dg[lead:], spans)  # (prod K, C, F)
    dw = np.ascontiguousarray(dwk.transpose(2, 1, 0)).reshape(f, c, *kernel)  # (F, C, *K)
    if not need_dx:
        return None, dw
    dxg = _scratch("dx", (per, c), dout.dtype)  # (N*P, C)
    _correlate(dg, grid.offsets, _taps(_flipped(w)), dxg, _spans(grid, lo, spatial))
    return _from_grid(dxg, grid, lo, spatial), dw


# ----------------------------------------------------------------------------- conv layers


def conv_forward(x, w, b, stride=1, padding=0, dilation=1):
    """N-d cross-correlation as torch.nn.functional.conv{1,2,3}d.

    x (N, C, *S), w (F, C, *K), b (F,) or None -> out (N, F, *O),
    O = floor((S + 2p - dil (K - 1) - 1) / stride) + 1.
    """
    nd = x.ndim - 2
    geom = tuple(_tup(v, nd) for v in (stride, padding, dilation))
    stride, padding, dilation = geom
    path = _conv_path((x.shape[1], w.shape[0]), x.shape[2:], w.shape[2:], stride, padding,
                      padding, dilation)
    if path == "shifted":
        y, xg, grid = _shifted(x, w, padding, padding, dilation, b=b)
        return y, (path, x.shape, w, b is not None, (xg, grid), geom)
    out2, cols, out = _conv(x, w, *geom)  # (N*O, F)
    if b is not None:
        out2 += b
    y = _first(out2.reshape(x.shape[0], *out, w.shape[0]))  # (N, F, *O)
    return y, (path, x.shape, w, b is not None, cols, geom)


def conv_backward(dout, cache):
    """dout (N, F, *O) -> (dx (N, C, *S), (dw (F, C, *K), db (F,) or None))."""
    path, xshape, w, has_bias, saved, (stride, padding, dilation) = cache
    f, kernel = w.shape[0], w.shape[2:]
    if path == "shifted":
        dx, dw = _shifted_grads(dout, *saved, w, padding, xshape[2:])
        return dx, (dw, dout.sum(axis=(0, *range(2, dout.ndim))) if has_bias else None)
    dout_last = np.moveaxis(dout, 1, -1).reshape(-1, f)  # (N*O, F)
    dw = np.moveaxis((dout_last.T @ saved).reshape(f, *kernel, -1), -1, 1)  # (F, C, *K)
    # the input gradient is the transposed conv of dout; output_padding restores the rows
    # that the forward's floor dropped
    lost = tuple(d - conv_transpose_out(o, k, s, p, 0, dl) for d, o, k, s, p, dl
                 in zip(xshape[2:], dout.shape[2:], kernel, stride, padding, dilation))
    dx = _conv_t(dout, w, stride, padding, lost, dilation)
    return dx, (np.ascontiguousarray(dw), dout_last.sum(0) if has_bias else None)


def conv_transpose_forward(x, w, b, stride=1, padding=0, output_padding=0, dilation=1):
    """N-d transposed convolution as torch.nn.functional.conv_transpose{1,2,3}d.

    x (N, C, *S), w (C, F, *K) (in before out, torch's layout), b (F,) or None
    -> out (N, F, *O), O = (S - 1) stride - 2p + dil (K - 1) + output_padding + 1.
    """
    nd = x.ndim - 2
    geom = tuple(_tup(v, nd) for v in (stride, padding, output_padding, dilation))
    stride, padding, output_padding, dilation = geom
    kernel = w.shape[2:]
    # with stride 1 it is the conv of x with the flipped kernel padded by dil (K - 1) - p
    lo = tuple(dl * (k - 1) - p for k, p, dl in zip(kernel, padding, dilation))
    hi = tuple(a + op for a, op in zip(lo, output_padding))
    if _conv_path(w.shape[:2], x.shape[2:], kernel, stride, lo, hi, dilation) == "shifted":
        y, _, _ = _shifted(x, _flipped(w), lo, hi, dilation, b=b)
        return y, (x, w, b is not None, geom)
    y = _conv_t(x, w, *geom)
    if b is not None:
        y += b.reshape(1, -1, *(1,) * nd)  # (1, F, 1, ...)
    return y, (x, w, b is not None, geom)


def conv_transpose_backward(dout, cache):
    """dout (N, F, *O) -> (dx (N, C, *S), (dw (C, F, *K), db (F,) or None)).

    dx is the convolution of dout with w read as a conv weight (C out, F in), with x as that
    conv's output gradient dw is its weight gradient: im2col's matrix or the shifted slabs.
    """
    x, w, has_bias, (stride, padding, _, dilation) = cache
    c, f, kernel = w.shape[0], w.shape[1], w.shape[2:]
    db = dout.sum(axis=(0, *range(2, dout.ndim))) if has_bias else None
    # output_padding's last rows reach no input: take only the S windows that do
    if _conv_path((f, c), dout.shape[2:], kernel, stride, padding, padding, dilation,
                  out=x.shape[2:]) == "shifted":
        dx, dg, grid = _shifted(dout, w, padding, padding, dilation, out=x.shape[2:])
        _, dw = _shifted_grads(x, dg, grid, w, padding, dout.shape[2:], need_dx=False)
        return dx, (dw, db)
    dx2, cols, _ = _conv(dout, w, stride, padding, dilation, out=x.shape[2:])  # (N*S, C)
    dx = _first(dx2.reshape(x.shape[0], *x.shape[2:], c))  # (N, C, *S)
    x_last = np.moveaxis(x, 1, -1).reshape(-1, c)  # (N*S, C)
    dw = np.moveaxis((x_last.T @ cols).reshape(c, *kernel, f), -1, 1)  # (C, F, *K)
    return dx, (np.ascontiguousarray(dw), db)


# ----------------------------------------------------------------------------- pooling


def pool_forward(x, mode, kernel, stride=None, padding=0):
    """N-d max or average pooling. x (N, C, *S) -> out (N, C, *O).

    Max pads with -inf; avg pads with zeros that count in the mean (count_include_pad=True).
    A tie in a max window sends the whole gradient to its first maximum in row-major window
    order, as torch's max_pool indices and JAX's select_and_scatter do.
    """
    nd = x.ndim - 2
    kernel = _tup(kernel, nd)
    stride = kernel if stride is None else _tup(stride, nd)
    padding = _tup(padding, nd)
    n, c, *spatial = x.shape
    out = tuple(conv_out(d, k, s, p) for d, k, s, p in zip(spatial, kernel, stride, padding))
    xp = np.full((n, c, *(d + 2 * p for d, p in zip(spatial, padding))),
                 -np.inf if mode == "max" else 0, x.dtype)  # (N, C, *Sp)
    xp[(slice(None), slice(None), *(slice(p, p + d) for p, d in zip(padding, spatial)))] = x
    win = _windows(xp, out, kernel, stride, (1,) * nd, first=2)  # (N, C, *O, *K)
    cache = {"mode": mode, "shape": xp.shape, "kernel": kernel, "stride": stride,
             "padding": padding}
    if mode == "max":
        flat = win.reshape(n, c, *out, -1)  # (N, C, *O, Kvol), a copy
        idx = flat.argmax(axis=-1)[..., None]  # (N, C, *O, 1), the first of tied maxima
        cache["idx"] = idx
        return np.take_along_axis(flat, idx, axis=-1)[..., 0], cache
    if mode == "avg":
        return win.mean(axis=tuple(range(-nd, 0))), cache
    raise ValueError(f"pool mode must be 'max' or 'avg', got {mode!r}")


def pool_backward(dout, cache):
    """dout (N, C, *O) -> (dx (N, C, *S), ())."""
    kernel, stride, padding = cache["kernel"], cache["stride"], cache["padding"]
    nd, kvol = len(kernel), math.prod(kernel)
    if cache["mode"] == "max":  # the gradient goes to the first arg max of each window
        dwin = np.zeros((*dout.shape, kvol), dout.dtype)  # (N, C, *O, Kvol)
        np.put_along_axis(dwin, cache["idx"], dout[..., None], axis=-1)
        dwin = dwin.reshape(*dout.shape, *kernel)  # (N, C, *O, *K)
    else:  # every window member gets an equal share
        dwin = np.broadcast_to((dout / kvol).reshape(*dout.shape, *(1,) * nd),
                               (*dout.shape, *kernel))  # (N, C, *O, *K)
    dxp = np.zeros(cache["shape"], dout.dtype)  # (N, C, *Sp)
    _add_windows(dxp, dwin, stride, (1,) * nd, first=2)
    inner = tuple(slice(p, d - p) for p, d in zip(padding, cache["shape"][2:]))
    return np.ascontiguousarray(dxp[(slice(None), slice(None), *inner)]), ()


# ----------------------------------------------------------------------------- losses


def mse_forward(out, y):
    """Mean over all elements of (out - y)^2. out, y (N, ...) -> scalar."""
    diff = out - y.astype(out.dtype, copy=False)
    return np.mean(diff * diff), diff


def mse_backward(cache):
    return cache * (2.0 / cache.size)


def l1_forward(out, y):
    """Mean over all elements of |out - y|. out, y (N, ...) -> scalar."""
    diff = out - y.astype(out.dtype, copy=False)
    return np.mean(np.abs(diff)), diff


def l1_backward(cache):
    return np.sign(cache) * (1.0 / cache.size)  # sign(0) = 0, as torch's subgradient


def cross_entropy_forward(logits, labels):
    """Softmax cross-entropy, mean over the batch. logits (N, K), labels (N,) int -> scalar."""
    shifted = logits - logits.max(axis=1, keepdims=True)  # exp cannot overflow
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, K)
    labels = np.asarray(labels, dtype=np.int64)
    loss = -np.take_along_axis(logp, labels[:, None], axis=1).mean()
    return loss.astype(logits.dtype), (logp, labels)


def cross_entropy_backward(cache):
    logp, labels = cache
    dlogits = np.exp(logp)  # softmax (N, K)
    dlogits[np.arange(len(labels)), labels] -= 1
    return dlogits * (1.0 / len(labels))


LOSSES = {"mse": (mse_forward, mse_backward), "l1": (l1_forward, l1_backward),
          "cross_entropy": (cross_entropy_forward, cross_entropy_backward)}


# ----------------------------------------------------------------------------- upsampling


def _linear_matrix(d, s, dtype):
    """(d * s, d): linear interpolation along one axis, out = A @ in, torch's
    align_corners=False (half-pixel centres): src = (o + 0.5) / s - 0.5 clamped below at 0,
    i0 = floor(src), i1 = min(i0 + 1, d - 1), lam = src - i0; row o has 1 - lam at i0 and lam
    at i1 (both on one entry, summing to 1, where the clamp folds them together).

    The source index is computed as torch does, (1 / s) (o + 0.5) - 0.5 in float64
    (aten/src/ATen/native/UpSample.h, area_pixel_compute_source_index).
    """
    o = np.arange(d * s)
    src = np.maximum((1.0 / s) * (o + 0.5) - 0.5, 0.0)  # (d s,)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, d - 1)
    lam = src - i0
    a = np.zeros((d * s, d))
    np.add.at(a, (o, i0), 1 - lam)
    np.add.at(a, (o, i1), lam)
    return a.astype(dtype)


def _along(x, a, axis):
    """Apply the matrix a (m, d) along `axis` of x (..., d, ...) -> (..., m, ...)."""
    y = np.tensordot(a, x, axes=([1], [axis]))  # (m, *x.shape without axis)
    return np.moveaxis(y, 0, axis)


def upsample_forward(x, scale, mode):
    """x (N, C, *S) -> out (N, C, *(S * scale)), scale an int per spatial axis.

    nearest repeats each sample `scale` times per axis; linear (1D linear, 2D bilinear, 3D
    trilinear) is separable, one interpolation matrix per axis (`_linear_matrix`), as
    torch's F.interpolate(x, scale_factor=scale, mode=..., align_corners=False)
    (backends/spec.py `Upsample`).
    """
    spatial = x.shape[2:]
    scale = (scale,) * len(spatial) if isinstance(scale, int) else tuple(scale)
    if mode == "nearest":
        out = x
        for axis, s in enumerate(scale, start=2):
            out = np.repeat(out, s, axis=axis)  # (N, C, ..., d s, ...)
        return out, ("nearest", spatial, scale)
    if mode == "linear":
        mats = [_linear_matrix(d, s, x.dtype) for d, s in zip(spatial, scale)]
        out = x
        for axis, a in enumerate(mats, start=2):
            out = _along(out, a, axis)  # (N, C, ..., d s, ...)
        return np.ascontiguousarray(out), ("linear", spatial, mats)
    raise ValueError(f"upsample mode must be 'nearest' or 'linear', got {mode!r}")


def upsample_backward(dout, cache):
    """dout (N, C, *(S * scale)) -> (dx (N, C, *S), ()): the adjoint of the forward.

    nearest: each input sample receives the sum of the scale^d block it was copied into;
    linear: A^T along each axis (the transpose of a separable map is separable).
    """
    mode, spatial, rest = cache
    n, c = dout.shape[:2]
    if mode == "nearest":
        blocks = [v for d, s in zip(spatial, rest) for v in (d, s)]
        dx = dout.reshape(n, c, *blocks)  # (N, C, d1, s1, d2, s2, ...)
        dx = dx.sum(axis=tuple(range(3, 3 + 2 * len(spatial), 2)))  # (N, C, *S)
        return dx, ()
    dx = dout
    for axis, a in enumerate(rest, start=2):
        dx = _along(dx, a.T, axis)  # (N, C, ..., d, ...)
    return np.ascontiguousarray(dx), ()
