"""The NumPy backend as a whole: optimizer rules, every architecture, whole-model gradients.

The optimizer rules are backends/optim.py's, applied through the trainer; each is checked
against three steps worked out by hand from the formula in SPEC 4.3.
"""

import math
import subprocess
import sys

import numpy as np
import pytest

import backends.numpy as B
from backends import spec as S
from backends.archs import ARCHS, build_model
from backends.base import DeviceUnavailable
from backends.init import init_params
from backends.numpy.layers import conv_forward
from backends.optim import OptimizerSpec
from backends.spec import dropout_masks

GRADS = [0.5, -1.0, 2.0]  # g at steps 1, 2, 3; the parameter starts at 1.0
EPS = 1e-8  # the canonical default, outside the square root


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: OpenBLAS threads only cost, and stall badly on a loaded 2-core box."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def scalar_model():
    """One weight, y = w x: the optimizer sees the parameter as a 1x1 matrix."""
    body = S.Sequential(name="net", layers=(S.Linear(name="fc", in_features=1, out_features=1,
                                                     bias=False),))
    return S.ModelSpec(arch="scalar", input_shape=(1,), body=body, loss="mse")


def _adam_steps():
    b1, b2, lr = 0.9, 0.999, 0.1
    m1, v1 = 0.1 * 0.5, 0.001 * 0.25  # m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2
    p1 = 1.0 - lr * (m1 / (1 - b1)) / (math.sqrt(v1 / (1 - b2)) + EPS)  # = 1 - 0.1 * 1
    m2, v2 = 0.9 * m1 + 0.1 * -1.0, 0.999 * v1 + 0.001 * 1.0
    p2 = p1 - lr * (m2 / (1 - b1**2)) / (math.sqrt(v2 / (1 - b2**2)) + EPS)
    m3, v3 = 0.9 * m2 + 0.1 * 2.0, 0.999 * v2 + 0.001 * 4.0
    p3 = p2 - lr * (m3 / (1 - b1**3)) / (math.sqrt(v3 / (1 - b2**3)) + EPS)
    return [p1, p2, p3]


# parameter after steps 1, 2, 3, from p0 = 1.0 and GRADS, by the formulas of SPEC 4.3
HAND = {
    # p -= lr g
    "sgd": ({"lr": 0.1}, [0.95, 1.05, 0.85]),
    "gd": ({"lr": 0.1}, [0.95, 1.05, 0.85]),
    # v = mu v + g; p -= lr v:  v = 0.5, -0.55, 1.505
    "momentum": ({"lr": 0.1, "momentum": 0.9}, [0.95, 1.005, 0.8545]),
    # nesterov: p -= lr (g + mu v):  steps 0.95, -1.495, 3.3545
    "nesterov": ({"lr": 0.1, "momentum": 0.9, "nesterov": True}, [0.905, 1.0545, 0.71905]),
    # G += g^2 (0.25, 1.25, 5.25); p -= lr g / (sqrt(G) + eps)
    "adagrad": ({"lr": 0.1}, [1 - 0.05 / (0.5 + EPS),
                              1 - 0.05 / (0.5 + EPS) + 0.1 / (math.sqrt(1.25) + EPS),
                              1 - 0.05 / (0.5 + EPS) + 0.1 / (math.sqrt(1.25) + EPS)
                              - 0.2 / (math.sqrt(5.25) + EPS)]),
    # E = 0.9 E + 0.1 g^2 (0.025, 0.1225, 0.51025); p -= lr g / (sqrt(E) + eps)
    "rmsprop": ({"lr": 0.01}, [1 - 0.005 / (math.sqrt(0.025) + EPS),
                               1 - 0.005 / (math.sqrt(0.025) + EPS) + 0.01 / (0.35 + EPS),
                               1 - 0.005 / (math.sqrt(0.025) + EPS) + 0.01 / (0.35 + EPS)
                               - 0.02 / (math.sqrt(0.51025) + EPS)]),
    "adam": ({"lr": 0.1}, _adam_steps()),
    # g <- g + wd p: g' = 1.0, -0.55, 2.4775; then p -= lr g'
    "sgd_weight_decay": ({"lr": 0.1, "weight_decay": 0.5}, [0.9, 0.955, 0.70725]),
}


@pytest.mark.parametrize("case", list(HAND))
def test_optimizer_three_steps_by_hand(case):
    kwargs, expected = HAND[case]
    name = case.split("_")[0] if case != "nesterov" else "momentum"
    spec = scalar_model()
    trainer = B.build(spec, {"fc.weight": np.ones((1, 1))}, {}, OptimizerSpec(name=name, **kwargs),
                      dtype="float64")
    for t, (g, p) in enumerate(zip(GRADS, expected), start=1):
        trainer.apply_gradients({"fc.weight": np.array([[g]])})
        np.testing.assert_allclose(trainer.params()["fc.weight"], [[p]], rtol=1e-12, atol=0)
        assert trainer.opt_state()["step"] == t


def test_adam_first_step_is_lr_sized():
    """Bias correction: Adam's first step is lr * sign(g), whatever the gradient's size."""
    assert _adam_steps()[0] == pytest.approx(0.9, abs=1e-8)


def test_opt_state_round_trips():
    spec = scalar_model()
    opt = OptimizerSpec(name="adam", lr=0.1)
    a = B.build(spec, {"fc.weight": np.ones((1, 1))}, {}, opt, dtype="float64")
    a.apply_gradients({"fc.weight": np.array([[0.5]])})
    b = B.build(spec, a.params(), {}, opt, dtype="float64", opt_state=a.opt_state())
    for trainer in (a, b):
        trainer.apply_gradients({"fc.weight": np.array([[-1.0]])})
    np.testing.assert_array_equal(a.params()["fc.weight"], b.params()["fc.weight"])
    with pytest.raises(ValueError, match="slots"):
        B.build(spec, a.params(), {}, OptimizerSpec(name="sgd", lr=0.1), opt_state=a.opt_state())


# ----------------------------------------------------------------------------- archs

CLASSIFY = [(1, 8, 8), (1, 40), (1, 8, 8, 8)]  # digits, mnist1d, a small 3D grid
CASES = ([("mlp", (3,), 1, "mse", {}), ("mlp", (1, 8, 8), 10, "cross_entropy", {}),
          ("mlp", (1, 40), 10, "cross_entropy", {})]
         + [(a, s, 10, "cross_entropy", {"width": 4} if a != "lenet" else {})
            for a in ("lenet", "vgg", "resnet", "inception") for s in CLASSIFY]
         + [(a, s, 1, "l1", {"width": 4}) for a in ("unet", "encdec")
            for s in [(2, 8, 8), (2, 8, 8, 8)]])
# loss after at most 200 Adam steps on one batch, as a fraction of the first: classifiers
# and the MLP regressor memorise 8 samples; the dense L1 nets fit random voxels more slowly
FRACTION = {"cross_entropy": 0.1, "mse": 0.1, "l1": 0.5}


def test_cases_cover_every_arch():
    assert {c[0] for c in CASES} == set(ARCHS)


def _batch(spec, n, n_out, rng):
    x = rng.standard_normal((n, *spec.input_shape)).astype(np.float32)
    if spec.loss == "cross_entropy":
        return x, rng.integers(0, n_out, n)
    return x, rng.standard_normal((n, *spec.output_shape)).astype(np.float32)


@pytest.mark.parametrize("arch, shape, n_out, loss, knobs", CASES,
                         ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}" for c in CASES])
def test_arch_builds_runs_and_overfits(arch, shape, n_out, loss, knobs):
    rng = np.random.default_rng(0)
    spec = build_model(arch, shape, n_out, loss, **knobs)
    params, buffers = init_params(spec, "he", rng)
    trainer = B.build(spec, params, buffers, OptimizerSpec(name="adam", lr=1e-2))
    n = 8 if len(shape) < 4 else 4
    x, y = _batch(spec, n, n_out, rng)
    out = trainer.forward(x)
    assert out.shape == (n, *spec.output_shape) and out.dtype == np.float32
    _, grads = trainer.loss_and_grads(x, y)
    assert list(grads) == list(params)
    assert all(g.shape == params[k].shape and np.isfinite(g).all() for k, g in grads.items())
    first, target = trainer.train_step(x, y), FRACTION[loss]
    for _ in range(200):
        last = trainer.train_step(x, y)
        if last < target * first:
            break
    assert last < target * first, f"{first:.3f} -> {last:.3f} in 200 steps"


# ----------------------------------------------------------------------------- whole model


def _conv(name, cin, cout, k=3):
    return S.Conv(name=name, ndim=2, in_channels=cin, out_channels=cout, kernel=k,
                  padding=k // 2)


def tiny_model():
    """(2, 4, 4) -> 3 classes through conv, BN, a residual Parallel, a UNet-like concat
    Parallel with a transposed conv, maxout, max pool, flatten, dropout and linear."""
    body = S.Sequential(name="body", layers=(_conv("conv", 4, 4),
                                             S.BatchNorm(name="bn", num_features=4, ndim=2)))
    res = S.Parallel(name="res", merge="add", branches=(body, S.Sequential(name="shortcut")))
    inner = S.Sequential(name="inner", layers=(
        S.Pool(name="down", ndim=2, mode="avg", kernel=2),
        S.ConvTranspose(name="up", ndim=2, in_channels=4, out_channels=2, kernel=2, stride=2)))
    skip = S.Parallel(name="skip", merge="concat",
                      branches=(S.Sequential(name="identity"), inner))
    layers = (_conv("stem", 2, 4), S.BatchNorm(name="stem_bn", num_features=4, ndim=2),
              S.Activation(name="act", fn="tanh"), res, skip,  # (6, 4, 4)
              S.Activation(name="maxout", fn="maxout", k=2),  # (3, 4, 4)
              S.Pool(name="pool", ndim=2, mode="max", kernel=2),  # (3, 2, 2)
              S.Flatten(name="flatten"), S.Dropout(name="drop", p=0.25),
              S.Linear(name="head", in_features=12, out_features=3))
    return S.ModelSpec(arch="tiny", input_shape=(2, 4, 4), loss="cross_entropy",
                       body=S.Sequential(name="tiny", layers=layers))


def test_whole_model_gradients_by_central_differences():
    spec = tiny_model()
    rng = np.random.default_rng(0)
    params, buffers = init_params(spec, "xavier", rng, dtype=np.float64)
    x, y = rng.standard_normal((5, 2, 4, 4)), rng.integers(0, 3, 5)
    masks = dropout_masks(spec, 5, rng)
    opt = OptimizerSpec(name="sgd", lr=0.1)

    def loss_at(p):
        return B.build(spec, p, buffers, opt, dtype="float64").loss_and_grads(x, y, masks)[0]

    _, grads = B.build(spec, params, buffers, opt, dtype="float64").loss_and_grads(x, y, masks)
    h = 1e-6
    for k, p in params.items():
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            plus, minus = dict(params), dict(params)
            plus[k], minus[k] = p.copy(), p.copy()
            plus[k][idx] += h
            minus[k][idx] -= h
            num[idx] = (loss_at(plus) - loss_at(minus)) / (2 * h)
        # relative, with a floor: a conv bias before BatchNorm has a gradient of exactly 0
        err = np.linalg.norm(grads[k] - num)
        scale = np.linalg.norm(grads[k]) + np.linalg.norm(num)
        assert err < 1e-6 * scale + 1e-8, f"{k}: error {err:.2e}, scale {scale:.2e}"


def test_forward_is_pure_and_loss_and_grads_updates_running_stats():
    spec = tiny_model()
    rng = np.random.default_rng(1)
    params, buffers = init_params(spec, "he", rng)
    trainer = B.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1))
    x, y = rng.standard_normal((6, 2, 4, 4)), rng.integers(0, 3, 6)
    masks = dropout_masks(spec, 6, rng)
    a = trainer.forward(x, train=True, masks=masks)
    b = trainer.forward(x, train=True, masks=masks)
    np.testing.assert_array_equal(a, b)
    for k, v in trainer.buffers().items():
        np.testing.assert_array_equal(v, buffers[k])
    for k, v in trainer.params().items():
        np.testing.assert_array_equal(v, params[k])
    trainer.loss_and_grads(x, y, masks)  # running = 0.9 * 0 + 0.1 * the batch mean
    stem = conv_forward(x.astype(np.float32), params["stem.weight"], params["stem.bias"], 1, 1)
    mean = stem[0].mean(axis=(0, 2, 3))
    np.testing.assert_allclose(trainer.buffers()["stem_bn.running_mean"], 0.1 * mean, rtol=1e-5,
                               atol=1e-7)
    returned = trainer.params()
    returned["head.weight"][:] = 0  # copies: the trainer's own state is untouched
    assert np.abs(trainer.params()["head.weight"]).sum() > 0


def test_batchnorm_eval_uses_running_stats():
    body = S.Sequential(name="net", layers=(S.BatchNorm(name="bn", num_features=3),))
    spec = S.ModelSpec(arch="bn", input_shape=(3,), body=body, loss="mse")
    params = {"bn.weight": np.array([1.0, 2.0, 0.5]), "bn.bias": np.array([0.0, 1.0, -1.0])}
    buffers = {"bn.running_mean": np.array([1.0, -1.0, 0.0]),
               "bn.running_var": np.array([4.0, 1.0, 0.25])}
    trainer = B.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1), dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 3))
    expected = ((x - buffers["bn.running_mean"]) / np.sqrt(buffers["bn.running_var"] + 1e-5)
                * params["bn.weight"] + params["bn.bias"])
    np.testing.assert_allclose(trainer.forward(x), expected, rtol=1e-12)
    np.testing.assert_allclose(trainer.evaluate(x, expected)[1], expected, rtol=1e-12)
    train_out = trainer.forward(x, train=True)  # batch statistics: zero mean per feature
    np.testing.assert_allclose(train_out.mean(0), params["bn.bias"], atol=1e-12)


def test_dropout_masks_canonical_and_native():
    spec = build_model("mlp", (1, 40), 10, "cross_entropy", dropout=0.5)
    params, buffers = init_params(spec, "he", np.random.default_rng(0))
    opt = OptimizerSpec(name="sgd", lr=0.1)
    x, y = np.ones((4, 1, 40), np.float32), np.zeros(4, np.int64)
    canonical = B.build(spec, params, buffers, opt)
    with pytest.raises(ValueError, match="layer1.drop"):
        canonical.loss_and_grads(x, y)
    with pytest.raises(ValueError, match="layer2.drop"):
        canonical.forward(x, train=True, masks={"layer1.drop": np.ones((4, 64), np.float32)})
    np.testing.assert_array_equal(canonical.forward(x), canonical.evaluate(x, y)[1])  # eval
    masks = dropout_masks(spec, 4, np.random.default_rng(3))
    native = [B.build(spec, params, buffers, opt, rng="native", seed=5) for _ in range(2)]
    a, b = (t.forward(x, train=True) for t in native)
    np.testing.assert_array_equal(a, b)  # the same seed draws the same masks
    np.testing.assert_array_equal(native[0].forward(x, train=True, masks=masks),
                                  canonical.forward(x, train=True, masks=masks))


def test_build_contract():
    spec = scalar_model()
    params = {"fc.weight": np.ones((1, 1), np.float32)}
    opt = OptimizerSpec(name="sgd", lr=0.1)
    assert B.NAME == "numpy" and B.devices() == ["cpu"]
    assert B.CAPABILITIES.float64 and not B.CAPABILITIES.gpu
    trainer = B.build(spec, params, {}, opt, device="auto", compile=True)
    assert (trainer.backend, trainer.device, trainer.dtype) == ("numpy", "cpu", "float32")
    assert trainer.device_name.startswith("cpu")
    assert trainer.params()["fc.weight"].dtype == np.float32
    with pytest.raises(DeviceUnavailable):
        B.build(spec, params, {}, opt, device="gpu")
    with pytest.raises(ValueError, match="missing"):
        B.build(spec, {}, {}, opt)
    with pytest.raises(ValueError, match="input shape"):
        trainer.forward(np.ones((2, 3)))


def test_import_pulls_in_no_framework():
    code = ("import sys, backends, backends.numpy, backends.archs; "
            "assert 'torch' not in sys.modules and 'jax' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
