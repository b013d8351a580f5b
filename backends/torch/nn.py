"""The model spec as a torch.nn.Module tree, named so that `state_dict()` keys ARE canonical paths.

    build(spec, params, buffers, *, dtype, device, generator=None) -> module
    apply(spec, module, buffers, x, train, masks=None, outputs=None) -> (out, buffers)
    loss(name, out, y) -> mean loss

Every spec node becomes one module, registered under its spec `name` in its parent:
`Sequential` -> layers.Sequential (children in order), `Parallel` -> layers.Parallel (branches
by name), and each leaf -> the torch.nn layer that computes it (or one of layers.py). So the
module path of a leaf is the spec path of the leaf, and its parameters are `<path>.weight` /
`<path>.bias`, with no renaming anywhere (STYLE 10). The one key torch adds that is not
canonical is BatchNorm's `num_batches_tracked`, which `build` tolerates and nothing exports.

Its forward is `module(x, masks)`: x (N, *spec.input_shape) -> (N, *spec.output_shape), with
masks {dropout path: keep-mask (N, *input shape)} or None.

References: torch.nn docs for ConvNd, ConvTransposeNd, MaxPoolNd, AvgPoolNd, BatchNormNd;
torch.func.functional_call (a forward on buffers other than the module's own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import spec as S
from ..base import check_arrays, check_loss
from . import layers

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_BN = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def build(spec: S.ModelSpec, params: dict, buffers: dict, *, dtype: torch.dtype,
          device: torch.device, generator: torch.Generator | None = None) -> nn.Module:
    """The module tree of `spec.body` in `dtype` on `device`, holding the canonical arrays.

    The root's own name is not a prefix (as in spec paths). `generator` (rng="native") draws
    the dropout masks a training pass is not given. StateError unless the keys and shapes
    are the spec's; a `num_batches_tracked` that came along with a torch state_dict is
    tolerated (and ignored: with a float momentum torch never reads it).
    """
    module = _node(spec.body, "", generator).to(device, dtype)
    pshapes, bshapes = S.param_shapes(spec)
    state = module.state_dict(keep_vars=True)
    torch_only = [k for k in state if k not in pshapes and k not in bshapes]
    check_arrays("params", params, pshapes, ignore=torch_only)
    check_arrays("buffers", buffers, bshapes, ignore=torch_only)
    with torch.no_grad():
        for given, names in ((params, pshapes), (buffers, bshapes)):
            for k in names:
                state[k].copy_(torch.as_tensor(given[k]))
    if [k for k, _ in module.named_parameters()] != list(pshapes):
        # add_module replaces a same-named sibling, so a duplicate name in the spec shows here
        raise ValueError(f"spec {spec.arch!r}: module parameters are not the spec's, in its "
                         f"order (duplicate sibling names?)")
    return module


def apply(spec: S.ModelSpec, module: nn.Module, buffers: dict, x: torch.Tensor, train: bool,
          masks: dict | None = None, outputs: dict | None = None):
    """x (N, *spec.input_shape) -> (out (N, *spec.output_shape), buffers), on `buffers`.

    torch.func.functional_call swaps `buffers` in for the module's own for this call only: a
    training pass updates them in place (pass copies to keep the module's), and they come
    back as the new buffers. A dict `outputs` receives every leaf's output (detached),
    keyed by its path, from forward hooks (module paths are spec paths).
    """
    module.train(train)
    hooks = []
    if outputs is not None:

        def keep(path):
            def hook(_module, _args, out):
                outputs[path] = out.detach()
            return hook

        hooks = [module.get_submodule(path).register_forward_hook(keep(path))
                 for path, _ in spec.layers()]
    try:
        out = torch.func.functional_call(module, buffers, (x, masks))
    finally:
        for h in hooks:
            h.remove()
    return out, buffers


def loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over every element (and the batch), as SPEC 2's L2, cross-entropy and L1.

    out (N, ...); y (N,) int64 class labels for cross_entropy, else shaped like out.
    """
    check_loss(name)
    if name == "mse":
        return F.mse_loss(out, y)
    if name == "cross_entropy":
        return F.cross_entropy(out, y)  # out (N, K) logits, y (N,) int64
    return F.l1_loss(out, y)


# ----------------------------------------------------------------------------- the tree


def _activation(layer: S.Activation) -> nn.Module:
    if layer.fn == "sigmoid":
        return nn.Sigmoid()
    if layer.fn == "tanh":
        return nn.Tanh()
    if layer.fn == "relu":
        return nn.ReLU()
    if layer.fn == "leaky_relu":
        # For slope <= 1, max(slope x, x) == leaky_relu(x, slope): x for x > 0, slope x below,
        # and its gradient at 0 is the slope.
        if layer.slope <= 1:
            return nn.LeakyReLU(layer.slope)
        return layers.SteepLeakyReLU(layer.slope)
    if layer.fn == "maxout":
        return layers.Maxout(layer.k)
    raise ValueError(f"unknown activation {layer.fn!r}; known: {', '.join(S.ACTIVATIONS)}")


def _leaf(layer, path: str, generator: torch.Generator | None) -> nn.Module:
    if isinstance(layer, S.Linear):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if isinstance(layer, S.Conv):
        return _CONV[layer.ndim](layer.in_channels, layer.out_channels, layer.kernel,
                                 stride=layer.stride, padding=layer.padding,
                                 dilation=layer.dilation, bias=layer.bias)
    if isinstance(layer, S.ConvTranspose):
        return _CONV_T[layer.ndim](layer.in_channels, layer.out_channels, layer.kernel,
                                   stride=layer.stride, padding=layer.padding,
                                   output_padding=layer.output_padding, bias=layer.bias,
                                   dilation=layer.dilation)
    if isinstance(layer, S.Pool):
        if layer.mode == "max":
            return _MAXPOOL[layer.ndim](layer.kernel, stride=layer.stride, padding=layer.padding)
        if layer.mode == "avg":
            # Zero padding counts in the mean, as the spec says (torch's default, made explicit).
            return _AVGPOOL[layer.ndim](layer.kernel, stride=layer.stride, padding=layer.padding,
                                        count_include_pad=True)
        raise ValueError(f"pool {path!r}: mode must be 'max' or 'avg', got {layer.mode!r}")
    if isinstance(layer, S.Upsample):
        return layers.upsample(layer.ndim, layer.scale, layer.mode)
    if isinstance(layer, S.BatchNorm):
        # ndim 0 normalises (N, C) features: BatchNorm1d takes both (N, C) and (N, C, L).
        return _BN[layer.ndim](layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, S.Dropout):
        return layers.Dropout(path, layer.p, generator)
    if isinstance(layer, S.Flatten):
        return nn.Flatten(start_dim=1)  # (N, C, ...) -> (N, C * ...)
    if isinstance(layer, S.Activation):
        return _activation(layer)
    raise TypeError(f"layer {path!r}: {type(layer).__name__} is not a spec layer")


def _node(layer, path: str, generator) -> nn.Module:
    if isinstance(layer, S.Sequential):
        return layers.Sequential([(c.name, _node(c, S.join(path, c.name), generator))
                                  for c in layer.layers])
    if isinstance(layer, S.Parallel):
        return layers.Parallel([(b.name, _node(b, S.join(path, b.name), generator))
                                for b in layer.branches], layer.merge)
    return _leaf(layer, path, generator)
