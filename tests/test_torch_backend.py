"""The torch backend against trusted references (STYLE 9).

- optimizers: backends.optim.update, the canonical rules, on the same gradients (float64);
- forward, loss, gradients and BatchNorm running statistics: the spec walked by hand below with
  torch.nn.functional and autograd (`reference`), which shares no code with backends/torch;
- weights: canonical -> torch -> canonical is exact, and state_dict keys are the spec's paths.
"""

from __future__ import annotations

import numpy as np
import pytest

import backends
from backends import optim as canon
from backends import spec as S
from backends.archs import ARCHS, build_model
from backends.base import DeviceUnavailable
from backends.init import init_params
from backends.optim import OptimizerSpec

torch = pytest.importorskip("torch")
F = torch.nn.functional

tb = backends.load("torch")

CLASSIFIER = ((1, 8, 8), 10, "cross_entropy")
TASKS = {"mlp": ((3,), 2, "mse"), "unet": ((2, 8, 8, 8), 1, "l1"),
         "encdec": ((2, 8, 8, 8), 1, "l1")}  # (input shape, outputs, loss); others CLASSIFIER


def problem(arch: str, batch: int = 4, seed: int = 0, **knobs):
    """(spec, params, buffers, x, y, masks) with float64 data."""
    shape, n_out, loss = TASKS.get(arch, CLASSIFIER)
    spec = build_model(arch, shape, n_out, loss, **knobs)
    rng = np.random.default_rng(seed)
    params, buffers = init_params(spec, "he", rng)
    x = rng.standard_normal((batch, *shape))
    if loss == "cross_entropy":
        y = rng.integers(0, n_out, batch)
    else:
        y = rng.standard_normal((batch, *spec.output_shape))
    return spec, params, buffers, x, y, S.dropout_masks(spec, batch, rng)


# ----------------------------------------------------------------------------- the reference


def reference(layer, x, P: dict, B: dict, train: bool, masks: dict, path: str = ""):
    """The spec evaluated by hand, leaf by leaf, on tensors keyed by canonical path.

    In training, BatchNorm writes its updated running statistics into B (SPEC 2 / spec.py:
    running = (1 - momentum) running + momentum batch, with the unbiased batch variance).
    """
    if isinstance(layer, S.Sequential):
        for child in layer.layers:
            x = reference(child, x, P, B, train, masks, S.join(path, child.name))
        return x
    if isinstance(layer, S.Parallel):
        outs = [reference(b, x, P, B, train, masks, S.join(path, b.name)) for b in layer.branches]
        return sum(outs[1:], outs[0]) if layer.merge == "add" else torch.cat(outs, dim=1)
    w, b = P.get(f"{path}.weight"), P.get(f"{path}.bias")
    if isinstance(layer, S.Linear):
        return x @ w.T + (b if b is not None else 0)  # (N, in) -> (N, out)
    if isinstance(layer, S.Conv):
        conv = getattr(F, f"conv{layer.ndim}d")
        return conv(x, w, b, layer.stride, layer.padding, layer.dilation)
    if isinstance(layer, S.ConvTranspose):
        conv = getattr(F, f"conv_transpose{layer.ndim}d")
        return conv(x, w, b, layer.stride, layer.padding, layer.output_padding, 1,
                    layer.dilation)
    if isinstance(layer, S.Pool):
        if layer.mode == "max":
            return getattr(F, f"max_pool{layer.ndim}d")(x, layer.kernel, layer.stride,
                                                         layer.padding)
        return getattr(F, f"avg_pool{layer.ndim}d")(x, layer.kernel, layer.stride,
                                                     layer.padding, count_include_pad=True)
    if isinstance(layer, S.BatchNorm):
        axes = [0, *range(2, x.dim())]
        bshape = (1, -1, *([1] * (x.dim() - 2)))  # (1, C, 1, ...)
        rm, rv = f"{path}.running_mean", f"{path}.running_var"
        if train:
            mean, var = x.mean(axes), x.var(axes, unbiased=False)
            n = x.numel() // x.shape[1]
            m = layer.momentum
            B[rm] = (1 - m) * B[rm] + m * mean.detach()
            B[rv] = (1 - m) * B[rv] + m * var.detach() * n / (n - 1)
        else:
            mean, var = B[rm], B[rv]
        xhat = (x - mean.reshape(bshape)) / torch.sqrt(var.reshape(bshape) + layer.eps)
        return xhat * w.reshape(bshape) + b.reshape(bshape)
    if isinstance(layer, S.Dropout):
        if train and layer.p > 0:
            return x * masks[path] / (1 - layer.p)
        return x
    if isinstance(layer, S.Flatten):
        return x.reshape(x.shape[0], -1)  # (N, C, ...) -> (N, C * ...)
    if isinstance(layer, S.Activation):
        if layer.fn == "sigmoid":
            return 1 / (1 + torch.exp(-x))
        if layer.fn == "tanh":
            return torch.tanh(x)
        if layer.fn == "relu":
            return torch.clamp(x, min=0)
        if layer.fn == "leaky_relu":
            return torch.maximum(layer.slope * x, x)
        n, ck, *spatial = x.shape
        return x.reshape(n, ck // layer.k, layer.k, *spatial).amax(dim=2)  # (N, C, *spatial)
    raise TypeError(layer)


def reference_loss(name, out, y):
    if name == "mse":
        return ((out - y) ** 2).mean()
    if name == "l1":
        return (out - y).abs().mean()
    return -torch.log_softmax(out, dim=1)[torch.arange(len(y)), y].mean()


def tensors(arrays: dict, grad: bool = False) -> dict:
    return {k: torch.tensor(np.asarray(v, np.float64), requires_grad=grad)
            for k, v in arrays.items()}


def assert_close(got: dict, want: dict, rtol: float, atol: float = 0.0):
    assert list(got) == list(want)
    for k in want:
        w = want[k].detach().numpy() if isinstance(want[k], torch.Tensor) else want[k]
        np.testing.assert_allclose(got[k], w, rtol=rtol, atol=atol, err_msg=k)


# ----------------------------------------------------------------------------- optimizers

OPTIMIZERS = [
    OptimizerSpec(name="gd", lr=0.1),
    OptimizerSpec(name="sgd", lr=0.1, weight_decay=0.01),
    OptimizerSpec(name="momentum", lr=0.05, momentum=0.8),
    OptimizerSpec(name="momentum", lr=0.05, nesterov=True, weight_decay=0.01),
    OptimizerSpec(name="adagrad", lr=0.1),
    OptimizerSpec(name="adagrad", lr=0.1, eps=1e-3, weight_decay=0.01),
    OptimizerSpec(name="rmsprop", lr=0.01),
    OptimizerSpec(name="rmsprop", lr=0.01, rho=0.7, weight_decay=0.01),
    OptimizerSpec(name="adam", lr=0.01),
    OptimizerSpec(name="adam", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-4, weight_decay=0.01),
]


def _small():
    return problem("mlp", batchnorm=True, width=8)


@pytest.mark.parametrize("ospec", OPTIMIZERS, ids=lambda o: f"{o.name}-wd{o.weight_decay}")
def test_optimizer_matches_canonical_rule(ospec):
    spec, params, buffers, *_ = _small()
    trainer = tb.build(spec, params, buffers, ospec, dtype="float64")
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    state = canon.init(ospec, ref)
    rng = np.random.default_rng(1)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape) for k, v in ref.items()}
        trainer.apply_gradients(grads)
        ref, state = canon.update(ospec, ref, grads, state)
    assert_close(trainer.params(), ref, rtol=1e-12, atol=1e-15)
    exported = trainer.opt_state()
    assert exported["step"] == state["step"] == 3
    assert list(exported["slots"]) == list(canon.SLOTS[ospec.name])
    for slot in state["slots"]:
        assert_close(exported["slots"][slot], state["slots"][slot], rtol=1e-12, atol=1e-15)

    # import: a trainer resumed from the exported state keeps following the canonical rule
    resumed = tb.build(spec, trainer.params(), trainer.buffers(), ospec, dtype="float64",
                       opt_state=exported)
    for _ in range(2):
        grads = {k: rng.standard_normal(v.shape) for k, v in ref.items()}
        resumed.apply_gradients(grads)
        ref, state = canon.update(ospec, ref, grads, state)
    assert_close(resumed.params(), ref, rtol=1e-12, atol=1e-15)
    assert resumed.opt_state()["step"] == 5


@pytest.mark.parametrize("ospec", OPTIMIZERS[::3], ids=lambda o: o.name)
def test_train_step_is_loss_and_grads_then_canonical_update(ospec):
    spec, params, buffers, x, y, masks = problem("lenet", dropout=0.5, batchnorm=True)
    fused = tb.build(spec, params, buffers, ospec, dtype="float64")
    split = tb.build(spec, params, buffers, ospec, dtype="float64")
    ref = {k: v.astype(np.float64) for k, v in params.items()}
    state = canon.init(ospec, ref)
    for _ in range(2):
        loss_fused = fused.train_step(x, y, masks)
        loss, grads = split.loss_and_grads(x, y, masks)
        ref, state = canon.update(ospec, ref, grads, state)
        split.apply_gradients(grads)
        assert loss_fused == pytest.approx(loss, rel=1e-12)
    assert_close(fused.params(), ref, rtol=1e-10, atol=1e-13)
    exported = fused.opt_state()
    assert exported["step"] == state["step"] == 2
    for slot in state["slots"]:
        assert_close(exported["slots"][slot], state["slots"][slot], rtol=1e-10, atol=1e-13)
    assert_close(fused.buffers(), split.buffers(), rtol=1e-12)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop"])
def test_library_defaults_do_not_leak(name):
    """torch's own Adagrad (eps 1e-10) and RMSprop (alpha 0.99) are not the canonical rules
    at default settings (eps 1e-8, rho 0.9); the trainer, configured from the spec, is."""
    spec, params, buffers, *_ = _small()
    ospec = OptimizerSpec(name=name, lr=0.01)  # canonical defaults
    p0 = {k: v.astype(np.float64) for k, v in params.items()}
    trainer = tb.build(spec, params, buffers, ospec, dtype="float64")
    plain = [torch.tensor(v, requires_grad=True) for v in p0.values()]
    default = getattr(torch.optim, {"adagrad": "Adagrad", "rmsprop": "RMSprop"}[name])(
        plain, lr=0.01)
    ref, state = p0, canon.init(ospec, p0)
    rng = np.random.default_rng(2)
    for _ in range(3):
        grads = {k: 1e-6 * rng.standard_normal(v.shape) for k, v in p0.items()}  # eps matters
        trainer.apply_gradients(grads)
        for t, g in zip(plain, grads.values()):
            t.grad = torch.tensor(g)
        default.step()
        ref, state = canon.update(ospec, ref, grads, state)
    ours = trainer.params()
    theirs = dict(zip(p0, (t.detach().numpy() for t in plain)))
    for k in p0:  # compare the total updates p - p0, where the rules differ visibly
        want = ref[k] - p0[k]
        np.testing.assert_allclose(ours[k] - p0[k], want, rtol=1e-9, atol=1e-18, err_msg=k)
        gap = np.abs((theirs[k] - p0[k]) - want).max() / np.abs(want).max()
        assert gap > 1e-3, f"{k}: torch's default {name} matches canonical (gap {gap:.2e})"


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("batchnorm", [False, True], ids=["nobn", "bn"])
def test_state_dict_keys_are_canonical_and_round_trip_exact(arch, batchnorm):
    spec, params, buffers, *_ = problem(arch, batchnorm=batchnorm)
    trainer = tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1))
    sd = trainer.module.state_dict()
    assert [k for k, _ in trainer.module.named_parameters()] == list(params)
    assert [k for k in sd if k in params] == list(params)
    assert [k for k in sd if k in buffers] == list(buffers)
    for k in set(sd) - set(params) - set(buffers):  # only torch's BatchNorm counter is extra
        owner, _, leaf = k.rpartition(".")
        assert leaf == "num_batches_tracked"
        assert isinstance(trainer.module.get_submodule(owner), torch.nn.modules.batchnorm._NormBase)
    for got, want in ((trainer.params(), params), (trainer.buffers(), buffers)):
        assert list(got) == list(want)
        for k in want:
            assert got[k].dtype == np.float32 and np.array_equal(got[k], want[k]), k
    wide = tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1), dtype="float64")
    for k, v in wide.params().items():
        assert v.dtype == np.float64 and np.array_equal(v.astype(np.float32), params[k]), k


def test_load_tolerates_num_batches_tracked_and_rejects_wrong_keys():
    spec, params, buffers, *_ = problem("lenet", batchnorm=True)
    ospec = OptimizerSpec(name="sgd", lr=0.1)
    torch_buffers = {k: v.numpy() for k, v in tb.build(spec, params, buffers, ospec)
                     .module.state_dict().items() if k not in params}
    assert len(torch_buffers) > len(buffers)  # num_batches_tracked came along
    tb.build(spec, params, torch_buffers, ospec)
    with pytest.raises(ValueError, match="conv1.weight"):
        tb.build(spec, {k: v for k, v in params.items() if k != "conv1.weight"}, buffers,
                 ospec)


# ----------------------------------------------------------------------------- forward

FORWARD = [(arch, bn, p) for arch in ARCHS for bn in (False, True) for p in (0.0, 0.5)]
ACTIVATIONS = [("mlp", dict(activation="leaky_relu", slope=3.0)),
               *[(arch, dict(activation=a)) for arch in ("mlp", "lenet", "inception")
                 for a in ("sigmoid", "tanh", "leaky_relu", "maxout")]]


def _check_against_reference(arch, **knobs):
    _check_spec(*problem(arch, **knobs))


def _check_spec(spec, params, buffers, x, y, masks):
    trainer = tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1), dtype="float64")
    P, B = tensors(params, grad=True), tensors(buffers)
    M = tensors(masks)
    xt = torch.tensor(x)
    yt = torch.tensor(y)

    np.testing.assert_allclose(trainer.forward(x), reference(spec.body, xt, P, dict(B), False, M)
                               .detach().numpy(), rtol=1e-10, atol=1e-12)
    out = trainer.forward(x, train=True, masks=masks)
    assert_close(trainer.buffers(), B, rtol=0)  # forward is pure, even in training mode
    B_train = dict(B)
    want = reference(spec.body, xt, P, B_train, True, M)
    np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-10, atol=1e-12)

    loss, grads = trainer.loss_and_grads(x, y, masks)
    ref_loss = reference_loss(spec.loss, want, yt)
    ref_loss.backward()
    assert loss == pytest.approx(ref_loss.item(), rel=1e-10)
    assert_close(grads, {k: p.grad for k, p in P.items()}, rtol=1e-8, atol=1e-11)
    assert_close(trainer.buffers(), B_train, rtol=1e-12, atol=1e-15)  # momentum, unbiased var

    ev_loss, ev_out = trainer.evaluate(x, y)  # running statistics, no dropout
    want = reference(spec.body, xt, P, dict(B_train), False, M)
    np.testing.assert_allclose(ev_out, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert ev_loss == pytest.approx(reference_loss(spec.loss, want, yt).item(), rel=1e-10)


@pytest.mark.parametrize("arch,batchnorm,dropout", FORWARD,
                         ids=[f"{a}-{'bn' if b else 'nobn'}-p{p}" for a, b, p in FORWARD])
def test_forward_loss_grads_buffers_match_reference(arch, batchnorm, dropout):
    _check_against_reference(arch, batchnorm=batchnorm, dropout=dropout)


@pytest.mark.parametrize("arch,knobs", ACTIVATIONS,
                         ids=[f"{a}-{k['activation']}{k.get('slope', '')}" for a, k in ACTIVATIONS])
def test_activations_match_reference(arch, knobs):
    _check_against_reference(arch, **knobs)


def _geometry_spec(nd: int) -> S.ModelSpec:
    """Layer options no architecture uses: dilation, padded average pooling (zeros count),
    padded max pooling, output_padding, strided transposed convs, a residual 1D block."""
    c = 3
    body = (S.Conv(name="conv", ndim=nd, in_channels=2, out_channels=c, kernel=3, stride=2,
                   padding=2, dilation=2),
            S.Pool(name="avg", ndim=nd, mode="avg", kernel=3, stride=2, padding=1),
            S.BatchNorm(name="bn", num_features=c, ndim=nd, eps=1e-3, momentum=0.3),
            S.ConvTranspose(name="up", ndim=nd, in_channels=c, out_channels=c, kernel=3,
                            stride=2, padding=1, output_padding=1),
            S.Parallel(name="res", merge="add", branches=(
                S.Sequential(name="body", layers=(
                    S.Pool(name="max", ndim=nd, mode="max", kernel=3, stride=1, padding=1),
                    S.Activation(name="act", fn="leaky_relu", slope=0.2))),
                S.Sequential(name="shortcut"))),
            S.Flatten(name="flatten"), S.Dropout(name="drop", p=0.2))
    shape = (2, *([9] * nd))
    flat = S.output_shape(S.Sequential(name="probe", layers=body), shape)[0]
    body = S.Sequential(name="geo", layers=(*body, S.Linear(name="head", in_features=flat,
                                                            out_features=5)))
    return S.ModelSpec(arch="geometry", input_shape=shape, body=body, loss="cross_entropy")


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_layer_geometry_matches_reference(nd):
    spec = _geometry_spec(nd)
    rng = np.random.default_rng(nd)
    params, buffers = init_params(spec, "lecun", rng)
    x = rng.standard_normal((3, *spec.input_shape))
    _check_spec(spec, params, buffers, x, rng.integers(0, 5, 3), S.dropout_masks(spec, 3, rng))


def _tiny(*layers, features: int = 6):
    body = S.Sequential(name="m", layers=(S.Linear(name="fc", in_features=features, out_features=4),
                                        *layers))
    spec = S.ModelSpec(arch="tiny", input_shape=(features,), body=body, loss="mse")
    params, buffers = init_params(spec, "he", np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((5, features)).astype(np.float32)
    return spec, params, buffers, x, x @ params["fc.weight"].T  # (5, 4) pre-activations


def test_dropout_applies_caller_mask_and_native_rng_is_seeded():
    spec, params, buffers, x, z = _tiny(S.Dropout(name="drop", p=0.25))
    ospec = OptimizerSpec(name="sgd", lr=0.1)
    trainer = tb.build(spec, params, buffers, ospec)
    mask = S.dropout_masks(spec, 5, np.random.default_rng(3))["drop"]
    assert 0 < mask.mean() < 1
    np.testing.assert_allclose(trainer.forward(x, train=True, masks={"drop": mask}),
                               z * mask / 0.75, rtol=1e-6)
    np.testing.assert_allclose(trainer.forward(x), z, rtol=1e-6)  # eval: no dropout
    with pytest.raises(ValueError, match="drop"):
        trainer.forward(x, train=True)  # canonical rng without a mask: refused, not skipped
    with pytest.raises(ValueError, match="mask shape"):
        trainer.forward(x, train=True, masks={"drop": mask[:1]})  # no silent broadcasting

    def native(seed):
        return tb.build(spec, params, buffers, ospec, rng="native", seed=seed).forward(
            x, train=True)

    out = native(7)
    kept = out != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(out[kept], (z / 0.75)[kept], rtol=1e-6)
    assert np.array_equal(out, native(7)) and not np.array_equal(out, native(8))


def test_maxout_groups_adjacent_channels_and_leaky_slope():
    spec, params, buffers, x, z = _tiny(S.Activation(name="act", fn="maxout", k=2))
    out = tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1)).forward(x)
    np.testing.assert_allclose(out, np.maximum(z[:, 0::2], z[:, 1::2]), rtol=1e-6)  # c*k + j
    spec, params, buffers, x, z = _tiny(S.Activation(name="act", fn="leaky_relu", slope=0.1))
    out = tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1)).forward(x)
    np.testing.assert_allclose(out, np.maximum(0.1 * z, z), rtol=1e-6)


# ----------------------------------------------------------------------------- devices


def test_devices_and_names():
    assert tb.NAME == "torch" and tb.devices()[0] == "cpu"
    assert tb.device_name("cpu").startswith("cpu (")
    spec, params, buffers, *_ = _small()
    trainer = tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1), device="auto")
    assert trainer.device == ("gpu" if torch.cuda.is_available() else "cpu")
    assert trainer.backend == "torch" and trainer.dtype == "float32"
    with pytest.raises(ValueError):
        tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1), device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_absent_raises_before_building(monkeypatch):
    import backends.torch.trainer as trainer_module

    def never(*args, **kwargs):
        raise AssertionError("built a trainer for an absent device")

    monkeypatch.setattr(trainer_module.TorchTrainer, "__init__", never)
    spec, params, buffers, *_ = _small()
    with pytest.raises(DeviceUnavailable):
        tb.build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1), device="gpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", ["lenet", "resnet", "unet"])
def test_gpu_matches_cpu(arch):
    spec, params, buffers, x, y, masks = problem(arch, batchnorm=True, dropout=0.5)
    x = x.astype(np.float32)
    ospec = OptimizerSpec(name="adam", lr=1e-3)
    cpu, gpu = (tb.build(spec, params, buffers, ospec, device=d) for d in ("cpu", "gpu"))
    assert gpu.device == "gpu" and gpu.device_name == torch.cuda.get_device_name()
    np.testing.assert_allclose(gpu.forward(x, train=True, masks=masks),
                               cpu.forward(x, train=True, masks=masks), rtol=1e-5, atol=1e-5)
    for t in (cpu, gpu):
        t.train_step(x, y, masks)
    assert_close(gpu.params(), cpu.params(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gpu.evaluate(x, y)[1], cpu.evaluate(x, y)[1], rtol=1e-4,
                               atol=1e-5)


@pytest.mark.slow
def test_compiled_train_step_matches_eager():
    """torch.compile (inductor) needs a C++ compiler and ~20 s here, so it runs with the slow
    tests. SGD, not Adam: Adam turns the ~0 gradient of a bias before BatchNorm into a full
    step whose sign is rounding noise."""
    spec, params, buffers, x, y, masks = problem("mlp", batchnorm=True, dropout=0.5, width=8)
    x, y = x.astype(np.float32), y.astype(np.float32)
    ospec = OptimizerSpec(name="momentum", lr=0.05)
    eager = tb.build(spec, params, buffers, ospec)
    compiled = tb.build(spec, params, buffers, ospec, compile=True)
    for _ in range(3):
        assert compiled.train_step(x, y, masks) == pytest.approx(
            eager.train_step(x, y, masks), rel=1e-5)
    assert_close(compiled.params(), eager.params(), rtol=1e-4, atol=1e-6)
