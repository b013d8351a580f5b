"""The backend-neutral model spec: plain frozen dataclasses, and shape inference over them.

A model is a tree of layers. A `Sequential` runs its layers in order; a `Parallel` runs its
branches on the same input and merges them by addition (a residual block) or by channel
concatenation (a UNet skip, an Inception block). Every other layer is a leaf. Each layer has a
`name`; the dotted path of names from the root is the layer's identity, and a leaf's parameters
are `<path>.weight`, `<path>.bias` (and, for BatchNorm, the buffers `<path>.running_mean` and
`<path>.running_var`), as in PyTorch's `state_dict`.

Shapes here never include the batch: `(F,)` for features, `(C, L)`, `(C, H, W)`,
`(C, D, H, W)` for 1D, 2D and 3D signals.

Nothing here imports a framework, and nothing in `backends/` imports `harness/`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "maxout")
LOSSES = ("mse", "cross_entropy", "l1")


class ShapeError(ValueError):
    """An input shape a layer cannot take; the message names the layer path."""


def _tuple(value, ndim: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(f"{what} {value} has {len(value)} entries, expected {ndim}")
    return value


class _Nd:
    """Mixin: normalise int-or-tuple geometry fields of an N-d layer to tuples of length ndim."""

    def __post_init__(self):
        if self.ndim not in (1, 2, 3):
            raise ValueError(f"{type(self).__name__} {self.name!r}: ndim must be 1, 2 or 3")
        for f in ("kernel", "stride", "padding", "dilation", "output_padding", "scale"):
            if hasattr(self, f):
                value = getattr(self, f)
                if value is None:  # pooling: stride defaults to the kernel
                    value = self.kernel
                object.__setattr__(self, f, _tuple(value, self.ndim, f"{self.name}.{f}"))


# ----------------------------------------------------------------------------- leaves


@dataclass(frozen=True, kw_only=True)
class Linear:
    """y = x W^T + b. weight (out_features, in_features), bias (out_features,)."""

    name: str
    in_features: int
    out_features: int
    bias: bool = True


@dataclass(frozen=True, kw_only=True)
class Conv(_Nd):
    """N-d cross-correlation, as torch.nn.ConvNd. weight (out, in, *kernel), bias (out,).

    Output size per axis: d' = floor((d + 2p - dil (k - 1) - 1) / s) + 1, which for dil = 1 is
    the lecture's floor((d + 2p - k) / s) + 1.
    """

    name: str
    ndim: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...] | int
    stride: tuple[int, ...] | int = 1
    padding: tuple[int, ...] | int = 0
    dilation: tuple[int, ...] | int = 1
    bias: bool = True


@dataclass(frozen=True, kw_only=True)
class ConvTranspose(_Nd):
    """N-d transposed convolution (learned upsampling), as torch.nn.ConvTransposeNd.

    weight (in, out, *kernel) -- note in before out, PyTorch's layout -- bias (out,).
    Output size per axis: d' = (d - 1) s - 2p + dil (k - 1) + output_padding + 1.
    """

    name: str
    ndim: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...] | int
    stride: tuple[int, ...] | int = 1
    padding: tuple[int, ...] | int = 0
    output_padding: tuple[int, ...] | int = 0
    dilation: tuple[int, ...] | int = 1
    bias: bool = True


@dataclass(frozen=True, kw_only=True)
class Pool(_Nd):
    """N-d max or average pooling. stride defaults to the kernel (torch's default).

    Max pooling pads with -inf; average pooling pads with zeros that count in the mean
    (torch's count_include_pad=True). A tie goes to the window's first maximum (see
    `Activation`, "Kinks and ties").
    """

    name: str
    ndim: int
    mode: str  # "max" or "avg"
    kernel: tuple[int, ...] | int
    stride: tuple[int, ...] | int | None = None
    padding: tuple[int, ...] | int = 0


UPSAMPLE_MODES = ("nearest", "linear")


@dataclass(frozen=True, kw_only=True)
class Upsample(_Nd):
    """Fixed ("traditional") N-d upsampling by an integer factor per axis, no parameters.

    Output size per axis: d' = d * scale. torch's F.interpolate(x, scale_factor=scale,
    mode=..., align_corners=False) semantics, per axis and separably (torch docs,
    torch.nn.functional.interpolate and torch.nn.Upsample):
        nearest  out[o] = in[floor(o / scale)]: each sample repeated scale times.
        linear   (linear in 1D, bilinear in 2D, trilinear in 3D) with half-pixel centres:
                 src = (o + 0.5) / scale - 0.5, clamped below at 0; i0 = floor(src),
                 i1 = min(i0 + 1, d - 1), lam = src - i0;
                 out[o] = (1 - lam) in[i0] + lam in[i1]. So the border samples repeat.
    Followed by a convolution it is the "resize-convolution" that Odena, Dumoulin & Olah
    (2016, "Deconvolution and Checkerboard Artifacts", Distill) propose in place of a
    transposed convolution.
    """

    name: str
    ndim: int
    scale: tuple[int, ...] | int = 2
    mode: str = "nearest"  # one of UPSAMPLE_MODES


@dataclass(frozen=True, kw_only=True)
class BatchNorm:
    """Batch normalisation over the channel axis (axis 1 of (N, C, ...)), as torch's BatchNormNd.

    Training: normalise with the batch mean and biased variance; update the running mean and
    the *unbiased* running variance with `momentum` (torch's convention:
    running = (1 - momentum) running + momentum batch). Evaluation: use the running statistics.
    Parameters weight (C,) = 1 and bias (C,) = 0; buffers running_mean (C,) = 0, running_var = 1.
    ndim 0 normalises features (N, C); ndim 1, 2, 3 normalise signals (N, C, *spatial).
    """

    name: str
    num_features: int
    ndim: int = 0
    eps: float = 1e-5
    momentum: float = 0.1


@dataclass(frozen=True, kw_only=True)
class Dropout:
    """Inverted dropout: train y = x * mask / (1 - p), mask ~ Bernoulli(1 - p); eval y = x.

    The mask, shape (N, *input_shape), comes from the caller (see `dropout_masks`).
    """

    name: str
    p: float


@dataclass(frozen=True, kw_only=True)
class Flatten:
    """(N, C, ...) -> (N, C * ...)."""

    name: str


@dataclass(frozen=True, kw_only=True)
class Activation:
    """An elementwise nonlinearity, or Maxout over groups of channels.

    leaky_relu: max(slope x, x), slope 0.1 by default (the lecture's choice; torch's is 0.01).
    maxout: channel axis 1 of size C * k -> C, out[:, c] = max_j in[:, c * k + j]: the max of k
    linear pieces that the preceding layer computes (Goodfellow et al., 2013).

    Kinks and ties. Exact zeros are common (zero-padded or unknown regions, sdf's unknown
    voxels, through a zero-bias conv), so every backend takes the same (sub)gradient there,
    torch's wherever the three can share it (tests/test_kinks.py checks all three in float64):
        relu        gradient 0 at x = 0 (torch's threshold, jax.nn.relu).
        leaky_relu  gradient `slope` at x = 0, for any slope: torch's leaky_relu takes the
                    slope for x <= 0; for slope > 1 the slope piece (x >= 0) takes 0 too.
                    Not the tie split (1 + slope) / 2 that a maximum(slope x, x) would give.
        maxout      tied maxima share the gradient evenly, 1 / (number tied) each: what the
                    max reductions torch.amax and jnp.max do natively (a first-index rule
                    would need an argmax-and-gather on both); the split does not depend on
                    the order of the pieces, and it is the subgradient of least norm.
        max pool    a tie in a window sends the whole gradient to its first maximum in
                    row-major window order: torch's max_pool keeps one index, the first, and
                    JAX's gradient, XLA's SelectAndScatter with `>=`, keeps the first of
                    equals. torch has no tie-splitting max pool (it would take unfold and
                    amax), so here the shared rule is the first index.
        l1 loss     |d| has the subgradient sign(d), 0 at d = 0 (torch's l1_loss; jnp.abs's
                    gradient at 0 is 1, so JAX writes it as d * sign(d)).
    """

    name: str
    fn: str
    slope: float = 0.1
    k: int = 2


# ----------------------------------------------------------------------------- containers


@dataclass(frozen=True, kw_only=True)
class Sequential:
    name: str
    layers: tuple = ()


@dataclass(frozen=True, kw_only=True)
class Parallel:
    """Branches on the same input, merged by "add" (residual) or "concat" (channel axis 1).

    An empty branch is the identity: `Parallel(branches=(body, Sequential(name="shortcut")),
    merge="add")` is a residual block, `(Sequential(name="skip"), inner)` with "concat" a UNet
    skip connection.
    """

    name: str
    branches: tuple[Sequential, ...]
    merge: str  # "add" or "concat"


Layer = (Linear | Conv | ConvTranspose | Pool | Upsample | BatchNorm | Dropout | Flatten
         | Activation | Sequential | Parallel)
LEAVES = (Linear, Conv, ConvTranspose, Pool, Upsample, BatchNorm, Dropout, Flatten, Activation)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A whole model: its layers, the input shape it was built for, and its loss."""

    arch: str
    input_shape: tuple[int, ...]
    body: Sequential
    loss: str  # one of LOSSES
    options: dict = field(default_factory=dict, compare=False)  # the knobs it was built with

    def layers(self) -> Iterator[tuple[str, Layer]]:
        return iter_layers(self.body)

    def shapes(self) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
        return infer_shapes(self.body, self.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return output_shape(self.body, self.input_shape)


# ----------------------------------------------------------------------------- walking


def join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def iter_layers(layer: Layer, prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """Every leaf in forward order, with its dotted path. The root's own name is not a prefix."""
    if isinstance(layer, Sequential):
        for child in layer.layers:
            yield from iter_layers(child, join(prefix, child.name))
    elif isinstance(layer, Parallel):
        for branch in layer.branches:
            yield from iter_layers(branch, join(prefix, branch.name))
    else:
        yield prefix, layer


# ----------------------------------------------------------------------------- shapes


def conv_out(d: int, k: int, s: int, p: int, dil: int = 1) -> int:
    """floor((d + 2p - dil (k - 1) - 1) / s) + 1."""
    return (d + 2 * p - dil * (k - 1) - 1) // s + 1


def conv_transpose_out(d: int, k: int, s: int, p: int, op: int = 0, dil: int = 1) -> int:
    """(d - 1) s - 2p + dil (k - 1) + op + 1."""
    return (d - 1) * s - 2 * p + dil * (k - 1) + op + 1


def _leaf_shape(layer, shape: tuple[int, ...], path: str) -> tuple[int, ...]:
    def fail(msg: str):
        raise ShapeError(f"layer {path or '<root>'} ({type(layer).__name__}): {msg}")

    if isinstance(layer, Linear):
        if len(shape) != 1 or shape[0] != layer.in_features:
            fail(f"expects input ({layer.in_features},), got {shape}")
        return (layer.out_features,)
    if isinstance(layer, (Conv, ConvTranspose, Pool)):
        if len(shape) != layer.ndim + 1:
            fail(f"expects a {layer.ndim}-D input (C, *{layer.ndim} spatial), got {shape}")
        channels = getattr(layer, "in_channels", shape[0])
        if shape[0] != channels:
            fail(f"expects {channels} input channels, got {shape[0]} (input {shape})")
        out = []
        for axis, d in enumerate(shape[1:]):
            k, s, p = layer.kernel[axis], layer.stride[axis], layer.padding[axis]
            if isinstance(layer, ConvTranspose):
                if layer.output_padding[axis] >= max(s, layer.dilation[axis]):
                    fail(f"output_padding {layer.output_padding[axis]} must be smaller than "
                         f"the stride or the dilation (as in torch)")
                o = conv_transpose_out(d, k, s, p, layer.output_padding[axis],
                                       layer.dilation[axis])
            else:
                dil = getattr(layer, "dilation", (1,) * layer.ndim)[axis]
                if isinstance(layer, Pool) and 2 * p > k:
                    fail(f"padding {p} is more than half the kernel {k}")
                o = conv_out(d, k, s, p, dil)
            if o < 1:
                fail(f"input {shape} is too small: axis {axis + 1} would have size {o}")
            out.append(o)
        return (getattr(layer, "out_channels", shape[0]), *out)
    if isinstance(layer, Upsample):
        if len(shape) != layer.ndim + 1:
            fail(f"expects a {layer.ndim}-D input (C, *{layer.ndim} spatial), got {shape}")
        if layer.mode not in UPSAMPLE_MODES:
            fail(f"unknown mode {layer.mode!r}; known: {', '.join(UPSAMPLE_MODES)}")
        if any(s < 1 for s in layer.scale):
            fail(f"scale {layer.scale} must be a positive integer on every axis")
        return (shape[0], *(d * s for d, s in zip(shape[1:], layer.scale)))
    if isinstance(layer, BatchNorm):
        if len(shape) != layer.ndim + 1 or shape[0] != layer.num_features:
            fail(f"expects ({layer.num_features}, *{layer.ndim} spatial), got {shape}")
        return shape
    if isinstance(layer, Dropout):
        return shape
    if isinstance(layer, Flatten):
        return (math.prod(shape),)
    if isinstance(layer, Activation):
        if layer.fn not in ACTIVATIONS:
            fail(f"unknown activation {layer.fn!r}; known: {', '.join(ACTIVATIONS)}")
        if layer.fn == "maxout":
            if shape[0] % layer.k:
                fail(f"maxout with k={layer.k} needs channels divisible by k, got {shape[0]}")
            return (shape[0] // layer.k, *shape[1:])
        return shape
    fail("is not a layer")


def infer_shapes(layer: Layer, shape: tuple[int, ...], prefix: str = ""):
    """[(path, input_shape, output_shape)] for every leaf in forward order."""
    rows = []
    _infer(layer, tuple(shape), prefix, rows)
    return rows


def _infer(layer, shape, path, rows):
    if isinstance(layer, Sequential):
        for child in layer.layers:
            shape = _infer(child, shape, join(path, child.name), rows)
        return shape
    if isinstance(layer, Parallel):
        outs = [_infer(b, shape, join(path, b.name), rows) for b in layer.branches]
        if layer.merge == "add":
            if any(o != outs[0] for o in outs):
                raise ShapeError(f"layer {path} (Parallel add): branch shapes differ: {outs}")
            return outs[0]
        if layer.merge == "concat":
            if any(o[1:] != outs[0][1:] for o in outs):
                raise ShapeError(f"layer {path} (Parallel concat): spatial shapes differ: "
                                 f"{outs}")
            return (sum(o[0] for o in outs), *outs[0][1:])
        raise ShapeError(f"layer {path}: merge must be 'add' or 'concat', got {layer.merge!r}")
    out = _leaf_shape(layer, shape, path)
    rows.append((path, shape, out))
    return out


def output_shape(layer: Layer, shape: tuple[int, ...]) -> tuple[int, ...]:
    return _infer(layer, tuple(shape), "", [])


# ----------------------------------------------------------------------------- parameters


def param_shapes(spec: ModelSpec) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(trainable parameter shapes, buffer shapes), both ordered by forward order."""
    params: dict[str, tuple] = {}
    buffers: dict[str, tuple] = {}
    for path, layer in spec.layers():
        if isinstance(layer, Linear):
            params[f"{path}.weight"] = (layer.out_features, layer.in_features)
            if layer.bias:
                params[f"{path}.bias"] = (layer.out_features,)
        elif isinstance(layer, Conv):
            params[f"{path}.weight"] = (layer.out_channels, layer.in_channels, *layer.kernel)
            if layer.bias:
                params[f"{path}.bias"] = (layer.out_channels,)
        elif isinstance(layer, ConvTranspose):
            params[f"{path}.weight"] = (layer.in_channels, layer.out_channels, *layer.kernel)
            if layer.bias:
                params[f"{path}.bias"] = (layer.out_channels,)
        elif isinstance(layer, BatchNorm):
            params[f"{path}.weight"] = (layer.num_features,)
            params[f"{path}.bias"] = (layer.num_features,)
            buffers[f"{path}.running_mean"] = (layer.num_features,)
            buffers[f"{path}.running_var"] = (layer.num_features,)
    return params, buffers


def dropout_layers(spec: ModelSpec) -> list[tuple[str, float, tuple[int, ...]]]:
    """[(path, p, input_shape)] for every dropout layer with p > 0."""
    return [(path, layer.p, inp) for (path, inp, _), (_, layer)
            in zip(spec.shapes(), spec.layers()) if isinstance(layer, Dropout) and layer.p > 0]


def dropout_masks(spec: ModelSpec, batch: int, rng) -> dict[str, object]:
    """Keep-masks drawn from the trial's canonical NumPy stream, one per dropout layer.

    Each is float32 of shape (batch, *input_shape), 1 where the unit is kept (probability
    1 - p), 0 where dropped. Every backend multiplies by mask / (1 - p), so one trial sees the
    same masks on every backend (SPEC 4.2).
    """
    import numpy as np

    return {path: (rng.random((batch, *shape)) >= p).astype(np.float32)
            for path, p, shape in dropout_layers(spec)}


def count_params(spec: ModelSpec) -> int:
    return sum(math.prod(s) for s in param_shapes(spec)[0].values())
