"""The JAX backend against trusted references: torch.nn.functional and autograd in float64
for every layer and loss, backends.optim.update for every optimizer, and the Trainer protocol.

Layer checks follow micrograd's test_engine.py and tinygrad's helper_test_op: the same
expression in torch float64, forward and gradient, with explicit atol/rtol.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402

import backends.jax as jb  # noqa: E402
from backends import optim as canon  # noqa: E402
from backends.archs import ARCHS, build_model  # noqa: E402
from backends.base import DeviceUnavailable, cpu_name  # noqa: E402
from backends.init import init_params  # noqa: E402
from backends.jax import nn  # noqa: E402
from backends.jax import optim as jopt  # noqa: E402
from backends.optim import OptimizerSpec  # noqa: E402
from backends.spec import (  # noqa: E402
    Activation,
    BatchNorm,
    Conv,
    ConvTranspose,
    Dropout,
    Flatten,
    Linear,
    ModelSpec,
    Parallel,
    Pool,
    Sequential,
    dropout_masks,
)

TOL = dict(rtol=1e-10, atol=1e-10)  # float64 forward and gradient against torch
GPU = "gpu" in jb.devices()


def _torch():
    return pytest.importorskip("torch")


def _rand(rng, *shape):
    return rng.standard_normal(shape)  # float64


def one_layer(layer, input_shape, loss="mse") -> ModelSpec:
    """A model of one leaf named "l": its params are "l.weight", "l.bias", ..."""
    return ModelSpec(arch="one", input_shape=tuple(input_shape),
                     body=Sequential(name="net", layers=(layer,)), loss=loss)


def check_against_torch(layer, params, x, torch_fn, *, train=False, buffers=None, masks=None,
                        grad=True, tol=TOL):
    """Forward of `layer` through nn.apply, and its VJP w.r.t. x and params, against torch.

    torch_fn(x, params) -> out, on float64 torch tensors that require grad.
    """
    torch = _torch()
    spec = one_layer(layer, x.shape[1:])
    buffers = buffers or {}

    def f(x, params):
        return nn.apply(spec, params, buffers, x, train, masks)[0]

    jparams = {k: jnp.asarray(v) for k, v in params.items()}
    out, vjp = jax.vjp(f, jnp.asarray(x), jparams)
    tx = torch.tensor(x, requires_grad=True)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    tout = torch_fn(tx, tparams)
    assert out.dtype == jnp.float64 and out.shape == tuple(tout.shape)
    np.testing.assert_allclose(np.asarray(out), tout.detach().numpy(), **tol)
    if not grad:
        return
    ct = np.random.default_rng(99).standard_normal(out.shape)
    dx, dparams = vjp(jnp.asarray(ct))
    tout.backward(torch.tensor(ct))
    np.testing.assert_allclose(np.asarray(dx), tx.grad.numpy(), **tol)
    for k in params:
        np.testing.assert_allclose(np.asarray(dparams[k]), tparams[k].grad.numpy(), **tol)


# ----------------------------------------------------------------------------- layers


def _with_wb(fn, x, p, **kw):
    """torch fn(x, weight, bias, **kw) on the params of the leaf "l"."""
    return fn(x, p["l.weight"], p.get("l.bias"), **kw)

SPATIAL = {1: (9,), 2: (7, 8), 3: (5, 6, 5)}
# XLA compiles every case (~0.6 s each on 2 cores), so the grids cover each knob and the pairs
# that interact rather than the full product.
CONV_CASES = [(1, 0, 1), (2, 1, 1), (1, 1, 2), (2, 0, 2), (2, 1, 2)]  # (stride, pad, dil)
CONVT_CASES = [(1, 0, 0, 1), (2, 0, 0, 1), (2, 1, 1, 1), (1, 1, 1, 2), (2, 1, 1, 2),
               (2, 0, 1, 2)]  # (stride, pad, output_padding, dil); op < max(stride, dil)
POOL_CASES = [(2, None, 1), (3, 1, 1), (3, 2, 0)]  # (kernel, stride, pad)
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 3, 2)}  # unequal axes catch an axis mix-up


def test_linear_and_flatten():
    F = _torch().nn.functional
    rng = np.random.default_rng(0)
    params = {"l.weight": _rand(rng, 5, 4), "l.bias": _rand(rng, 5)}
    check_against_torch(Linear(name="l", in_features=4, out_features=5), params,
                        _rand(rng, 3, 4), partial(_with_wb, F.linear))
    check_against_torch(Flatten(name="l"), {}, _rand(rng, 2, 3, 4, 5),
                        lambda x, p: x.reshape(2, -1))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_grid(nd):
    F = _torch().nn.functional
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    rng = np.random.default_rng(nd)
    x = _rand(rng, 2, 2, *SPATIAL[nd])
    for stride, padding, dilation in CONV_CASES:
        layer = Conv(name="l", ndim=nd, in_channels=2, out_channels=3, kernel=KERNEL[nd],
                     stride=stride, padding=padding, dilation=dilation)
        params = {"l.weight": _rand(rng, 3, 2, *KERNEL[nd]), "l.bias": _rand(rng, 3)}
        check_against_torch(layer, params, x, partial(
            _with_wb, conv, stride=stride, padding=padding, dilation=dilation))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_transpose_grid(nd):
    F = _torch().nn.functional
    convt = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    rng = np.random.default_rng(10 + nd)
    x = _rand(rng, 2, 2, *(d - 2 for d in SPATIAL[nd]))
    for stride, padding, output_padding, dilation in CONVT_CASES:
        layer = ConvTranspose(name="l", ndim=nd, in_channels=2, out_channels=3,
                              kernel=KERNEL[nd], stride=stride, padding=padding,
                              output_padding=output_padding, dilation=dilation)
        params = {"l.weight": _rand(rng, 2, 3, *KERNEL[nd]), "l.bias": _rand(rng, 3)}
        check_against_torch(layer, params, x, partial(
            _with_wb, convt, stride=stride, padding=padding, output_padding=output_padding,
            dilation=dilation))


def test_conv_transpose_padding_beyond_kernel_crops():
    """padding > dil (k - 1) makes the low-side pad negative: conv_general_dilated crops."""
    F = _torch().nn.functional
    rng = np.random.default_rng(5)
    layer = ConvTranspose(name="l", ndim=2, in_channels=2, out_channels=2, kernel=1, stride=2,
                          padding=1, bias=False)
    params = {"l.weight": _rand(rng, 2, 2, 1, 1)}
    check_against_torch(layer, params, _rand(rng, 1, 2, 5, 4),
                        partial(_with_wb, F.conv_transpose2d, stride=2, padding=1))


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_grid(nd, mode):
    F = _torch().nn.functional
    fn = getattr(F, f"{mode}_pool{nd}d")
    rng = np.random.default_rng(20 + nd)
    x = _rand(rng, 2, 2, *SPATIAL[nd])
    for kernel, stride, padding in POOL_CASES:
        layer = Pool(name="l", ndim=nd, mode=mode, kernel=kernel, stride=stride,
                     padding=padding)
        check_against_torch(layer, {}, x, partial(
            lambda x, p, **kw: fn(x, **kw), kernel_size=kernel, stride=stride or kernel,
            padding=padding))


def test_max_pool_ties_send_the_gradient_to_the_first_max():
    """After a ReLU, windows of equal zeros are common: the gradient goes to the first maximum
    in row-major order, as torch's max_pool does (XLA's select_and_scatter with >=)."""
    F = _torch().nn.functional
    x = np.array([[[[1, 1, 0, 2], [1, 1, 2, 2], [3, 0, 0, 0], [0, 3, 0, 0]]]], np.float64)
    for kernel, stride, padding in [(2, None, 0), (3, 1, 1)]:
        layer = Pool(name="l", ndim=2, mode="max", kernel=kernel, stride=stride,
                     padding=padding)
        check_against_torch(layer, {}, x, partial(
            lambda x, p, **kw: F.max_pool2d(x, **kw), kernel_size=kernel,
            stride=stride or kernel, padding=padding))


@pytest.mark.parametrize("nd", [0, 1, 2, 3])
def test_batchnorm_train_eval_and_running_update(nd):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(30 + nd)
    x = _rand(rng, 4, 3, *SPATIAL.get(nd, ())) * 2 + 1
    layer = BatchNorm(name="l", num_features=3, ndim=nd, momentum=0.3, eps=1e-3)
    params = {"l.weight": _rand(rng, 3), "l.bias": _rand(rng, 3)}
    buffers = {"l.running_mean": _rand(rng, 3), "l.running_var": rng.random(3) + 0.5}
    for train in (True, False):
        rm, rv = (torch.tensor(buffers[k]) for k in ("l.running_mean", "l.running_var"))

        def ref(x, p, rm=rm, rv=rv, train=train):  # updates rm, rv in place when training
            return F.batch_norm(x, rm, rv, p["l.weight"], p["l.bias"], training=train,
                                momentum=0.3, eps=1e-3)

        check_against_torch(layer, params, x, ref, train=train, grad=train,
                            buffers={k: jnp.asarray(v) for k, v in buffers.items()})
        _, new = nn.apply(one_layer(layer, x.shape[1:]), params, buffers, jnp.asarray(x), train)
        np.testing.assert_allclose(np.asarray(new["l.running_mean"]), rm.numpy(), **TOL)
        np.testing.assert_allclose(np.asarray(new["l.running_var"]), rv.numpy(), **TOL)
        if not train:  # evaluation leaves them alone
            np.testing.assert_array_equal(np.asarray(new["l.running_var"]),
                                          buffers["l.running_var"])


@pytest.mark.parametrize("fn", ["sigmoid", "tanh", "relu", "leaky_relu", "maxout"])
def test_activations(fn):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(40)
    x = _rand(rng, 3, 6, 5)
    ref = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu,
           "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
           # channel c * 3 + j -> group c: reshape (N, 6, L) -> (N, 2, 3, L), max over j
           "maxout": lambda x: x.reshape(3, 2, 3, 5).amax(dim=2)}[fn]
    layer = Activation(name="l", fn=fn, slope=0.2, k=3)
    check_against_torch(layer, {}, x, lambda x, p: ref(x))
    if fn == "leaky_relu":  # max(slope x, x) also for a slope above 1
        steep = Activation(name="l", fn=fn, slope=3.0)
        check_against_torch(steep, {}, x, lambda x, p: torch.maximum(3.0 * x, x))


def test_dropout_uses_the_given_mask():
    rng = np.random.default_rng(50)
    x = _rand(rng, 4, 6)
    spec = one_layer(Dropout(name="d", p=0.25), (6,))
    mask = dropout_masks(spec, 4, np.random.default_rng(1))["d"]
    out, _ = nn.apply(spec, {}, {}, jnp.asarray(x), True, {"d": jnp.asarray(mask)})
    np.testing.assert_allclose(np.asarray(out), x * mask / 0.75, **TOL)
    out, _ = nn.apply(spec, {}, {}, jnp.asarray(x), False)  # off in evaluation
    np.testing.assert_array_equal(np.asarray(out), x)
    with pytest.raises(ValueError, match="'d'"):
        nn.apply(spec, {}, {}, jnp.asarray(x), True, {})


def test_parallel_add_concat_and_identity_branch():
    rng = np.random.default_rng(60)
    x = _rand(rng, 2, 3)
    lin = Linear(name="fc", in_features=3, out_features=3, bias=False)
    w = _rand(rng, 3, 3)
    for merge, expect in (("add", x @ w.T + x), ("concat", np.concatenate([x @ w.T, x], 1))):
        body = Sequential(name="net", layers=(Parallel(name="res", merge=merge, branches=(
            Sequential(name="body", layers=(lin,)), Sequential(name="short"))),))
        spec = ModelSpec(arch="t", input_shape=(3,), body=body, loss="mse")
        out, _ = nn.apply(spec, {"res.body.fc.weight": jnp.asarray(w)}, {}, jnp.asarray(x),
                          False)
        np.testing.assert_allclose(np.asarray(out), expect, **TOL)


@pytest.mark.parametrize("name", ["mse", "cross_entropy", "l1"])
def test_losses(name):
    torch = _torch()
    F = torch.nn.functional
    rng = np.random.default_rng(70)
    out = _rand(rng, 5, 4)
    y = rng.integers(0, 4, 5) if name == "cross_entropy" else _rand(rng, 5, 4)
    ref = {"mse": F.mse_loss, "cross_entropy": F.cross_entropy, "l1": F.l1_loss}[name]
    value, grad = jax.value_and_grad(nn.loss, argnums=1)(name, jnp.asarray(out), jnp.asarray(y))
    tout = torch.tensor(out, requires_grad=True)
    tval = ref(tout, torch.tensor(y))
    tval.backward()
    np.testing.assert_allclose(float(value), tval.item(), **TOL)
    np.testing.assert_allclose(np.asarray(grad), tout.grad.numpy(), **TOL)


# ----------------------------------------------------------------------------- optimizers

OPTS = [OptimizerSpec(name="gd", lr=0.1), OptimizerSpec(name="sgd", lr=0.1),
        OptimizerSpec(name="momentum", lr=0.1, momentum=0.8),
        OptimizerSpec(name="momentum", lr=0.1, momentum=0.8, nesterov=True),
        OptimizerSpec(name="adagrad", lr=0.1), OptimizerSpec(name="rmsprop", lr=0.01, rho=0.8),
        OptimizerSpec(name="adam", lr=0.01, beta1=0.8, beta2=0.9),
        OptimizerSpec(name="adam", lr=0.01, weight_decay=0.1),
        OptimizerSpec(name="momentum", lr=0.1, weight_decay=0.05)]
MLP = build_model("mlp", (3,), 2, "mse", depth=1, width=4)


def _grads(rng, params):
    return {k: rng.standard_normal(v.shape) for k, v in params.items()}


@pytest.mark.parametrize("opt", OPTS, ids=lambda o: f"{o.name}-{o.nesterov}-{o.weight_decay}")
def test_optimizer_matches_canonical_over_three_steps(opt):
    rng = np.random.default_rng(80)
    params = {k: v.astype(np.float64) for k, v in init_params(MLP, "he", rng)[0].items()}
    trainer = jb.build(MLP, params, {}, opt, dtype="float64")
    ref_p, ref_s = params, canon.init(opt, params)
    for _ in range(3):
        grads = _grads(rng, params)
        trainer.apply_gradients(grads)
        ref_p, ref_s = canon.update(opt, ref_p, grads, ref_s)
    got = trainer.opt_state()
    assert got["step"] == ref_s["step"] == 3
    assert set(got["slots"]) == set(ref_s["slots"]) == set(canon.SLOTS[opt.name])
    for k in params:
        np.testing.assert_allclose(trainer.params()[k], ref_p[k], rtol=1e-12, atol=0)
        for slot in got["slots"]:
            np.testing.assert_allclose(got["slots"][slot][k], ref_s["slots"][slot][k],
                                       rtol=1e-12, atol=0)
    # canonical state -> optax state -> one more step: still canonical
    resumed = jb.build(MLP, trainer.params(), {}, opt, dtype="float64", opt_state=got)
    grads = _grads(rng, params)
    resumed.apply_gradients(grads)
    ref_p, ref_s = canon.update(opt, ref_p, grads, ref_s)
    assert resumed.opt_state()["step"] == 4
    for k in params:
        np.testing.assert_allclose(resumed.params()[k], ref_p[k], rtol=1e-12, atol=0)


@pytest.mark.parametrize("name,library", [("adagrad", lambda: optax.adagrad(0.1)),
                                          ("rmsprop", lambda: optax.rmsprop(0.1))])
def test_library_defaults_do_not_leak(name, library):
    """optax's own adagrad (G from 0.1, eps in the root) and rmsprop (eps in the root) differ
    from the canonical rule; the backend's transform does not."""
    rng = np.random.default_rng(90)
    params = {"w": rng.standard_normal(6) * 1e-3}
    grads = {"w": rng.standard_normal(6) * 1e-3}  # small, so eps placement matters
    opt = OptimizerSpec(name=name, lr=0.1)
    expect, _ = canon.update(opt, params, grads, canon.init(opt, params))

    jp, jg = jax.tree.map(jnp.asarray, params), jax.tree.map(jnp.asarray, grads)
    tx = library()
    updates, _ = tx.update(jg, tx.init(jp), jp)
    theirs = np.asarray(optax.apply_updates(jp, updates)["w"])
    ours = np.asarray(jopt.step(opt, jp, jg, jopt.build(opt, jp))[0]["w"])
    assert not np.allclose(theirs, expect["w"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(ours, expect["w"], rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------- trainer


def _arch_case(arch):
    """A tiny spec for each arch, with BatchNorm and (where it has fc layers) dropout."""
    if arch == "mlp":
        return build_model(arch, (3,), 2, "mse", depth=1, width=4, batchnorm=True, dropout=0.5)
    if arch in ("unet", "encdec"):
        return build_model(arch, (2, 8, 8, 8), 1, "l1", depth=1, width=2, batchnorm=True)
    knobs = dict(batchnorm=True, dropout=0.5) if arch == "lenet" else dict(depth=1, width=2)
    return build_model(arch, (1, 8, 8), 3, "cross_entropy", **knobs)


def _small_net():
    """conv, BN, relu, max pool, flatten, dropout, linear: every kind of step, cheap to jit."""
    body = Sequential(name="net", layers=(
        Conv(name="conv", ndim=2, in_channels=1, out_channels=2, kernel=3, padding=1),
        BatchNorm(name="bn", num_features=2, ndim=2), Activation(name="act", fn="relu"),
        Pool(name="pool", ndim=2, mode="max", kernel=2), Flatten(name="flat"),
        Dropout(name="drop", p=0.5), Linear(name="fc", in_features=32, out_features=3)))
    return ModelSpec(arch="small", input_shape=(1, 8, 8), body=body, loss="cross_entropy")


def _batch(spec, n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *spec.input_shape)).astype(np.float32)
    if spec.loss == "cross_entropy":
        return x, rng.integers(0, spec.output_shape[0], n)
    return x, rng.standard_normal((n, *spec.output_shape)).astype(np.float32)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_builds_and_trains(arch):
    spec = _arch_case(arch)
    params, buffers = init_params(spec, "he", np.random.default_rng(0))
    trainer = jb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.01))
    exported = trainer.params()
    assert list(exported) == list(params)  # canonical order and names
    for k in params:  # canonical -> jax -> canonical is exact
        assert exported[k].dtype == np.float32
        np.testing.assert_array_equal(exported[k], params[k])
    x, y = _batch(spec)
    masks = dropout_masks(spec, len(x), np.random.default_rng(1))
    assert trainer.forward(x).shape == (2, *spec.output_shape)
    losses = [trainer.train_step(x, y, masks) for _ in range(2)]
    assert np.isfinite(losses).all() and losses[1] != losses[0]


def test_train_step_is_loss_and_grads_then_canonical_update():
    spec = _small_net()
    params, buffers = init_params(spec, "he", np.random.default_rng(1), dtype=np.float64)
    opt = OptimizerSpec(name="adam", lr=0.01)
    fused = jb.build(spec, params, buffers, opt, dtype="float64")
    split = jb.build(spec, params, buffers, opt, dtype="float64")
    x, y = _batch(spec, n=3)
    masks = dropout_masks(spec, 3, np.random.default_rng(2))
    loss = fused.train_step(x, y, masks)
    loss2, grads = split.loss_and_grads(x, y, masks)
    expect, _ = canon.update(opt, params, grads, canon.init(opt, params))
    split.apply_gradients(grads)
    assert loss == pytest.approx(loss2, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(fused.params()[k], expect[k], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(split.params()[k], expect[k], rtol=1e-12, atol=1e-14)
    for k, v in fused.buffers().items():  # the training pass moved the running statistics
        np.testing.assert_allclose(v, split.buffers()[k], rtol=1e-12)
        assert not np.array_equal(v, buffers[k])


def test_forward_is_pure_and_evaluate_uses_running_stats():
    body = Sequential(name="net", layers=(BatchNorm(name="bn", num_features=3),))
    spec = ModelSpec(arch="bn", input_shape=(3,), body=body, loss="mse")
    params = {"bn.weight": np.ones(3, np.float32), "bn.bias": np.zeros(3, np.float32)}
    buffers = {"bn.running_mean": np.array([1, 2, 3], np.float32),
               "bn.running_var": np.array([4, 5, 6], np.float32)}
    trainer = jb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1))
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    first = trainer.forward(x, train=True)
    np.testing.assert_array_equal(trainer.forward(x, train=True), first)
    for k, v in trainer.buffers().items():
        np.testing.assert_array_equal(v, buffers[k])
    batch = (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)  # training: batch statistics
    np.testing.assert_allclose(first, batch, rtol=1e-5, atol=1e-6)
    loss, out = trainer.evaluate(x, np.zeros_like(x))
    expect = (x - buffers["bn.running_mean"]) / np.sqrt(buffers["bn.running_var"] + 1e-5)
    np.testing.assert_allclose(out, expect, rtol=1e-6)
    np.testing.assert_allclose(trainer.forward(x), expect, rtol=1e-6)
    assert loss == pytest.approx(float(np.mean(expect**2)), rel=1e-5)
    trainer.loss_and_grads(x, np.zeros_like(x))  # a training pass does move them
    assert not np.array_equal(trainer.buffers()["bn.running_mean"], buffers["bn.running_mean"])


def test_dropout_masks_canonical_required_native_drawn():
    spec = _arch_case("mlp")
    params, buffers = init_params(spec, "he", np.random.default_rng(0))
    x, y = _batch(spec, n=4)
    opt = OptimizerSpec(name="sgd", lr=0.1)
    canonical = jb.build(spec, params, buffers, opt)
    with pytest.raises(ValueError, match="layer1.drop"):
        canonical.train_step(x, y)
    with pytest.raises(ValueError, match="layer1.drop"):
        canonical.forward(x, train=True)
    runs = []
    for seed in (5, 5, 6):
        native = jb.build(spec, params, buffers, opt, rng="native", seed=seed)
        runs.append([native.train_step(x, y) for _ in range(3)])
    assert runs[0] == runs[1] and runs[0] != runs[2]  # seeded, and the seed matters
    native = jb.build(spec, params, buffers, opt, rng="native")
    assert not np.array_equal(native.forward(x, train=True), native.forward(x, train=True))


def test_float32_stays_float32_under_x64():
    assert jax.config.jax_enable_x64  # the backend turned it on at import
    spec = _small_net()
    params, buffers = init_params(spec, "he", np.random.default_rng(0))
    opt = OptimizerSpec(name="adam", lr=0.01, weight_decay=0.01)
    trainer = jb.build(spec, params, buffers, opt)
    x, y = _batch(spec)
    masks = dropout_masks(spec, len(x), np.random.default_rng(1))
    trainer.train_step(x, y, masks)
    _, grads = trainer.loss_and_grads(x, y, masks)
    trainer.apply_gradients(grads)
    state = trainer.opt_state()
    arrays = [trainer.forward(x), trainer.forward(x, train=True, masks=masks),
              trainer.evaluate(x, y)[1], *grads.values(), *trainer.params().values(),
              *trainer.buffers().values(),
              *(a for slot in state["slots"].values() for a in slot.values())]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}
    assert jax.tree.leaves(trainer._opt)[0].dtype == jnp.int32  # the step counter
    for name in ("momentum", "adagrad", "rmsprop"):  # the other rules' slots, unjitted
        ospec = OptimizerSpec(name=name, lr=0.01, weight_decay=0.01)
        p32 = {k: jnp.asarray(v) for k, v in params.items()}
        leaves = jax.tree.leaves(jopt.step(ospec, p32, p32, jopt.build(ospec, p32)))
        assert {a.dtype for a in leaves} == {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}


def test_device_checks_and_names():
    assert jb.NAME == "jax" and jb.CAPABILITIES.float64 and not jb.CAPABILITIES.compile
    assert jb.device_name("cpu") == cpu_name()  # one string from every backend
    auto = jb.build(MLP, init_params(MLP, "he", np.random.default_rng(0))[0], {},
                    OptimizerSpec(name="sgd", lr=0.1), device="auto")
    assert auto.device == ("gpu" if GPU else "cpu") and auto.backend == "jax"
    if not GPU:
        with pytest.raises(DeviceUnavailable):  # before the (empty) params are looked at
            jb.build(MLP, {}, {}, OptimizerSpec(name="sgd", lr=0.1), device="gpu")
        with pytest.raises(DeviceUnavailable):
            jb.device_name("gpu")
    with pytest.raises(ValueError, match="dtype"):
        jb.build(MLP, {}, {}, OptimizerSpec(name="sgd", lr=0.1), dtype="float16")


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="no JAX GPU")
def test_gpu_matches_cpu():
    spec = _arch_case("resnet")
    params, buffers = init_params(spec, "he", np.random.default_rng(0))
    x, y = _batch(spec, n=4)
    opt = OptimizerSpec(name="adam", lr=0.01)
    cpu, gpu = (jb.build(spec, params, buffers, opt, device=d) for d in ("cpu", "gpu"))
    assert gpu.device == "gpu" and gpu.device_name != cpu.device_name
    np.testing.assert_allclose(gpu.forward(x), cpu.forward(x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.train_step(x, y), cpu.train_step(x, y), rtol=1e-4)
    for k, v in cpu.params().items():
        np.testing.assert_allclose(gpu.params()[k], v, rtol=1e-3, atol=1e-5)
