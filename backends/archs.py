"""Architectures built from the spec's layers, with depth and width as parameters.

Every builder takes the input shape (no batch) and the number of outputs, plus the ablation
knobs of `Knobs`, and returns a `Sequential`. `build_model` wraps one in a `ModelSpec` and
checks its shapes, so an impossible input (a UNet whose input does not halve `depth` times,
say) is refused here with the layer that cannot take it.

    mlp        Flatten -> depth x [Linear, BN?, act, Dropout?] -> Linear
    lenet      2 x [conv, BN?, act, pool 2] -> fc 120 -> fc 84 -> head  (1D, 2D or 3D input)
    vgg        stages of depth x [3x3 conv, BN?, act] + 2x2 max pool, channels doubling -> fc
    resnet     stem, stages of depth residual blocks (He et al., 2016), global avg pool, head;
               skips=False gives the plain twin with the same layers and no shortcuts
    unet       depth levels of two 3x3 convs, 2x max pool down, 2x up (model.upsample), skip
               concatenation (Ronneberger et al., 2015); 2D or 3D; skips=False is `encdec`;
               the up path is a 2x2 transposed conv, or with upsample=nearest/linear a fixed
               2x upsampling + 3x3 conv (resize-convolution, Odena et al., 2016)
    encdec     the UNet without its skips: an encoder-decoder
    inception  stem, depth Inception blocks (Szegedy et al., 2015: 1x1, 1x1->3x3,
               1x1->5x5 and pool->1x1 branches, 1x1 reductions), global avg pool, head
"""

from __future__ import annotations

from dataclasses import dataclass

from .fields import at_least, checked, choice, unit_interval
from .spec import (
    ACTIVATIONS,
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
    Upsample,
    conv_out,
    output_shape,
)

UPSAMPLE_PATHS = ("transposed", "nearest", "linear")  # Knobs.upsample: the unet's up path


@dataclass(frozen=True, kw_only=True)
class Knobs:
    """The ablation knobs every builder reads, each declared once: harness's `model:` section
    (harness/config/schema.py `ModelConfig`) is this class plus arch and init."""

    activation: str = choice("relu", ACTIVATIONS)
    slope: float = checked(0.1, unit_interval, "in [0, 1)")  # leaky_relu: max(slope x, x)
    maxout_k: int = checked(2, at_least(2), ">= 2")  # linear pieces per maxout unit
    batchnorm: bool = False
    dropout: float = checked(0.0, unit_interval, "in [0, 1)")  # in the fully connected part
    depth: int | None = checked(None, at_least(1), ">= 1")  # None: the builder's default
    width: int | None = checked(None, at_least(1), ">= 1")  # None: the builder's default
    skips: bool = True  # residual shortcuts (resnet) and skip concatenations (unet)
    # unet/encdec's 2x up path: None or transposed, a 2x2 transposed conv; nearest or linear,
    # a fixed 2x upsampling then a 3x3 conv (None keeps older trials' hashes)
    upsample: str | None = choice(None, UPSAMPLE_PATHS)


# Each arch's (depth, width) when the knobs leave them None: its depth (layers, stages, levels
# or blocks; lenet has none) and width (units, or the first stage's channels; lenet's is a
# channel multiplier). `harness describe archs` and the resolved config read them here.
ARCH_DEFAULTS = {"mlp": (2, 64), "lenet": (None, 1), "vgg": (2, 16), "resnet": (2, 16),
                 "unet": (2, 8), "encdec": (2, 8), "inception": (2, 16)}


def _depth_width(arch: str, k: Knobs) -> tuple:
    depth, width = ARCH_DEFAULTS[arch]
    return (k.depth if k.depth is not None else depth,
            k.width if k.width is not None else width)


def _act(k: Knobs, name: str = "act") -> Activation:
    return Activation(name=name, fn=k.activation, slope=k.slope, k=k.maxout_k)


def _pieces(k: Knobs) -> int:
    """Maxout takes k linear pieces per unit: the layer before it has k times the outputs."""
    return k.maxout_k if k.activation == "maxout" else 1


def _dense(name: str, fin: int, fout: int, k: Knobs, dropout: bool = True) -> Sequential:
    # no bias before BatchNorm: its gradient is zero up to rounding, which Adam would amplify
    layers = [Linear(name="fc", in_features=fin, out_features=fout * _pieces(k),
                     bias=not k.batchnorm)]
    if k.batchnorm:
        layers.append(BatchNorm(name="bn", num_features=fout * _pieces(k)))
    layers.append(_act(k))
    if dropout and k.dropout > 0:
        layers.append(Dropout(name="drop", p=k.dropout))
    return Sequential(name=name, layers=tuple(layers))


def _conv(name: str, nd: int, cin: int, cout: int, k: Knobs, kernel: int = 3, stride: int = 1,
          act: bool = True) -> list:
    """[conv (same padding), BN?, act?]; the conv has no bias when BatchNorm follows."""
    pieces = _pieces(k) if act else 1
    layers = [Conv(name=f"{name}", ndim=nd, in_channels=cin, out_channels=cout * pieces,
                   kernel=kernel, stride=stride, padding=kernel // 2, bias=not k.batchnorm)]
    if k.batchnorm:
        layers.append(BatchNorm(name=f"{name}_bn", num_features=cout * pieces, ndim=nd))
    if act:
        layers.append(_act(k, f"{name}_act"))
    return layers


def _head(nd: int, channels: int, spatial: tuple[int, ...], n_out: int, k: Knobs) -> list:
    """Global average pool, flatten, (dropout), linear head."""
    layers = [Pool(name="gap", ndim=nd, mode="avg", kernel=spatial), Flatten(name="flatten")]
    if k.dropout > 0:
        layers.append(Dropout(name="drop", p=k.dropout))
    return [*layers, Linear(name="head", in_features=channels, out_features=n_out)]


def mlp(input_shape, n_out, k: Knobs) -> Sequential:
    depth, width = _depth_width("mlp", k)
    fin = 1
    for d in input_shape:
        fin *= d
    layers = [Flatten(name="flatten")] if len(input_shape) > 1 else []
    for i in range(depth):
        layers.append(_dense(f"layer{i + 1}", fin if i == 0 else width, width, k))
    layers.append(Linear(name="head", in_features=width if depth else fin, out_features=n_out))
    return Sequential(name="mlp", layers=tuple(layers))


def lenet(input_shape, n_out, k: Knobs) -> Sequential:
    c, spatial = input_shape[0], input_shape[1:]
    nd, w = len(spatial), _depth_width("lenet", k)[1]
    kernel = 5 if min(spatial) >= 16 else 3
    ch = (6 * w, 16 * w)
    layers, cin = [], c
    for i, cout in enumerate(ch):
        layers += _conv(f"conv{i + 1}", nd, cin, cout, k, kernel=kernel)
        if min(spatial) >= 2:
            layers.append(Pool(name=f"pool{i + 1}", ndim=nd, mode="max", kernel=2))
            spatial = tuple(conv_out(d, 2, 2, 0) for d in spatial)
        cin = cout
    flat = cin
    for d in spatial:
        flat *= d
    layers += [Flatten(name="flatten"), _dense("fc1", flat, 120, k), _dense("fc2", 120, 84, k),
               Linear(name="head", in_features=84, out_features=n_out)]
    return Sequential(name="lenet", layers=tuple(layers))


def vgg(input_shape, n_out, k: Knobs) -> Sequential:
    c, spatial = input_shape[0], input_shape[1:]
    nd, (depth, w) = len(spatial), _depth_width("vgg", k)
    stages = max(1, min(3, min(spatial).bit_length() - 1))  # halve while the input allows
    layers, cin = [], c
    for s in range(stages):
        cout = w * 2**s
        convs = []
        for j in range(depth):
            convs += _conv(f"conv{j + 1}", nd, cin, cout, k)
            cin = cout
        convs.append(Pool(name="pool", ndim=nd, mode="max", kernel=2))
        spatial = tuple(conv_out(d, 2, 2, 0) for d in spatial)
        layers.append(Sequential(name=f"stage{s + 1}", layers=tuple(convs)))
    flat = cin
    for d in spatial:
        flat *= d
    layers += [Flatten(name="flatten"), _dense("fc1", flat, 4 * w, k),
               Linear(name="head", in_features=4 * w, out_features=n_out)]
    return Sequential(name="vgg", layers=tuple(layers))


def _basic_block(name, nd, cin, cout, stride, k: Knobs) -> list:
    body = [*_conv("conv1", nd, cin, cout, k, stride=stride),
            *_conv("conv2", nd, cout, cout, k, act=False)]
    if not k.skips:
        return [Sequential(name=name, layers=(*body, _act(k, "out_act")))]
    shortcut = []
    if stride != 1 or cin != cout:  # projection shortcut, He et al. 2016 option B
        shortcut = _conv("proj", nd, cin, cout, k, kernel=1, stride=stride, act=False)
    block = Parallel(name="res", merge="add",
                     branches=(Sequential(name="body", layers=tuple(body)),
                               Sequential(name="shortcut", layers=tuple(shortcut))))
    return [Sequential(name=name, layers=(block, _act(k, "out_act")))]


def resnet(input_shape, n_out, k: Knobs) -> Sequential:
    if k.activation == "maxout":  # the activation after the addition would halve the channels
        raise ValueError("resnet does not take activation maxout: the activation after each "
                         "residual addition must keep the channel count")
    c, spatial = input_shape[0], input_shape[1:]
    nd, (depth, w) = len(spatial), _depth_width("resnet", k)
    stages = max(1, min(3, min(spatial).bit_length() - 1))
    layers = _conv("stem", nd, c, w, k)
    cin = w
    for s in range(stages):
        cout = w * 2**s
        for b in range(depth):
            stride = 2 if (s > 0 and b == 0) else 1
            layers += _basic_block(f"stage{s + 1}_block{b + 1}", nd, cin, cout, stride, k)
            if stride == 2:
                spatial = tuple(conv_out(d, 3, 2, 1) for d in spatial)
            cin = cout
    layers += _head(nd, cin, spatial, n_out, k)
    return Sequential(name="resnet", layers=tuple(layers))


def _up(nd, cin, cout, k: Knobs) -> list:
    """The 2x up path, (cin, *S) -> (cout, *2S): a 2x2 stride-2 transposed conv, or a fixed
    upsampling then a 3x3 same-size conv with the same channels, bias and no activation
    (Odena, Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts": resize, then
    convolve). The conv has 3^nd / 2^nd times the transposed conv's weights."""
    if k.upsample in (None, "transposed"):
        return [ConvTranspose(name="up", ndim=nd, in_channels=cin, out_channels=cout,
                              kernel=2, stride=2)]
    return [Upsample(name="up", ndim=nd, scale=2, mode=k.upsample),
            Conv(name="up_conv", ndim=nd, in_channels=cin, out_channels=cout, kernel=3,
                 padding=1)]


def _unet_level(i, depth, nd, cin, w, k: Knobs) -> Sequential:
    c = w * 2**i
    enc = [*_conv("enc1", nd, cin, c, k), *_conv("enc2", nd, c, c, k)]
    if i == depth:
        return Sequential(name=f"level{i}", layers=tuple(enc))
    inner = Sequential(name="inner", layers=(
        Pool(name="down", ndim=nd, mode="max", kernel=2),
        _unet_level(i + 1, depth, nd, c, w, k),
        *_up(nd, 2 * c, c, k)))
    if k.skips:
        merged = [Parallel(name="skip", merge="concat",
                           branches=(Sequential(name="identity"), inner))]
        cdec = 2 * c
    else:
        merged, cdec = [inner], c
    dec = [*_conv("dec1", nd, cdec, c, k), *_conv("dec2", nd, c, c, k)]
    return Sequential(name=f"level{i}", layers=(*enc, *merged, *dec))


def unet(input_shape, n_out, k: Knobs) -> Sequential:
    """Dense output (n_out, *spatial); each spatial size must divide by 2**depth."""
    c, nd = input_shape[0], len(input_shape) - 1
    depth, w = _depth_width("unet", k)
    return Sequential(name="unet", layers=(
        _unet_level(0, depth, nd, c, w, k),
        Conv(name="head", ndim=nd, in_channels=w, out_channels=n_out, kernel=1)))


def encdec(input_shape, n_out, k: Knobs) -> Sequential:
    from dataclasses import replace

    return unet(input_shape, n_out, replace(k, skips=False))


def _inception_block(name, nd, cin, c, k: Knobs) -> Sequential:
    """Four branches concatenated: c + c + c/2 + c/2 channels."""
    r = max(1, c // 2)  # the 1x1 reductions halve the channels before the wide kernels
    b1 = _conv("conv1x1", nd, cin, c, k, kernel=1)
    b2 = [*_conv("reduce", nd, cin, r, k, kernel=1), *_conv("conv3", nd, r, c, k, kernel=3)]
    b3 = [*_conv("reduce", nd, cin, r, k, kernel=1), *_conv("conv5", nd, r, r, k, kernel=5)]
    b4 = [Pool(name="pool", ndim=nd, mode="max", kernel=3, stride=1, padding=1),
          *_conv("proj", nd, cin, r, k, kernel=1)]
    branches = tuple(Sequential(name=n, layers=tuple(b))
                     for n, b in (("b1", b1), ("b2", b2), ("b3", b3), ("b4", b4)))
    return Sequential(name=name, layers=(Parallel(name="mix", merge="concat",
                                                  branches=branches),))


def inception(input_shape, n_out, k: Knobs) -> Sequential:
    c, spatial = input_shape[0], input_shape[1:]
    nd, (depth, w) = len(spatial), _depth_width("inception", k)
    layers = _conv("stem", nd, c, w, k)
    cin = w
    for b in range(depth):
        layers.append(_inception_block(f"block{b + 1}", nd, cin, w, k))
        cin = 2 * w + 2 * max(1, w // 2)
    layers += _head(nd, cin, spatial, n_out, k)
    return Sequential(name="inception", layers=tuple(layers))


ARCHS = {"mlp": mlp, "lenet": lenet, "vgg": vgg, "resnet": resnet, "unet": unet,
         "encdec": encdec, "inception": inception}


def build_model(arch: str, input_shape, n_out: int, loss: str, **knobs) -> ModelSpec:
    """Build and shape-check a model; raises ValueError/ShapeError naming what is wrong."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHS)}")
    k = Knobs(**knobs)
    body = ARCHS[arch](tuple(input_shape), n_out, k)
    output_shape(body, tuple(input_shape))  # raises ShapeError with the layer path
    return ModelSpec(arch=arch, input_shape=tuple(input_shape), body=body, loss=loss,
                     options=dict(knobs))
