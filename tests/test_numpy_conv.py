"""NumPy convolution, transposed convolution and pooling against torch and central differences.

Forward against torch.nn.functional, backward against torch autograd and against central
differences, all in float64, over grids of stride, padding, dilation and output_padding in
1D, 2D and 3D (the helpers are test_numpy_ops.py's). Plus the output-size formula as a
property test, and the lecture's 3D example.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_numpy_ops import check_op, one_blas_thread, rand  # noqa: F401 (autouse fixture)

from backends import spec as S
from backends.numpy import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
POOL = {("max", 1): F.max_pool1d, ("max", 2): F.max_pool2d, ("max", 3): F.max_pool3d,
        ("avg", 1): F.avg_pool1d, ("avg", 2): F.avg_pool2d, ("avg", 3): F.avg_pool3d}
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
def test_conv(nd, k, s, p, d, bias):
    k, s, p, d = (_geom(v, nd) for v in (k, s, p, d))
    kernel = (k,) * nd if isinstance(k, int) else k
    x, w, b = rand(2, 3, *(SIZE[nd],) * nd), rand(2, 3, *kernel, seed=2), rand(2, seed=3)
    conv = CONV[nd]
    if bias:
        out = check_op(lambda x, w, b: nn.conv_forward(x, w, b, s, p, d), nn.conv_backward,
                       [x, w, b], lambda x, w, b: conv(x, w, b, stride=s, padding=p, dilation=d))
    else:
        out = check_op(lambda x, w: nn.conv_forward(x, w, None, s, p, d), nn.conv_backward,
                       [x, w], lambda x, w: conv(x, w, stride=s, padding=p, dilation=d))
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
def test_conv_transpose(nd, k, s, p, op, d):
    k, s, p, op, d = (_geom(v, nd) for v in (k, s, p, op, d))
    kernel = (k,) * nd if isinstance(k, int) else k
    size = {1: 6, 2: 5, 3: 4}[nd]
    x, w, b = rand(2, 3, *(size,) * nd), rand(3, 2, *kernel, seed=2), rand(2, seed=3)
    out = check_op(lambda x, w, b: nn.conv_transpose_forward(x, w, b, s, p, op, d),
                   nn.conv_transpose_backward, [x, w, b],
                   lambda x, w, b: CONV_T[nd](x, w, b, stride=s, padding=p, output_padding=op,
                                              dilation=d))
    geo = [_tup(v, nd) for v in (s, p, op, d)]
    expected = [S.conv_transpose_out(size, kk, *g) for kk, *g in zip(kernel, *geo)]
    assert out.shape == (2, 2, *expected)


# (kernel, stride, padding); stride None is the kernel
POOL_GRID = [(2, None, 0), (3, None, 1), (3, 2, 1), (3, 1, 1), (2, 1, 1), (3, 2, 0)]


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("k, s, p", POOL_GRID)
def test_pool(nd, mode, k, s, p):
    x = rand(2, 3, *(SIZE[nd],) * nd)
    extra = {"count_include_pad": True} if mode == "avg" else {}
    out = check_op(lambda x: nn.pool_forward(x, mode, k, s, p), nn.pool_backward, [x],
                   lambda t: POOL[mode, nd](t, k, s, p, **extra))
    assert out.shape == (2, 3, *(S.conv_out(SIZE[nd], k, s or k, p),) * nd)


def test_avg_pool_counts_zero_padding():
    x = np.ones((1, 1, 4, 4))
    out = nn.pool_forward(x, "avg", 3, 1, 1)[0]
    assert out[0, 0, 0, 0] == pytest.approx(4 / 9)  # a corner sees 4 ones and 5 pad zeros
    assert nn.pool_forward(-x, "max", 3, 1, 1)[0].max() == -1  # max pads with -inf, not 0


# ----------------------------------------------------------------------------- sizes


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 4), p=st.integers(0, 3),
       dil=st.integers(1, 3))
def test_conv_out_formula_matches_torch(d, k, s, p, dil):
    """d' = floor((d + 2p - dil (k - 1) - 1) / s) + 1, against the size torch produces."""
    expected = S.conv_out(d, k, s, p, dil)
    x, w = torch.zeros(1, 1, d), torch.zeros(1, 1, k)
    if expected < 1:
        with pytest.raises(RuntimeError):
            F.conv1d(x, w, stride=s, padding=p, dilation=dil)
        return
    assert F.conv1d(x, w, stride=s, padding=p, dilation=dil).shape[-1] == expected
    out = nn.conv_forward(np.zeros((1, 1, d)), np.zeros((1, 1, k)), None, s, p, dil)[0]
    assert out.shape[-1] == expected


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 2),
       op=st.integers(0, 2), dil=st.integers(1, 2))
def test_conv_transpose_out_formula_matches_torch(d, k, s, p, op, dil):
    expected = S.conv_transpose_out(d, k, s, p, op, dil)
    if op >= max(s, dil) or expected < 1:
        return  # torch refuses these
    x, w = torch.zeros(1, 1, d), torch.zeros(1, 1, k)
    got = F.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op, dilation=dil)
    assert got.shape[-1] == expected
    out = nn.conv_transpose_forward(np.zeros((1, 1, d)), np.zeros((1, 1, k)), None, s, p, op,
                                    dil)[0]
    assert out.shape[-1] == expected


def test_lecture_example_3d():
    """1x32x32x32 input, 2 filters of 4^3, padding 1, stride 2 -> 2x16x16x16."""
    conv = S.Conv(name="conv", ndim=3, in_channels=1, out_channels=2, kernel=4, stride=2,
                  padding=1)
    spec = S.ModelSpec(arch="lecture", input_shape=(1, 32, 32, 32), loss="mse",
                       body=S.Sequential(name="net", layers=(conv,)))
    assert spec.output_shape == (2, 16, 16, 16)
    assert S.param_shapes(spec)[0] == {"conv.weight": (2, 1, 4, 4, 4), "conv.bias": (2,)}
    x = rand(1, 1, 32, 32, 32).astype(np.float32)
    w, b = rand(2, 1, 4, 4, 4, seed=2).astype(np.float32), np.arange(2, dtype=np.float32)
    out = nn.conv_forward(x, w, b, stride=2, padding=1)[0]
    assert out.shape == (1, 2, 16, 16, 16) and out.dtype == np.float32
    ref = F.conv3d(torch.tensor(x), torch.tensor(w), torch.tensor(b), stride=2, padding=1)
    np.testing.assert_allclose(out, ref.numpy(), atol=1e-4, rtol=1e-4)
