"""Parity at kinks and ties: inputs with exact zeros, as the sdf task's unknown voxels are.

An input whose top half is exactly 0, through a convolution with zero bias, gives exact zeros
where the kernel sees only that half: leaky ReLU and ReLU sit on their kink, Maxout's pieces
tie, every max-pool window there is a tie, and a zero-bias transposed convolution puts out
exact zeros that an L1 target of 0 meets at |0|. Random inputs never land there, so the op
tests miss what these check: that numpy, torch and JAX follow one convention at those points
(backends/spec.py, "Kinks and ties"), in float64, on gradients as well as on outputs.
"""

import numpy as np
import pytest
from conftest import needs

import backends
from backends import spec as S
from backends.init import init_params
from backends.optim import OptimizerSpec

OTHERS = [pytest.param("torch", marks=needs("torch")), pytest.param("jax", marks=needs("jax"))]
# (fn, slope, k): the slope 3 is max(3x, x), whose kink at 0 is where torch.maximum ties
ACTS = {"relu": ("relu", 0.1, 2), "leaky0.1": ("leaky_relu", 0.1, 2),
        "leaky3": ("leaky_relu", 3.0, 2), "maxout2": ("maxout", 0.1, 2),
        "maxout4": ("maxout", 0.1, 4)}


def zero_top_net(nd: int, act: str, loss: str, channels: int = 1, pool=(2, None, 0)):
    """conv (C -> 4, 3, pad 1, bias 0) -> act -> max pool (kernel, stride, padding `pool`)
    -> conv-transpose (2, stride 2, bias 0)."""
    fn, slope, k = ACTS[act]
    width = 4 // k if fn == "maxout" else 4
    layers = (S.Conv(name="conv", ndim=nd, in_channels=channels, out_channels=4, kernel=3,
                     padding=1),
              S.Activation(name="act", fn=fn, slope=slope, k=k),
              S.Pool(name="pool", ndim=nd, mode="max", kernel=pool[0], stride=pool[1],
                     padding=pool[2]),
              S.ConvTranspose(name="up", ndim=nd, in_channels=width, out_channels=1, kernel=2,
                              stride=2))
    shape = (channels, *(8, 4, 4)[:nd]) if nd == 3 else (channels, *(8,) * nd)
    return S.ModelSpec(arch="zero_top", input_shape=shape, loss=loss,
                       body=S.Sequential(name="net", layers=layers))


def zero_top_batch(spec, rng, target_zero: bool):
    """x (2, *input_shape), exactly 0 on the first half of the first spatial axis; y likewise
    0 there when `target_zero` (so the prediction hits the target exactly), else random."""
    x = rng.standard_normal((2, *spec.input_shape))
    half = spec.input_shape[1] // 2
    x[:, :, :half] = 0.0  # every channel, as sdf's unknown voxels are 0 in TSDF and mask
    y = rng.standard_normal((2, *spec.output_shape))
    if target_zero:
        y[:, :, :half] = 0.0
    return x, y


def grads_of(name, spec, params, buffers, x, y):
    """(loss, parameter gradients, outputs, input gradient) in float64."""
    opt = OptimizerSpec(name="sgd", lr=0.1)
    trainer = backends.load(name).build(spec, params, buffers, opt, dtype="float64")
    loss, grads = trainer.loss_and_grads(x, y, {})
    _, dx = trainer.probe(x, y)
    return loss, grads, trainer.forward(x), dx


def check(other, spec, target_zero=False):
    """numpy against `other` on one zero-topped batch: forward, loss and every gradient.

    The input gradient is what shows a max-pool tie: a tied window's zeros all have zero
    input patches, so the parameter gradients do not depend on which of them takes it.
    """
    rng = np.random.default_rng(0)
    params, buffers = init_params(spec, "he", rng)
    x, y = zero_top_batch(spec, rng, target_zero)
    ref_loss, ref_grads, ref_out, ref_dx = grads_of("numpy", spec, params, buffers, x, y)
    loss, grads, out, dx = grads_of(other, spec, params, buffers, x, y)
    assert (ref_out[:, :, :2] == 0).all(), "the zero region must give exact zeros"
    tol = dict(rtol=1e-10, atol=1e-12)  # a convention that differs moves a value by O(0.01-1)
    np.testing.assert_allclose(out, ref_out, **tol, err_msg="forward")
    np.testing.assert_allclose(loss, ref_loss, **tol, err_msg="loss")
    assert list(grads) == list(ref_grads)
    for k, g in ref_grads.items():
        np.testing.assert_allclose(grads[k], g, **tol, err_msg=f"grad {k}")
    np.testing.assert_allclose(dx, ref_dx, **tol, err_msg="input gradient")


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_kinks_and_ties_2d(other, act, loss):
    check(other, zero_top_net(2, act, loss))


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("act", ["relu", "leaky0.1", "maxout2"])
def test_overlapping_max_pool_windows_with_padding(other, act):
    """Kernel 3, stride 1, pad 1: a tied zero sits in up to 9 windows, next to -inf pads."""
    check(other, zero_top_net(2, act, "mse", pool=(3, 1, 1)))


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("act", ["relu", "leaky0.1", "maxout2"])
def test_l1_at_an_exact_hit(other, act):
    """Where the prediction equals the target exactly, |out - y| takes the subgradient 0."""
    check(other, zero_top_net(2, act, "l1"), target_zero=True)


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.parametrize("act", ["leaky0.1", "maxout2"])
def test_sdf_like_3d_two_channels(other, act):
    """Two input channels (TSDF and known-mask), both exactly 0 in the unknown half, 3D."""
    check(other, zero_top_net(3, act, "l1", channels=2), target_zero=True)
