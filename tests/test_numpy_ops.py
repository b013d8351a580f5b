"""Every NumPy op against central differences (float64) and against torch (float64).

Each case runs the op's forward and backward once and checks three things: the forward
against torch.nn.functional, the backward against torch autograd, and the backward against
central differences of sum(forward * dout), for the input and every parameter.
Convolution, transposed convolution and pooling are in test_numpy_conv.py.
"""

import numpy as np
import pytest

from backends.numpy import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL_FD = 1e-6  # central differences, h = 1e-6, float64: ||analytic - numeric|| / ||both||
ATOL_T, RTOL_T = 1e-10, 1e-8  # against torch in float64


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Tiny matrices: OpenBLAS threads only cost, and stall badly on a loaded 2-core box."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30)


def numeric_grad(f, x, h=1e-6):
    """d f() / d x by central differences; f reads x, which is perturbed in place."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f()
        x[idx] = old - h
        fm = f()
        x[idx] = old
        grad[idx] = (fp - fm) / (2 * h)
    return grad


def check_op(forward, backward, arrays, torch_fn=None, seed=0):
    """Forward and backward of one op on float64 `arrays`: x first, then its parameters.

    Every array takes a gradient; torch_fn(*tensors) is the reference. Returns the output.
    """
    out, cache = forward(*arrays)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    dx, grads = backward(dout, cache)
    assert isinstance(grads, tuple)
    analytic = [g for g in (dx, *grads) if g is not None]
    assert len(analytic) == len(arrays)
    if torch_fn is not None:
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        ref = torch_fn(*ts)
        ref.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, ref.detach().numpy(), atol=ATOL_T, rtol=RTOL_T)
        for a, t in zip(analytic, ts):
            np.testing.assert_allclose(a, t.grad.numpy(), atol=ATOL_T, rtol=RTOL_T)
    for i, a in enumerate(analytic):
        num = numeric_grad(lambda: np.sum(forward(*arrays)[0] * dout), arrays[i])
        assert rel_err(a, num) < RTOL_FD, f"input {i}: rel err {rel_err(a, num):.2e}"
    return out


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- dense


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias):
    x, w, b = rand(4, 5), rand(3, 5, seed=2), rand(3, seed=3)
    if bias:
        check_op(nn.linear_forward, nn.linear_backward, [x, w, b], F.linear)
    else:
        out = check_op(lambda x, w: nn.linear_forward(x, w, None), nn.linear_backward, [x, w],
                       F.linear)
        np.testing.assert_allclose(out, x @ w.T)


def test_flatten():
    out = check_op(nn.flatten_forward, nn.flatten_backward, [rand(2, 3, 4, 5)],
                   lambda x: torch.flatten(x, 1))
    assert out.shape == (2, 60)


# ----------------------------------------------------------------------------- activations


ACT_TORCH = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu}


@pytest.mark.parametrize("fn", ["sigmoid", "tanh", "relu"])
def test_activation(fn):
    forward, backward = nn.ACTIVATIONS[fn]
    check_op(forward, backward, [rand(3, 4, 5) * 3], ACT_TORCH[fn])


@pytest.mark.parametrize("slope", [0.1, 0.01, 0.3])
def test_leaky_relu(slope):
    x = rand(3, 4, 5)
    out = check_op(lambda x: nn.leaky_relu_forward(x, slope), nn.leaky_relu_backward, [x],
                   lambda t: F.leaky_relu(t, slope))
    np.testing.assert_array_equal(out, np.maximum(slope * x, x))  # the lecture's formula


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("shape", [(4, 6), (2, 6, 3, 3), (2, 6, 2, 3, 2)])
def test_maxout(k, shape):
    def reference(t):  # out[:, c] = max_j in[:, c*k + j]
        return t.reshape(t.shape[0], -1, k, *t.shape[2:]).amax(dim=2)

    out = check_op(lambda x: nn.maxout_forward(x, k), nn.maxout_backward, [rand(*shape)],
                   reference)
    assert out.shape == (shape[0], shape[1] // k, *shape[2:])


# ----------------------------------------------------------------------------- regularisers


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5])
def test_dropout(p):
    x = rand(4, 3, 5)
    mask = (np.random.default_rng(7).random(x.shape) >= p).astype(np.float32)
    out = check_op(lambda x: nn.dropout_forward(x, mask, p), nn.dropout_backward, [x],
                   lambda t: t * torch.tensor(mask, dtype=t.dtype) / (1 - p))
    np.testing.assert_allclose(out[mask == 0], 0)


def test_dropout_matches_torch_scaling():
    """torch's own dropout zeroes units and scales the rest by 1 / (1 - p): same convention."""
    p, xt = 0.3, torch.rand(64, 32, dtype=torch.float64) + 0.5  # no zeros of its own
    ref = F.dropout(xt, p, training=True).numpy()
    mask = (ref != 0).astype(np.float32)
    np.testing.assert_allclose(nn.dropout_forward(xt.numpy(), mask, p)[0], ref, rtol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 4, 5), (2, 3, 3, 4, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm(shape, train):
    c = shape[1]
    x = rand(*shape) * 2 + 1
    gamma, beta = 1 + 0.1 * rand(c, seed=2), 0.1 * rand(c, seed=3)
    mean, var = 0.1 * rand(c, seed=4), 1 + np.abs(rand(c, seed=5))
    t_mean, t_var = torch.tensor(mean), torch.tensor(var)

    def forward(x, g, b):
        return nn.batchnorm_forward(x, g, b, mean, var, train=train, eps=1e-5, momentum=0.1)

    check_op(forward, nn.batchnorm_backward, [x, gamma, beta],
             lambda x, g, b: F.batch_norm(x, t_mean, t_var, g, b, training=train,
                                          momentum=0.1, eps=1e-5))
    _, cache = forward(x, gamma, beta)
    if train:  # torch updated t_mean, t_var in place: momentum, unbiased variance
        new_mean, new_var = cache["running"]
        np.testing.assert_allclose(new_mean, t_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(new_var, t_var.numpy(), rtol=1e-12)
        m = x.size // c
        axes = tuple(i for i in range(x.ndim) if i != 1)
        np.testing.assert_allclose(new_var, 0.9 * var + 0.1 * x.var(axis=axes) * m / (m - 1))
    else:
        assert "running" not in cache


# ----------------------------------------------------------------------------- losses


def check_loss(name, out, y, torch_fn):
    forward, backward = nn.LOSSES[name]
    loss, cache = forward(out, y)
    dout = backward(cache)
    t = torch.tensor(out, requires_grad=True)
    ref = torch_fn(t, torch.tensor(y))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), atol=ATOL_T, rtol=RTOL_T)
    np.testing.assert_allclose(dout, t.grad.numpy(), atol=ATOL_T, rtol=RTOL_T)
    num = numeric_grad(lambda: forward(out, y)[0], out)
    assert rel_err(dout, num) < RTOL_FD


@pytest.mark.parametrize("name, ref", [("mse", F.mse_loss), ("l1", F.l1_loss)])
@pytest.mark.parametrize("shape", [(6, 1), (3, 2, 4, 4)])
def test_regression_loss(name, ref, shape):
    check_loss(name, rand(*shape), rand(*shape, seed=9), ref)


def test_cross_entropy():
    logits, labels = rand(7, 5) * 3, np.random.default_rng(3).integers(0, 5, 7)
    logits[0] += 1000  # a large logit must not overflow
    check_loss("cross_entropy", logits, labels, F.cross_entropy)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_keep_dtype(dtype):
    """float32 in, float32 out, forward and backward, for every op; and float32 is close."""
    x = rand(4, 6, 5, 5).astype(dtype)
    c = np.ones(6, dtype)
    cases = [
        (nn.linear_forward, (x.reshape(4, -1), rand(3, 150).astype(dtype), c[:3])),
        (nn.conv_forward, (x, rand(2, 6, 3, 3).astype(dtype), c[:2], 2, 1, 1)),
        (nn.conv_transpose_forward, (x, rand(6, 2, 3, 3).astype(dtype), c[:2], 2, 1, 1)),
        (nn.pool_forward, (x, "max", 2)), (nn.pool_forward, (x, "avg", 3, 2, 1)),
        (lambda *a: nn.batchnorm_forward(*a, train=True), (x, c, c, c, c)),
        (nn.dropout_forward, (x, np.ones(x.shape, np.float32), 0.5)),
        (nn.flatten_forward, (x,)), (nn.leaky_relu_forward, (x,)),
        *[(f, (x,)) for f, _ in nn.ACTIVATIONS.values()],
    ]
    backwards = {nn.linear_forward: nn.linear_backward, nn.conv_forward: nn.conv_backward,
                 nn.conv_transpose_forward: nn.conv_transpose_backward,
                 nn.pool_forward: nn.pool_backward, nn.dropout_forward: nn.dropout_backward,
                 nn.flatten_forward: nn.flatten_backward,
                 **{f: b for f, b in nn.ACTIVATIONS.values()}}
    for forward, args in cases:
        out, cache = forward(*args)
        assert out.dtype == dtype, forward
        backward = backwards.get(forward, nn.batchnorm_backward)
        dx, grads = backward(np.ones_like(out), cache)
        assert dx.dtype == dtype and all(g.dtype == dtype for g in grads if g is not None)
        if dtype == np.float32:  # the same op in float64 agrees to float32 precision
            out64 = forward(*(a.astype(np.float64) if isinstance(a, np.ndarray) else a
                              for a in args))[0]
            np.testing.assert_allclose(out, out64, rtol=1e-4, atol=1e-4)
    for name, (forward, backward) in nn.LOSSES.items():
        y = np.zeros(4, np.int64) if name == "cross_entropy" else np.zeros((4, 3), np.float32)
        loss, cache = forward(rand(4, 3).astype(dtype), y)
        assert loss.dtype == dtype and backward(cache).dtype == dtype, name
