"""NumPy convolution's two paths, im2col and shifted slabs, each forced, against torch and
each other; shifted slabs also in blocks of 8 rows with every sample a run of its own
("shifted/blocks"), so that the row blocking's boundaries are crossed.

layers.CONV_PATH forces a path; a spy on the two cores (`_shifted`, and `_conv` for im2col)
checks that the forced one really ran (shifted slabs take only stride 1: a stride-2 case
must run im2col whatever is forced). Over 1D/2D/3D, conv and transposed conv, stride 1/2,
dilation 1/2, padding 0/1/2, odd sizes and channel counts, float32 and float64: the output
and every gradient (dx, dw, db) against torch autograd in float64, and the two paths against
each other; central differences on tiny float64 cases; and the dispatch rule of layers.py's
docstring on the shapes it was measured on.
"""

import numpy as np
import pytest
from test_numpy_ops import (  # noqa: F401 (autouse fixture)
    REFS,
    F,
    check_op,
    one_blas_thread,
    rand,
    torch,
    with_torch,
)

from backends.numpy import layers

# "shifted/blocks": shifted slabs in blocks of 8 grid rows (layers._blocks's floor) and no
# junk rows bridged, so that every case here crosses block boundaries, a last block falls
# short, the samples' runs are split, and the weight gradient sums over many blocks; at the
# default sizes these tiny cases are one block over the whole batch
PATHS = ["im2col", "shifted", "shifted/blocks"]
SIZE = {1: 11, 2: 7, 3: 5}  # odd spatial sizes, small enough for central differences in 1D
TOL = {np.float64: dict(atol=1e-10, rtol=1e-8),  # against torch in float64
       np.float32: dict(atol=2e-4, rtol=2e-4)}  # float32 products of ~80 terms of size ~1
GRID = [(s, d, p) for s in (1, 2) for d in (1, 2) for p in (0, 1, 2)]  # stride, dilation, pad


@pytest.fixture
def ran(monkeypatch):
    """The cores that ran: a list that `_shifted` appends "shifted" to and `_conv` "im2col"."""
    seen = []
    for name, tag in (("_shifted", "shifted"), ("_conv", "im2col")):
        core = getattr(layers, name)

        def spy(*args, _core=core, _tag=tag, **kwargs):
            seen.append(_tag)
            return _core(*args, **kwargs)

        monkeypatch.setattr(layers, name, spy)
    return seen


def forced(monkeypatch, path):
    core, _, blocks = path.partition("/")
    monkeypatch.setattr(layers, "CONV_PATH", core)
    if blocks:
        monkeypatch.setattr(layers, "SHIFTED_GEMM_MNK", 1)
        monkeypatch.setattr(layers, "SHIFTED_CALL_MNK", 0)  # every sample its own span


def problem(nd, transposed, dtype, stride, dilation, padding, seed=0):
    """(fwd, bwd, arrays, torch_fn): x (2, 3, *S), a 3^d kernel, 3 in and 2 out channels."""
    kernel = (3,) * nd
    x = rand(2, 3, *(SIZE[nd],) * nd, seed=seed).astype(dtype)
    b = rand(2, seed=seed + 2).astype(dtype)
    if transposed:
        # output_padding < stride or < dilation: at stride 1 and dilation 2 it pads the
        # flipped conv more after than before (hi > lo), the shared padding's harder case
        op = 1 if stride > 1 or dilation > 1 else 0
        w = rand(3, 2, *kernel, seed=seed + 1).astype(dtype)

        def fwd(x, w, b):
            return layers.conv_transpose_forward(x, w, b, stride, padding, op, dilation)

        def torch_fn(x, w, b):
            return getattr(F, f"conv_transpose{nd}d")(x, w, b, stride=stride, padding=padding,
                                                      output_padding=op, dilation=dilation)

        return fwd, layers.conv_transpose_backward, [x, w, b], torch_fn
    w = rand(2, 3, *kernel, seed=seed + 1).astype(dtype)

    def fwd(x, w, b):
        return layers.conv_forward(x, w, b, stride, padding, dilation)

    def torch_fn(x, w, b):
        return getattr(F, f"conv{nd}d")(x, w, b, stride=stride, padding=padding,
                                        dilation=dilation)

    return fwd, layers.conv_backward, [x, w, b], torch_fn


def run(fwd, bwd, arrays, seed=5):
    """(out, dx, dw, db) for a standard normal dout."""
    out, cache = fwd(*arrays)
    dout = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
    dx, (dw, db) = bwd(dout, cache)
    return out, dx, dw, db, dout


def expected_cores(path, stride):
    """What a forced path runs: shifted slabs only at stride 1 (every case here pads by at
    most dil (K - 1), so no transposed conv needs a crop); im2col otherwise."""
    return {"shifted"} if path.startswith("shifted") and stride == 1 else {"im2col"}


@with_torch
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "conv_t"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("stride, dilation, padding", GRID)
def test_path_matches_torch(nd, transposed, dtype, stride, dilation, padding, path,
                            monkeypatch, ran):
    forced(monkeypatch, path)
    fwd, bwd, arrays, torch_fn = problem(nd, transposed, dtype, stride, dilation, padding)
    out, dx, dw, db, dout = run(fwd, bwd, arrays)
    assert set(ran) == expected_cores(path, stride), ran
    assert {a.dtype for a in (out, dx, dw, db)} == {np.dtype(dtype)}
    ts = [torch.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    ref = torch_fn(*ts)
    ref.backward(torch.tensor(dout.astype(np.float64)))
    np.testing.assert_allclose(out, ref.detach().numpy(), **TOL[dtype])
    for name, got, t in zip(("dx", "dw", "db"), (dx, dw, db), ts):
        np.testing.assert_allclose(got, t.grad.numpy(), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("transposed", [False, True], ids=["conv", "conv_t"])
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("dilation, padding", [(1, 0), (1, 1), (2, 2), (2, 1)])
def test_paths_agree(nd, transposed, dtype, dilation, padding, monkeypatch, ran):
    """Stride 1, where the paths differ: the same numbers up to rounding, without torch."""
    results = {}
    for path in PATHS:
        forced(monkeypatch, path)
        ran.clear()
        fwd, bwd, arrays, _ = problem(nd, transposed, dtype, 1, dilation, padding, seed=3)
        results[path] = run(fwd, bwd, arrays)[:4]
        assert set(ran) == {path.partition("/")[0]}, ran
    tol = dict(atol=1e-12, rtol=1e-11) if dtype == np.float64 else dict(atol=1e-5, rtol=1e-5)
    for path in PATHS[1:]:
        for name, a, b in zip(("out", "dx", "dw", "db"), results["im2col"], results[path]):
            np.testing.assert_allclose(a, b, **tol, err_msg=f"{path} {name}")


@pytest.mark.parametrize("case", [
    # (nd, transposed, stride, dilation, padding, kernel)
    (1, False, 1, 2, 2, (3,)), (2, False, 1, 1, 1, (3, 2)), (2, True, 1, 1, 1, (3, 3)),
    (3, False, 1, 1, (1, 0, 1), (3, 1, 2)), (3, True, 1, (1, 2, 1), 1, (2, 3, 3)),
], ids=str)
@pytest.mark.parametrize("path", PATHS[1:])
def test_shifted_central_differences(case, path, monkeypatch, ran):
    """Tiny float64 cases, asymmetric kernels and paddings: the shifted path's backward
    against central differences of sum(forward * dout), for x, w and b."""
    nd, transposed, stride, dilation, padding, kernel = case
    forced(monkeypatch, path)
    size = {1: 6, 2: 4, 3: 3}[nd]
    x = rand(2, 2, *(size,) * nd, seed=1)
    b = rand(3, seed=3)
    if transposed:
        w = rand(2, 3, *kernel, seed=2)
        fwd = lambda x, w, b: layers.conv_transpose_forward(x, w, b, stride, padding, 0,  # noqa: E731
                                                            dilation)
        bwd = layers.conv_transpose_backward
    else:
        w = rand(3, 2, *kernel, seed=2)
        fwd = lambda x, w, b: layers.conv_forward(x, w, b, stride, padding, dilation)  # noqa: E731
        bwd = layers.conv_backward
    check_op(fwd, bwd, [x, w, b], None, "fd")
    assert set(ran) == {"shifted"}, ran


@pytest.mark.parametrize("path", PATHS[1:])
def test_shifted_without_bias_and_channels_of_one(path, monkeypatch):
    """b None (each block's first gemm overwrites it, beta 0) and C = F = 1 (gemms of rank
    1)."""
    forced(monkeypatch, path)
    x, w = rand(2, 1, 5, 6, seed=1), rand(1, 1, 3, 3, seed=2)
    check_op(lambda x, w: layers.conv_forward(x, w, None, 1, 1, 1), layers.conv_backward,
             [x, w], None, "fd")
    expected = np.zeros((2, 1, 5, 6))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for i, j in np.ndindex(3, 3):  # the cross-correlation written out
        expected += w[0, 0, i, j] * xp[:, :, i:i + 5, j:j + 6]
    np.testing.assert_allclose(layers.conv_forward(x, w, None, 1, 1, 1)[0], expected,
                               atol=1e-12)


@pytest.mark.parametrize("channels, spatial, kernel, stride, pad, picks", [
    ((64, 64), (16, 16), (3, 3), (1, 1), 1, "shifted"),  # benchmarks' wide 2D
    ((32, 32), (16, 16, 16), (3, 3, 3), (1, 1, 1), 1, "shifted"),  # wide 3D
    ((16, 32), (32, 32), (3, 3), (1, 1), 1, "shifted"),  # narrow 2D
    ((16, 16), (8, 8, 8), (3, 3, 3), (1, 1, 1), 1, "shifted"),  # unet level 1, junk 1.42
    ((1, 6), (8, 8), (3, 3), (1, 1), 1, "im2col"),  # one input channel
    ((32, 32), (4, 4), (3, 3), (1, 1), 1, "im2col"),  # junk 25/16
    ((64, 64), (2, 2), (3, 3), (1, 1), 1, "im2col"),  # junk 9/4
    ((16, 32), (8, 8), (3, 3), (2, 2), 1, "im2col"),  # stride 2
])
def test_rule(channels, spatial, kernel, stride, pad, picks):
    nd = len(spatial)
    assert layers.CONV_PATH is None
    assert layers._conv_path(channels, spatial, kernel, stride, (pad,) * nd, (pad,) * nd,
                             (1,) * nd) == picks


def test_shifted_scratch_is_per_thread(monkeypatch):
    """The shifted path's temporaries are lent from per-thread buffers (layers._scratch): two
    threads running different geometries at once get what each gets alone."""
    import threading

    forced(monkeypatch, "shifted")
    cases = [problem(2, False, np.float64, 1, 1, 1, seed=4),
             problem(3, True, np.float64, 1, 2, 2, seed=6)]
    alone = [run(fwd, bwd, arrays)[:4] for fwd, bwd, arrays, _ in cases]
    got = [[], []]

    def work(i):
        fwd, bwd, arrays, _ = cases[i]
        for _ in range(20):
            got[i].append(run(fwd, bwd, arrays)[:4])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for result in got[i]:
            for a, b in zip(result, alone[i]):
                np.testing.assert_array_equal(a, b)
