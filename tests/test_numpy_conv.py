"""NumPy convolution, transposed convolution and pooling against torch and central differences.

Backward against central differences ("fd"), and forward against torch.nn.functional and
backward against torch autograd ("torch", skipped without torch), all in float64, over grids
of stride, padding, dilation and output_padding in 1D, 2D and 3D (the helpers and the `ref`
fixture are test_numpy_ops.py's). Plus the output-size formula as a property test, the
lecture's 3D example, and max pooling's ties.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_numpy_ops import (  # noqa: F401 (autouse fixture)
    REFS,
    F,
    check_op,
    one_blas_thread,
    rand,
    tie_input,
    torch,
    with_torch,
)

from backends import spec as S
from backends.numpy import layers


@pytest.fixture(params=REFS)
def ref(request):
    """"fd" (central differences) or "torch" (skipped without it), as in test_numpy_ops."""
    return request.param


def torch_conv(nd):
    return getattr(F, f"conv{nd}d")


def torch_conv_t(nd):
    return getattr(F, f"conv_transpose{nd}d")


def torch_pool(mode, nd):
    return getattr(F, f"{mode}_pool{nd}d")


SIZE = {1: 9, 2: 7, 3: 5}  # spatial size per axis: small enough for central differences

# (kernel, stride, padding, dilation)
CONV_GRID = [(3, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (2, 2, 0, 1), (3, 1, 2, 2),
             (3, 2, 1, 2), (1, 3, 0, 1), ((3, 2, 1), (1, 2, 1), (1, 0, 1), (1, 1, 2))]


def _geom(value, nd):
    return value[:nd] if isinstance(value, tuple) else value


def _tup(v, nd):
    return (v,) * nd if isinstance(v, int) else v


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k, s, p, d", CONV_GRID)
@pytest.mark.parametrize("bias", [True, False])
def test_conv(nd, k, s, p, d, bias, ref):
    k, s, p, d = (_geom(v, nd) for v in (k, s, p, d))
    kernel = (k,) * nd if isinstance(k, int) else k
    x, w, b = rand(2, 3, *(SIZE[nd],) * nd), rand(2, 3, *kernel, seed=2), rand(2, seed=3)
    if bias:
        out = check_op(lambda x, w, b: layers.conv_forward(x, w, b, s, p, d), layers.conv_backward,
                       [x, w, b], lambda *t: torch_conv(nd)(*t, stride=s, padding=p, dilation=d),
                       ref)
    else:
        out = check_op(lambda x, w: layers.conv_forward(x, w, None, s, p, d), layers.conv_backward,
                       [x, w], lambda *t: torch_conv(nd)(*t, stride=s, padding=p, dilation=d),
                       ref)
    geo = [_tup(v, nd) for v in (s, p, d)]
    expected = [S.conv_out(SIZE[nd], kk, *g) for kk, *g in zip(kernel, *geo)]
    assert out.shape == (2, 2, *expected)


# (kernel, stride, padding, output_padding, dilation): the stride-1 path (a flipped conv),
# the col2im path (stride > 1, or padding beyond dil (k - 1)), output_padding < stride or
# < dilation
CONV_T_GRID = [(3, 1, 0, 0, 1), (3, 1, 1, 0, 1), (3, 2, 1, 1, 1), (2, 2, 0, 0, 1),
               (3, 3, 1, 2, 1), (3, 2, 0, 1, 2), (3, 1, 1, 1, 2), (2, 1, 2, 0, 1),
               ((2, 3, 1), (2, 1, 1), (0, 1, 0), (1, 0, 0), (1, 1, 2))]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k, s, p, op, d", CONV_T_GRID)
def test_conv_transpose(nd, k, s, p, op, d, ref):
    k, s, p, op, d = (_geom(v, nd) for v in (k, s, p, op, d))
    kernel = (k,) * nd if isinstance(k, int) else k
    size = {1: 6, 2: 5, 3: 4}[nd]
    x, w, b = rand(2, 3, *(size,) * nd), rand(3, 2, *kernel, seed=2), rand(2, seed=3)
    out = check_op(lambda x, w, b: layers.conv_transpose_forward(x, w, b, s, p, op, d),
                   layers.conv_transpose_backward, [x, w, b],
                   lambda *t: torch_conv_t(nd)(*t, stride=s, padding=p, output_padding=op,
                                               dilation=d), ref)
    geo = [_tup(v, nd) for v in (s, p, op, d)]
    expected = [S.conv_transpose_out(size, kk, *g) for kk, *g in zip(kernel, *geo)]
    assert out.shape == (2, 2, *expected)


# (kernel, stride, padding); stride None is the kernel
POOL_GRID = [(2, None, 0), (3, None, 1), (3, 2, 1), (3, 1, 1), (2, 1, 1), (3, 2, 0)]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k, s, p", POOL_GRID)
def test_pool(nd, mode, k, s, p, ref):
    x = rand(2, 3, *(SIZE[nd],) * nd)
    extra = {"count_include_pad": True} if mode == "avg" else {}
    out = check_op(lambda x: layers.pool_forward(x, mode, k, s, p), layers.pool_backward, [x],
                   lambda t: torch_pool(mode, nd)(t, k, s, p, **extra), ref)
    assert out.shape == (2, 3, *(S.conv_out(SIZE[nd], k, s or k, p),) * nd)


def test_avg_pool_counts_zero_padding():
    x = np.ones((1, 1, 4, 4))
    out = layers.pool_forward(x, "avg", 3, 1, 1)[0]
    assert out[0, 0, 0, 0] == pytest.approx(4 / 9)  # a corner sees 4 ones and 5 pad zeros
    assert layers.pool_forward(-x, "max", 3, 1, 1)[0].max() == -1  # max pads with -inf, not 0


def test_max_pool_tie_goes_to_the_first_maximum():
    """All-zero 4x4, kernel 3, stride 1, pad 1: every window ties, and its gradient goes to
    its first real element (row-major; pads are -inf), (max(i - 1, 0), max(j - 1, 0)) for
    output (i, j). So rows (and columns) 0, 1, 2, 3 are first for 2, 1, 1, 0 outputs."""
    out, cache = layers.pool_forward(np.zeros((1, 1, 4, 4)), "max", 3, 1, 1)
    dx, _ = layers.pool_backward(np.ones_like(out), cache)
    counts = np.array([2.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(dx[0, 0], np.outer(counts, counts))
    out, cache = layers.pool_forward(np.zeros((1, 1, 2, 2, 2)), "max", 2)  # one window of 8 ties
    dx, _ = layers.pool_backward(np.full_like(out, 5.0), cache)
    assert dx[0, 0, 0, 0, 0] == 5 and dx.sum() == 5


@with_torch
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("k, s, p", POOL_GRID)
def test_max_pool_ties_match_torch(nd, k, s, p):
    """Half the input exactly 0, as a zero-padded region: ties in every window there."""
    check_op(lambda x: layers.pool_forward(x, "max", k, s, p), layers.pool_backward,
             [tie_input(2, 3, *(SIZE[nd],) * nd)], lambda t: torch_pool("max", nd)(t, k, s, p),
             "torch")


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("ref", REFS)
@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3),
       dil=st.integers(1, 3))
def test_conv_out_formula(ref, d, k, s, p, dil):
    """d' = floor((d + 2p - dil (k - 1) - 1) / s) + 1: the numpy op's size, and torch's."""
    expected = S.conv_out(d, k, s, p, dil)
    if ref == "torch":
        x, w = torch.zeros(1, 1, d), torch.zeros(1, 1, k)
        if expected < 1:
            with pytest.raises(RuntimeError):
                F.conv1d(x, w, stride=s, padding=p, dilation=dil)
            return
        assert F.conv1d(x, w, stride=s, padding=p, dilation=dil).shape[-1] == expected
    if expected < 1:
        return
    out = layers.conv_forward(np.zeros((1, 1, d)), np.zeros((1, 1, k)), None, s, p, dil)[0]
    assert out.shape[-1] == expected


@pytest.mark.parametrize("ref", REFS)
@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2),
       op=st.integers(0, 2), dil=st.integers(1, 2))
def test_conv_transpose_out_formula(ref, d, k, s, p, op, dil):
    expected = S.conv_transpose_out(d, k, s, p, op, dil)
    if op >= max(s, dil) or expected < 1:
        return  # torch refuses these
    if ref == "torch":
        x, w = torch.zeros(1, 1, d), torch.zeros(1, 1, k)
        got = F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op, dilation=dil)
        assert got.shape[-1] == expected
    out = layers.conv_transpose_forward(np.zeros((1, 1, d)), np.zeros((1, 1, k)), None, s, p,
                                        op, dil)[0]
    assert out.shape[-1] == expected


def test_lecture_example_3d(ref):
    """1x32x32x32 input, 2 filters of 4^3, padding 1, stride 2 -> 2x16x16x16."""
    conv = S.Conv(name="conv", ndim=3, in_channels=1, out_channels=2, kernel=4, stride=2,
                  padding=1)
    spec = S.ModelSpec(arch="lecture", input_shape=(1, 32, 32, 32), loss="mse",
                       body=S.Sequential(name="net", layers=(conv,)))
    assert spec.output_shape == (2, 16, 16, 16)
    assert S.param_shapes(spec)[0] == {"conv.weight": (2, 1, 4, 4, 4), "conv.bias": (2,)}
    x = rand(1, 1, 32, 32, 32).astype(np.float32)
    w, b = rand(2, 1, 4, 4, 4, seed=2).astype(np.float32), np.arange(2, dtype=np.float32)
    out = layers.conv_forward(x, w, b, stride=2, padding=1)[0]
    assert out.shape == (1, 2, 16, 16, 16) and out.dtype == np.float32
    if ref == "torch":
        expected = F.conv3d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2,
                            padding=1).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-4, rtol=1e-4)
        return
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1), (1, 1)))
    for f, i, j, m in [(0, 0, 0, 0), (1, 7, 3, 15), (0, 15, 15, 15), (1, 8, 0, 9)]:
        # out[f, i, j, m] = b[f] + sum of w[f] times the 4^3 window at 2 (i, j, m), padded
        window = xp[0, :, 2 * i:2 * i + 4, 2 * j:2 * j + 4, 2 * m:2 * m + 4]  # (1, 4, 4, 4)
        assert out[0, f, i, j, m] == pytest.approx(b[f] + np.sum(window * w[f]), abs=1e-4)
