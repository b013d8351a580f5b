"""Parity: numpy, torch and jax compute the same losses, gradients, parameters, BatchNorm
statistics and optimizer state, step after step, from the same canonical state (SPEC 4.1-4.3).

Tolerances: float64 to rtol 1e-10 (the same math in a different order of summation agrees to
~1e-14 per op), float32 to rtol 1e-5. In float32 Adam-like rules are compared only without
BatchNorm: a parameter whose true gradient is zero (a BatchNorm offset feeding a layer whose
input gradient sums to zero over the batch) gets rounding noise of ~1e-8 as its gradient,
which Adam divides by its own square root into a full step of random sign.
"""

import numpy as np
import pytest

import backends
from backends.archs import build_model
from backends.init import init_params
from backends.optim import OPTIMIZERS, OptimizerSpec
from backends.spec import dropout_masks

pytest.importorskip("torch")
pytest.importorskip("jax")

NAMES = ("numpy", "torch", "jax")
# arch -> (input shape, outputs, loss, knobs): small, and covering 1D, 2D and 3D convolution
ARCHS = {
    "mlp": ((1, 8, 8), 10, "cross_entropy", {"depth": 2, "width": 16}),
    "mlp_regression": ((3,), 1, "mse", {"depth": 2, "width": 16}),
    "lenet": ((1, 8, 8), 10, "cross_entropy", {"width": 1}),
    "lenet1d": ((1, 16), 10, "cross_entropy", {"width": 1}),
    "vgg": ((1, 8, 8), 10, "cross_entropy", {"depth": 1, "width": 4}),
    "resnet": ((1, 8, 8), 10, "cross_entropy", {"depth": 1, "width": 4}),
    "resnet3d": ((1, 4, 4, 4), 5, "cross_entropy", {"depth": 1, "width": 4}),
    "unet": ((2, 8, 8), 1, "l1", {"depth": 1, "width": 4}),
    "unet3d": ((2, 4, 4, 4), 1, "l1", {"depth": 1, "width": 4}),
    "encdec": ((2, 8, 8), 1, "l1", {"depth": 1, "width": 4}),
    "inception": ((1, 8, 8), 10, "cross_entropy", {"depth": 1, "width": 4}),
}
OPT = {"gd": {"lr": 0.1}, "sgd": {"lr": 0.1}, "momentum": {"lr": 0.05, "nesterov": True},
       "adagrad": {"lr": 0.05}, "rmsprop": {"lr": 0.01}, "adam": {"lr": 0.01}}
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-5, atol=2e-6),
       # adaptive rules with BatchNorm, float64: a gradient that is zero up to ~1e-17 moves its
       # parameter by up to lr * g / (sqrt(G) + eps), ~1e-9 of pure noise over 5 steps,
       # which reaches what follows it (BN statistics, later losses) at ~1e-8 relative
       "float64-adaptive": dict(rtol=1e-7, atol=1e-8)}
ADAPTIVE = ("adagrad", "rmsprop", "adam")


def setup(arch: str, batchnorm: bool, dropout: float, n: int = 8, steps: int = 5):
    shape, n_out, loss, knobs = ARCHS[arch]
    spec = build_model(arch.removesuffix("_regression").removesuffix("1d").removesuffix("3d"),
                       shape, n_out, loss, batchnorm=batchnorm, dropout=dropout, **knobs)
    rng = np.random.default_rng(0)
    params, buffers = init_params(spec, "he", rng)
    batches = []
    for _ in range(steps):
        x = rng.standard_normal((n, *shape)).astype(np.float32)
        if loss == "cross_entropy":
            y = rng.integers(0, n_out, n).astype(np.int64)
        else:
            y = rng.standard_normal((n, *spec.output_shape)).astype(np.float32)
        batches.append((x, y, dropout_masks(spec, n, rng)))
    return spec, params, buffers, batches


def build(name, spec, params, buffers, opt, dtype, **kw):
    return backends.load(name).build(spec, params, buffers, opt, dtype=dtype, **kw)


def close(a, b, dtype, what):
    """Elementwise rtol, with an atol scaled to the array's largest value: an element near
    zero in a float32 array of magnitude 3 carries that array's rounding, ~3e-7 per op."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    tol = TOL[dtype]
    atol = max(tol["atol"], tol["rtol"] * float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=atol, err_msg=what)


def check_parity(arch, opt_name, batchnorm, dropout, dtype):
    spec, params, buffers, batches = setup(arch, batchnorm, dropout)
    opt = OptimizerSpec(name=opt_name, **OPT[opt_name])
    trainers = {n: build(n, spec, params, buffers, opt, dtype) for n in NAMES}
    x, y, masks = batches[0]
    # gradients on fresh trainers: loss_and_grads moves the BatchNorm running statistics
    ref_loss, ref_grads = build("numpy", spec, params, buffers, opt, dtype).loss_and_grads(
        x, y, masks)
    for n in ("torch", "jax"):
        other = build(n, spec, params, buffers, opt, dtype)
        loss, grads = other.loss_and_grads(x, y, masks)
        close(loss, ref_loss, dtype, f"{n} loss")
        assert list(grads) == list(ref_grads)
        for k in ref_grads:
            close(grads[k], ref_grads[k], dtype, f"{n} grad {k}")
    losses = {n: [t.train_step(x, y, m) for x, y, m in batches] for n, t in trainers.items()}
    ref = trainers["numpy"]
    state_tol = dtype
    if dtype == "float64" and batchnorm and opt_name in ADAPTIVE:
        state_tol = "float64-adaptive"
    for n in ("torch", "jax"):
        t = trainers[n]
        close(losses[n], losses["numpy"], state_tol, f"{n} losses over 5 steps")
        for k, v in ref.params().items():
            close(t.params()[k], v, state_tol, f"{n} param {k} after 5 steps")
        for k, v in ref.buffers().items():
            close(t.buffers()[k], v, state_tol, f"{n} buffer {k} after 5 steps")
        ref_state, state = ref.opt_state(), t.opt_state()
        assert state["step"] == ref_state["step"] == 5
        for slot, values in ref_state["slots"].items():
            for k, v in values.items():
                close(state["slots"][slot][k], v, state_tol, f"{n} {slot}[{k}]")
        xe = batches[0][0]
        close(t.forward(xe), ref.forward(xe), state_tol, f"{n} eval forward (running stats)")


# XLA takes 10-20 s on this CPU to compile a 3D conv net's steps: those run with -m slow
SLOW_ARCHS = {"resnet3d", "unet3d"}
EVERY_ARCH = [pytest.param(a, marks=pytest.mark.slow) if a in SLOW_ARCHS else a for a in ARCHS]


@pytest.mark.parametrize("arch", EVERY_ARCH)
def test_every_arch_float64_with_bn_and_dropout(arch):
    check_parity(arch, "momentum", True, 0.25, "float64")


@pytest.mark.parametrize("arch", ["mlp", "lenet", pytest.param("resnet", marks=pytest.mark.slow),
                                  pytest.param("unet", marks=pytest.mark.slow)])
def test_archs_without_bn_float64(arch):
    check_parity(arch, "momentum", False, 0.25, "float64")


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_every_optimizer_float64_with_bn_and_dropout(opt_name):
    check_parity("mlp", opt_name, True, 0.25, "float64")


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_every_optimizer_float32(opt_name):
    batchnorm = opt_name in ("gd", "sgd", "momentum")  # see the module docstring
    check_parity("mlp", opt_name, batchnorm, 0.25, "float32")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lenet", "resnet", "unet3d", "inception"])
def test_conv_archs_float32(arch):
    check_parity(arch, "sgd", True, 0.0, "float32")


@pytest.mark.slow
@pytest.mark.parametrize("opt_name", OPTIMIZERS)
@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_arch_with_every_optimizer_float64(arch, opt_name):
    """BatchNorm and dropout on: the other combinations are the tests above."""
    check_parity(arch, opt_name, True, 0.25, "float64")


def test_round_trip_numpy_torch_jax_numpy_with_optimizer_state():
    spec, params, buffers, batches = setup("lenet", True, 0.25)
    opt = OptimizerSpec(name="adam", lr=0.01)
    x_eval = batches[-1][0]
    ref = build("numpy", spec, params, buffers, opt, "float64")
    state = (params, buffers, None)
    for i, n in enumerate(("numpy", "torch", "jax", "numpy")):
        # each hop loads the state the previous backend exported and trains one step
        t = build(n, spec, *state[:2], opt, "float64", opt_state=state[2])
        close(t.forward(x_eval), ref.forward(x_eval), "float64", f"hop {i} ({n}) forward")
        x, y, m = batches[i]
        close(t.train_step(x, y, m), ref.train_step(x, y, m), "float64", f"hop {i} step")
        state = (t.params(), t.buffers(), t.opt_state())
    assert state[2]["step"] == 4
    for k, v in ref.params().items():
        close(state[0][k], v, "float64", f"param {k} after the round trip")
    for k, v in ref.buffers().items():
        close(state[1][k], v, "float64", f"buffer {k} after the round trip")
    for slot, values in ref.opt_state()["slots"].items():
        for k, v in values.items():
            close(state[2]["slots"][slot][k], v, "float64", f"{slot}[{k}] after the trip")
    x, y, m = batches[4]
    final = [build(n, spec, *state[:2], opt, "float64", opt_state=state[2]) for n in NAMES]
    next_losses = [f.train_step(x, y, m) for f in final]
    close(next_losses, [ref.train_step(x, y, m)] * 3, "float64", "the next step")
    for f in final:
        close(f.forward(x_eval), ref.forward(x_eval), "float64", f"{f.backend} after the trip")


def test_bn_running_statistics_agree_and_evaluation_uses_them():
    spec, params, buffers, batches = setup("mlp", True, 0.0)
    opt = OptimizerSpec(name="sgd", lr=1e-3)
    trainers = [build(n, spec, params, buffers, opt, "float64") for n in NAMES]
    for x, y, m in batches:
        for t in trainers:
            t.train_step(x, y, m)
    ref = trainers[0].buffers()
    assert any(not np.allclose(v, buffers[k]) for k, v in ref.items()), "stats did not move"
    for t in trainers[1:]:
        for k, v in ref.items():
            close(t.buffers()[k], v, "float64", f"{t.backend} {k}")
    x = batches[0][0][:3]  # evaluation of 3 samples: running statistics, not the batch's
    outs = [t.forward(x) for t in trainers]
    train_mode = trainers[0].forward(x, train=True)
    assert not np.allclose(outs[0], train_mode)
    for out in outs[1:]:
        close(out, outs[0], "float64", "eval forward")
