"""The Upsample layer (backends/spec.py) on the three backends, and the unet/encdec up path.

References, float64: torch's F.interpolate(x, scale_factor=s, mode=..., align_corners=False)
for the forward and its autograd for the backward; central differences for the NumPy
backward; a small case written out by hand from the formula, so the border rule (the clamp
src >= 0, i1 <= d - 1) is checked without torch. Sizes are odd and unequal per axis, scales
2 and 3, modes nearest and linear (bi-, trilinear), in 1D, 2D and 3D. Then whole unet and
encdec models with each `model.upsample`: the loss, every gradient and three training steps
agree across numpy, torch and jax in float64 (the helpers of test_parity.py).

Planted bugs, each run once through a pytest plugin that monkeypatches the op (not kept):
numpy's linear border clamp at -0.5 instead of 0 turns 13 cases red (every linear forward and
backward against torch, and the hand-written case); a nearest backward that keeps each
block's first sample instead of its sum, 13 (torch, central differences, by hand); JAX's taps
without the clamp, 8 (its forward against torch, and the linear unet and encdec parity).
"""

import numpy as np
import pytest

from backends.archs import build_model
from backends.init import init_params
from backends.numpy import layers
from backends.spec import Upsample, dropout_masks, output_shape

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
F = torch.nn.functional

from test_numpy_ops import numeric_grad, one_blas_thread, rel_err  # noqa: E402, F401
from test_parity import NAMES, build, close  # noqa: E402

# importing backends.jax turns on float64 in JAX, as a float64 trial does
from backends.jax import layers as jax_layers  # noqa: E402

ATOL = 1e-12  # float64: the same few products and sums in another order
SHAPES = {1: (2, 3, 5), 2: (2, 2, 5, 3), 3: (1, 2, 3, 5, 3)}  # (N, C, *odd spatial sizes)
TORCH_MODE = {("nearest", 1): "nearest", ("nearest", 2): "nearest", ("nearest", 3): "nearest",
              ("linear", 1): "linear", ("linear", 2): "bilinear", ("linear", 3): "trilinear"}
CASES = [pytest.param(mode, nd, s, id=f"{mode}-{nd}d-x{s}")
         for mode in ("nearest", "linear") for nd in (1, 2, 3) for s in (2, 3)]


def _x(nd, seed=0):
    return np.random.default_rng(seed).standard_normal(SHAPES[nd])


def _torch(x, mode, nd, s):
    kw = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x, scale_factor=s, mode=TORCH_MODE[mode, nd], **kw)


@pytest.mark.parametrize("mode, nd, s", CASES)
def test_forward_matches_torch_and_jax(mode, nd, s):
    x = _x(nd)
    out, _ = layers.upsample_forward(x, s, mode)
    expected = _torch(torch.tensor(x), mode, nd, s).numpy()
    assert out.shape == expected.shape
    layer = Upsample(name="up", ndim=nd, scale=s, mode=mode)
    assert output_shape(layer, x.shape[1:]) == expected.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=0, atol=ATOL)
    got = np.asarray(jax_layers.upsample(jax.numpy.asarray(x), (s,) * nd, mode))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("mode, nd, s", CASES)
def test_backward_matches_torch_autograd_and_jax(mode, nd, s):
    x = _x(nd)
    out, cache = layers.upsample_forward(x, s, mode)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx, grads = layers.upsample_backward(dout, cache)
    assert grads == () and dx.shape == x.shape
    tx = torch.tensor(x, requires_grad=True)
    _torch(tx, mode, nd, s).backward(torch.tensor(dout))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=0, atol=ATOL)
    _, pull = jax.vjp(lambda v: jax_layers.upsample(v, (s,) * nd, mode), jax.numpy.asarray(x))
    np.testing.assert_allclose(np.asarray(pull(jax.numpy.asarray(dout))[0]), dx, rtol=0,
                               atol=ATOL)


@pytest.mark.parametrize("mode, nd, s", CASES)
def test_backward_matches_central_differences(mode, nd, s):
    x = _x(nd)
    out, cache = layers.upsample_forward(x, s, mode)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dx, _ = layers.upsample_backward(dout, cache)
    numeric = numeric_grad(lambda: float(np.sum(layers.upsample_forward(x, s, mode)[0] * dout)),
                           x)
    assert rel_err(dx, numeric) < 1e-8  # the map is linear: only rounding, ~1e-10 at h 1e-6


def test_linear_and_nearest_written_out():
    """d = 3, s = 2: src = (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, 1.75, 2.25; the first
    clamps to 0 and the last reads x[2] twice (i1 = min(3, 2)). s = 3 for nearest."""
    x = np.array([[[0.0, 1.0, 4.0]]])  # (1, 1, 3)
    out, cache = layers.upsample_forward(x, 2, "linear")
    np.testing.assert_allclose(out[0, 0], [0.0, 0.25, 0.75, 1.75, 3.25, 4.0], rtol=0, atol=1e-15)
    dx, _ = layers.upsample_backward(np.ones_like(out), cache)
    # column sums of the interpolation: x0 gets 1 + .75 + .25, x1 .25 + .75 + .75 + .25, ...
    np.testing.assert_allclose(dx[0, 0], [2.0, 2.0, 2.0], rtol=0, atol=1e-15)
    dx, _ = layers.upsample_backward(np.arange(6.0).reshape(1, 1, 6), cache)
    np.testing.assert_allclose(dx[0, 0], [0 + 0.75 + 0.5, 0.25 + 1.5 + 2.25 + 1.0,
                                          0.75 + 3.0 + 5.0], rtol=0, atol=1e-15)
    out, cache = layers.upsample_forward(x, 3, "nearest")
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0, 1, 1, 1, 4, 4, 4])
    dx, _ = layers.upsample_backward(np.arange(9.0).reshape(1, 1, 9), cache)
    np.testing.assert_array_equal(dx[0, 0], [0 + 1 + 2, 3 + 4 + 5, 6 + 7 + 8])


def test_float32_stays_float32():
    x = _x(2).astype(np.float32)
    for mode in ("nearest", "linear"):
        out, cache = layers.upsample_forward(x, 2, mode)
        assert out.dtype == np.float32
        assert layers.upsample_backward(out, cache)[0].dtype == np.float32


def test_the_spec_refuses_a_wrong_rank_or_mode():
    from backends.spec import ShapeError

    with pytest.raises(ShapeError, match="expects a 2-D input"):
        output_shape(Upsample(name="up", ndim=2, scale=2), (3, 4))
    with pytest.raises(ShapeError, match="unknown mode 'bilinear'; known: nearest, linear"):
        output_shape(Upsample(name="up", ndim=2, scale=2, mode="bilinear"), (3, 4, 4))
    assert output_shape(Upsample(name="up", ndim=3, scale=(1, 2, 3)), (2, 3, 3, 3)) == (
        2, 3, 6, 9)


# ----------------------------------------------------------------------------- models

MODELS = {"unet": ((2, 8, 8), {"depth": 1, "width": 4}),
          "encdec": ((2, 8, 8), {"depth": 2, "width": 4}),
          "unet3d": ((1, 4, 4, 4), {"depth": 1, "width": 2})}


def _model(arch, upsample, batchnorm=True):
    shape, knobs = MODELS[arch]
    return build_model(arch.removesuffix("3d"), shape, 1, "l1", batchnorm=batchnorm,
                       upsample=upsample, **knobs)


def test_the_default_up_path_is_the_transposed_conv():
    """None (the default) and "transposed" build today's model, layer for layer."""
    for arch in MODELS:
        default = _model(arch, None)
        assert _model(arch, "transposed").body == default.body
        names = [path for path, _ in default.layers()]
        assert any(p.endswith("inner.up") for p in names)
        assert not any(p.endswith("up_conv") for p in names)


@pytest.mark.parametrize("upsample", ["nearest", "linear"])
def test_the_resize_conv_keeps_channels_and_shapes(upsample):
    for arch in MODELS:
        ref, spec = _model(arch, "transposed"), _model(arch, upsample)
        assert spec.output_shape == ref.output_shape
        up_ref = {p: o for p, _, o in ref.shapes() if p.endswith("inner.up")}
        up = {p.removesuffix("_conv"): o for p, _, o in spec.shapes() if p.endswith("up_conv")}
        assert up == up_ref  # the same (channels, *spatial) where the path rejoins
        kinds = {p: type(layer).__name__ for p, layer in spec.layers()}
        assert {kinds[p] for p in up_ref} == {"Upsample"}


def _parity(spec, n=4, steps=3, dtype="float64"):
    from backends.optim import OptimizerSpec

    rng = np.random.default_rng(0)
    params, buffers = init_params(spec, "he", rng)
    batches = [(rng.standard_normal((n, *spec.input_shape)),
                rng.standard_normal((n, *spec.output_shape)),
                dropout_masks(spec, n, rng)) for _ in range(steps)]
    opt = OptimizerSpec(name="momentum", lr=0.05)
    trainers = {name: build(name, spec, params, buffers, opt, dtype) for name in NAMES}
    x, y, masks = batches[0]
    ref_loss, ref_grads = build("numpy", spec, params, buffers, opt, dtype).loss_and_grads(
        x, y, masks)
    assert any("up_conv" in k for k in ref_grads) or any(".up." in k for k in ref_grads)
    for name in ("torch", "jax"):
        loss, grads = build(name, spec, params, buffers, opt, dtype).loss_and_grads(x, y, masks)
        close(loss, ref_loss, dtype, f"{name} loss")
        assert list(grads) == list(ref_grads)
        for k in ref_grads:
            close(grads[k], ref_grads[k], dtype, f"{name} grad {k}")
    losses = {name: [t.train_step(*b) for b in batches] for name, t in trainers.items()}
    for name in ("torch", "jax"):
        close(losses[name], losses["numpy"], dtype, f"{name} losses over {steps} steps")
        for k, v in trainers["numpy"].params().items():
            close(trainers[name].params()[k], v, dtype, f"{name} param {k}")
        close(trainers[name].forward(x), trainers["numpy"].forward(x), dtype,
              f"{name} eval forward")


@pytest.mark.parametrize("upsample", ["nearest", "linear"])  # transposed: test_parity.py
@pytest.mark.parametrize("arch", ["unet", "encdec"])
def test_model_parity_float64(arch, upsample):
    _parity(_model(arch, upsample))


@pytest.mark.slow  # XLA compiles a 3D conv net's steps for 10-20 s on this CPU
@pytest.mark.parametrize("upsample", ["nearest", "linear"])
def test_model_parity_3d_float64(upsample):
    _parity(_model("unet3d", upsample))
