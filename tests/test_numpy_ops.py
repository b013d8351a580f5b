"""Every NumPy op against central differences (float64) and against torch (float64).

Each case runs twice, once per reference (the `ref` fixture): "fd" checks the backward
against central differences of sum(forward * dout), for the input and every parameter, and
needs nothing but NumPy; "torch" checks the forward against torch.nn.functional and the
backward against torch autograd, and skips where torch is not installed. Kinks and ties
(backends/spec.py), where central differences do not apply, are checked by hand-computed
examples. Convolution, transposed convolution and pooling are in test_numpy_conv.py.
"""

import numpy as np
import pytest

from backends.numpy import layers

try:  # the second reference only: the reference's own checks run without it
    import torch
    F = torch.nn.functional
except ImportError:
    torch = F = None

with_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
REFS = [pytest.param("fd", id="fd"), pytest.param("torch", id="torch", marks=with_torch)]

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


@pytest.fixture(params=REFS)
def ref(request):
    """The reference a case is checked against: "fd" (central differences) or "torch"."""
    return request.param


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


def check_op(forward, backward, arrays, torch_fn, ref, seed=0, dout=None):
    """Forward and backward of one op on float64 `arrays`: x first, then its parameters.

    Every array takes a gradient. ref "fd": against central differences; ref "torch": against
    torch_fn(*tensors), which touches torch only when called. Returns the output.
    """
    out, cache = forward(*arrays)
    if dout is None:
        dout = np.random.default_rng(seed).standard_normal(out.shape)
    dx, grads = backward(dout, cache)
    assert isinstance(grads, tuple)
    analytic = [g for g in (dx, *grads) if g is not None]
    assert len(analytic) == len(arrays)
    if ref == "torch":
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        expected = torch_fn(*ts)
        expected.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, expected.detach().numpy(), atol=ATOL_T, rtol=RTOL_T)
        for a, t in zip(analytic, ts):
            np.testing.assert_allclose(a, t.grad.numpy(), atol=ATOL_T, rtol=RTOL_T)
        return out
    assert ref == "fd", ref
    for i, a in enumerate(analytic):
        num = numeric_grad(lambda: np.sum(forward(*arrays)[0] * dout), arrays[i])
        assert rel_err(a, num) < RTOL_FD, f"input {i}: rel err {rel_err(a, num):.2e}"
    return out


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# ----------------------------------------------------------------------------- dense


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, ref):
    x, w, b = rand(4, 5), rand(3, 5, seed=2), rand(3, seed=3)
    if bias:
        check_op(layers.linear_forward, layers.linear_backward, [x, w, b],
                 lambda *t: F.linear(*t), ref)
    else:
        out = check_op(lambda x, w: layers.linear_forward(x, w, None), layers.linear_backward,
                       [x, w], lambda *t: F.linear(*t), ref)
        np.testing.assert_allclose(out, x @ w.T)


def test_flatten(ref):
    out = check_op(layers.flatten_forward, layers.flatten_backward, [rand(2, 3, 4, 5)],
                   lambda x: torch.flatten(x, 1), ref)
    assert out.shape == (2, 60)


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("fn", ["sigmoid", "tanh", "relu"])
def test_activation(fn, ref):
    forward, backward = layers.ACTIVATIONS[fn]
    check_op(forward, backward, [rand(3, 4, 5) * 3], lambda t: getattr(torch, fn)(t), ref)


@pytest.mark.parametrize("slope", [0.1, 0.01, 0.3])
def test_leaky_relu(slope, ref):
    x = rand(3, 4, 5)
    out = check_op(lambda x: layers.leaky_relu_forward(x, slope), layers.leaky_relu_backward, [x],
                   lambda t: F.leaky_relu(t, slope), ref)
    np.testing.assert_array_equal(out, np.maximum(slope * x, x))  # the lecture's formula


def test_leaky_relu_steep_slope():
    """max(3x, x): x below 0, 3x above; central differences (torch's leaky_relu is min)."""
    x = rand(3, 4, 5)
    out = check_op(lambda x: layers.leaky_relu_forward(x, 3.0), layers.leaky_relu_backward, [x],
                   None, "fd")
    np.testing.assert_array_equal(out, np.maximum(3.0 * x, x))


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("shape", [(4, 6), (2, 6, 3, 3), (2, 6, 2, 3, 2)])
def test_maxout(k, shape, ref):
    def reference(t):  # out[:, c] = max_j in[:, c*k + j]
        return t.reshape(t.shape[0], -1, k, *t.shape[2:]).amax(dim=2)

    out = check_op(lambda x: layers.maxout_forward(x, k), layers.maxout_backward, [rand(*shape)],
                   reference, ref)
    assert out.shape == (shape[0], shape[1] // k, *shape[2:])


# ----------------------------------------------------------------------------- kinks and ties
# Central differences see the mean of the one-sided slopes at a kink, so these are worked
# by hand: the convention of backends/spec.py ("Kinks and ties"), torch's where it is shared.


def test_relu_gradient_at_zero_is_zero():
    x, dout = np.array([-1.0, 0.0, -0.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0])
    dx, _ = layers.relu_backward(dout, layers.relu_forward(x)[1])
    np.testing.assert_array_equal(dx, [0, 0, 0, 4])


@pytest.mark.parametrize("slope", [0.1, 0.3, 1.0, 3.0])
def test_leaky_relu_gradient_at_zero_is_the_slope(slope):
    x = np.array([-2.0, 0.0, -0.0, 2.0])
    out, cache = layers.leaky_relu_forward(x, slope)
    np.testing.assert_array_equal(out, np.maximum(slope * x, x))
    below, above = (slope, 1.0) if slope <= 1 else (1.0, slope)  # the slopes of max(slope x, x)
    dx, _ = layers.leaky_relu_backward(np.ones(4), cache)
    np.testing.assert_array_equal(dx, [below, slope, slope, above])


def test_maxout_splits_a_tie_evenly():
    # groups of k = 3 along the channels: (1, 1, 0) ties twice, (0, 0, 0) three times
    x = np.array([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 2.0, 2.0]])  # (N, C*k) = (1, 9)
    out, cache = layers.maxout_forward(x, 3)
    np.testing.assert_array_equal(out, [[1.0, 0.0, 2.0]])
    dx, _ = layers.maxout_backward(np.array([[6.0, 6.0, 6.0]]), cache)
    np.testing.assert_array_equal(dx, [[3, 3, 0, 2, 2, 2, 0, 3, 3]])


def tie_input(*shape, seed=1):
    """Random, with exact ties: the first half of axis 2 zero, as a zero-padded region."""
    x = rand(*shape, seed=seed)
    x[:, :, :shape[2] // 2] = 0.0
    return x


@with_torch
@pytest.mark.parametrize("slope", [0.1, 0.01, 1.0])
def test_leaky_relu_at_zero_matches_torch(slope):
    check_op(lambda x: layers.leaky_relu_forward(x, slope), layers.leaky_relu_backward,
             [tie_input(3, 4, 6)], lambda t: F.leaky_relu(t, slope), "torch")


@with_torch
def test_relu_at_zero_matches_torch():
    check_op(layers.relu_forward, layers.relu_backward, [tie_input(3, 4, 6)], F.relu, "torch")


@with_torch
@pytest.mark.parametrize("k", [2, 3])
def test_maxout_ties_match_torch_amax(k):
    def reference(t):
        return t.reshape(t.shape[0], -1, k, *t.shape[2:]).amax(dim=2)

    check_op(lambda x: layers.maxout_forward(x, k), layers.maxout_backward, [tie_input(2, 6, 4, 3)],
             reference, "torch")


# ----------------------------------------------------------------------------- regularisers


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5])
def test_dropout(p, ref):
    x = rand(4, 3, 5)
    mask = (np.random.default_rng(7).random(x.shape) >= p).astype(np.float32)
    out = check_op(lambda x: layers.dropout_forward(x, mask, p), layers.dropout_backward, [x],
                   lambda t: t * torch.tensor(mask, dtype=t.dtype) / (1 - p), ref)
    np.testing.assert_allclose(out[mask == 0], 0)
    np.testing.assert_allclose(out[mask == 1], x[mask == 1] / (1 - p))


@with_torch
def test_dropout_matches_torch_scaling():
    """torch's own dropout zeroes units and scales the rest by 1 / (1 - p): same convention."""
    p, xt = 0.3, torch.rand(64, 32, dtype=torch.float64) + 0.5  # no zeros of its own
    ref = F.dropout(xt, p, training=True).numpy()
    mask = (ref != 0).astype(np.float32)
    np.testing.assert_allclose(layers.dropout_forward(xt.numpy(), mask, p)[0], ref, rtol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5), (4, 3, 4, 5), (2, 3, 3, 4, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm(shape, train, ref):
    c = shape[1]
    x = rand(*shape) * 2 + 1
    gamma, beta = 1 + 0.1 * rand(c, seed=2), 0.1 * rand(c, seed=3)
    mean, var = 0.1 * rand(c, seed=4), 1 + np.abs(rand(c, seed=5))
    running = {}  # torch updates its running statistics in place

    def forward(x, g, b):
        return layers.batchnorm_forward(x, g, b, mean, var, train=train, eps=1e-5, momentum=0.1)

    def torch_bn(x, g, b):
        running.update(mean=torch.tensor(mean), var=torch.tensor(var))
        return F.batch_norm(x, running["mean"], running["var"], g, b, training=train,
                            momentum=0.1, eps=1e-5)

    check_op(forward, layers.batchnorm_backward, [x, gamma, beta], torch_bn, ref)
    _, cache = forward(x, gamma, beta)
    if not train:
        assert "running" not in cache
        return
    new_mean, new_var = cache["running"]
    if ref == "torch":  # momentum, unbiased variance: torch's convention
        np.testing.assert_allclose(new_mean, running["mean"].numpy(), rtol=1e-12)
        np.testing.assert_allclose(new_var, running["var"].numpy(), rtol=1e-12)
    m = x.size // c
    axes = tuple(i for i in range(x.ndim) if i != 1)
    np.testing.assert_allclose(new_mean, 0.9 * mean + 0.1 * x.mean(axis=axes))
    np.testing.assert_allclose(new_var, 0.9 * var + 0.1 * x.var(axis=axes) * m / (m - 1))


# ----------------------------------------------------------------------------- losses


def check_loss(name, out, y, ref):
    """The loss and its gradient against torch's `F.<name>[_loss]` or central differences."""
    forward, backward = layers.LOSSES[name]
    loss, cache = forward(out, y)
    dout = backward(cache)
    if ref == "torch":
        t = torch.tensor(out, requires_grad=True)
        torch_fn = getattr(F, name if name == "cross_entropy" else f"{name}_loss")
        expected = torch_fn(t, torch.tensor(y))
        expected.backward()
        np.testing.assert_allclose(loss, expected.item(), atol=ATOL_T, rtol=RTOL_T)
        np.testing.assert_allclose(dout, t.grad.numpy(), atol=ATOL_T, rtol=RTOL_T)
        return
    num = numeric_grad(lambda: forward(out, y)[0], out)
    assert rel_err(dout, num) < RTOL_FD


@pytest.mark.parametrize("name", ["mse", "l1"])
@pytest.mark.parametrize("shape", [(6, 1), (3, 2, 4, 4)])
def test_regression_loss(name, shape, ref):
    check_loss(name, rand(*shape), rand(*shape, seed=9), ref)


def test_l1_gradient_at_an_exact_hit_is_zero():
    """sign(0) = 0, torch's l1_loss subgradient; an exact hit is common on zero regions."""
    out, y = np.array([[1.0, 0.0, -2.0, 0.5]]), np.array([[0.0, 0.0, 0.0, 0.5]])
    loss, cache = layers.l1_forward(out, y)
    assert loss == pytest.approx(3.0 / 4)
    np.testing.assert_array_equal(layers.l1_backward(cache), [[0.25, 0, -0.25, 0]])


def test_cross_entropy(ref):
    logits, labels = rand(7, 5) * 3, np.random.default_rng(3).integers(0, 5, 7)
    logits[0] += 1000  # a large logit must not overflow
    check_loss("cross_entropy", logits, labels, ref)


# ----------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_keep_dtype(dtype):
    """float32 in, float32 out, forward and backward, for every op; and float32 is close."""
    x = rand(4, 6, 5, 5).astype(dtype)
    c = np.ones(6, dtype)
    cases = [
        (layers.linear_forward, (x.reshape(4, -1), rand(3, 150).astype(dtype), c[:3])),
        (layers.conv_forward, (x, rand(2, 6, 3, 3).astype(dtype), c[:2], 2, 1, 1)),
        (layers.conv_transpose_forward, (x, rand(6, 2, 3, 3).astype(dtype), c[:2], 2, 1, 1)),
        (layers.pool_forward, (x, "max", 2)), (layers.pool_forward, (x, "avg", 3, 2, 1)),
        (lambda *a: layers.batchnorm_forward(*a, train=True), (x, c, c, c, c)),
        (layers.dropout_forward, (x, np.ones(x.shape, np.float32), 0.5)),
        (layers.flatten_forward, (x,)), (layers.leaky_relu_forward, (x,)),
        *[(f, (x,)) for f, _ in layers.ACTIVATIONS.values()],
    ]
    backwards = {layers.linear_forward: layers.linear_backward,
                 layers.conv_forward: layers.conv_backward,
                 layers.conv_transpose_forward: layers.conv_transpose_backward,
                 layers.pool_forward: layers.pool_backward,
                 layers.dropout_forward: layers.dropout_backward,
                 layers.flatten_forward: layers.flatten_backward,
                 **{f: b for f, b in layers.ACTIVATIONS.values()}}
    for forward, args in cases:
        out, cache = forward(*args)
        assert out.dtype == dtype, forward
        backward = backwards.get(forward, layers.batchnorm_backward)
        dx, grads = backward(np.ones_like(out), cache)
        assert dx.dtype == dtype and all(g.dtype == dtype for g in grads if g is not None)
        if dtype == np.float32:  # the same op in float64 agrees to float32 precision
            out64 = forward(*(a.astype(np.float64) if isinstance(a, np.ndarray) else a
                              for a in args))[0]
            np.testing.assert_allclose(out, out64, rtol=1e-4, atol=1e-4)
    for name, (forward, backward) in layers.LOSSES.items():
        y = np.zeros(4, np.int64) if name == "cross_entropy" else np.zeros((4, 3), np.float32)
        loss, cache = forward(rand(4, 3).astype(dtype), y)
        assert loss.dtype == dtype and backward(cache).dtype == dtype, name
