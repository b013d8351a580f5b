"""The model spec as a torch.nn.Module tree, named so that `state_dict()` keys ARE canonical paths.

Every spec node becomes one module, registered under its spec `name` in its parent:
`Sequential` -> `Sequential` (children in order), `Parallel` -> `Parallel` (branches by name),
and each leaf -> the torch.nn layer that computes it. So the module path of a leaf is the spec
path of the leaf, and its parameters are `<path>.weight` / `<path>.bias`, with no renaming
anywhere (STYLE 10). The one key torch adds that is not canonical is BatchNorm's
`num_batches_tracked`; callers select canonical keys with `backends.spec.param_shapes`.

The containers' `forward(x, masks)` threads the dropout masks, a dict {dropout path: keep-mask
(N, *input_shape)}, down to the `Dropout` leaves; every other leaf is called as `m(x)`.

References: torch.nn docs for ConvNd, ConvTransposeNd, MaxPoolNd, AvgPoolNd, BatchNormNd;
Goodfellow et al. 2013 (Maxout).
"""

from __future__ import annotations

import torch
from torch import nn

from .. import spec as S

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_BN = {0: nn.BatchNorm1d, 1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


class Sequential(nn.Module):
    """Children in registration order; dropout masks passed through to every container/leaf."""

    def __init__(self, children: list[tuple[str, nn.Module]]):
        super().__init__()
        for name, child in children:
            self.add_module(name, child)

    def forward(self, x: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
        for child in self.children():
            if isinstance(child, _TAKES_MASKS):
                x = child(x, masks)
            else:
                x = child(x)
        return x


class Parallel(nn.Module):
    """Branches on the same input, merged by "add" or by concatenation on the channel axis 1.

    An empty branch is an empty `Sequential`, whose forward returns its input: the identity.
    """

    def __init__(self, branches: list[tuple[str, Sequential]], merge: str):
        super().__init__()
        if merge not in ("add", "concat"):
            raise ValueError(f"merge must be 'add' or 'concat', got {merge!r}")
        self.merge = merge
        for name, branch in branches:
            self.add_module(name, branch)

    def forward(self, x: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
        outs = [branch(x, masks) for branch in self.children()]
        if self.merge == "add":
            out = outs[0]
            for o in outs[1:]:
                out = out + o
            return out
        return torch.cat(outs, dim=1)  # (N, sum C_i, *spatial)


class Dropout(nn.Module):
    """Inverted dropout with the keep-mask handed in: train y = x * mask / (1 - p); eval y = x.

    `masks[path]` (N, *input_shape) comes from the trial's canonical NumPy stream (SPEC 4.2).
    Without a mask, a `generator` (rng="native") draws one as torch.rand(...) >= p, the same
    convention as `backends.spec.dropout_masks`; with neither, it is an error, never a silent
    skip of dropout.
    """

    def __init__(self, path: str, p: float, generator: torch.Generator | None = None):
        super().__init__()
        self.path, self.p, self.generator = path, float(p), generator

    def forward(self, x: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if masks is not None and self.path in masks:
            mask = masks[self.path]
            if mask.shape != x.shape:  # never let a wrong mask broadcast
                raise ValueError(f"dropout layer {self.path!r}: mask shape {tuple(mask.shape)}, "
                                 f"expected {tuple(x.shape)}")
        elif self.generator is not None:
            mask = (torch.rand(x.shape, generator=self.generator, device=x.device,
                               dtype=x.dtype) >= self.p).to(x.dtype)
        else:
            raise ValueError(f"dropout layer {self.path!r}: training needs its mask (rng is "
                             f"'canonical'; pass masks from backends.spec.dropout_masks)")
        return x * mask / (1 - self.p)


class Maxout(nn.Module):
    """(N, C * k, *spatial) -> (N, C, *spatial): out[:, c] = max_j in[:, c * k + j]."""

    def __init__(self, k: int):
        super().__init__()
        self.k = int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, ck, *spatial = x.shape
        x = x.reshape(n, ck // self.k, self.k, *spatial)  # (N, C, k, *spatial)
        return x.amax(dim=2)  # (N, C, *spatial); tied maxima share the gradient evenly


class SteepLeakyReLU(nn.Module):
    """max(slope x, x) for slope > 1, where it is no longer torch's leaky_relu (slope x, x<0).

    Written with `where`, not `torch.maximum`, whose gradient at the tie x = 0 would be
    (1 + slope) / 2: here it is the slope, as for nn.LeakyReLU (backends/spec.py, "Kinks and
    ties").
    """

    def __init__(self, slope: float):
        super().__init__()
        self.slope = float(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, self.slope * x, x)


_TAKES_MASKS = (Sequential, Parallel, Dropout)


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
        return SteepLeakyReLU(layer.slope)
    if layer.fn == "maxout":
        return Maxout(layer.k)
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
    if isinstance(layer, S.BatchNorm):
        # ndim 0 normalises (N, C) features: BatchNorm1d takes both (N, C) and (N, C, L).
        return _BN[layer.ndim](layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, S.Dropout):
        return Dropout(path, layer.p, generator)
    if isinstance(layer, S.Flatten):
        return nn.Flatten(start_dim=1)  # (N, C, ...) -> (N, C * ...)
    if isinstance(layer, S.Activation):
        return _activation(layer)
    raise TypeError(f"layer {path!r}: {type(layer).__name__} is not a spec layer")


def _node(layer, path: str, generator) -> nn.Module:
    if isinstance(layer, S.Sequential):
        return Sequential([(c.name, _node(c, S.join(path, c.name), generator))
                           for c in layer.layers])
    if isinstance(layer, S.Parallel):
        return Parallel([(b.name, _node(b, S.join(path, b.name), generator))
                         for b in layer.branches], layer.merge)
    return _leaf(layer, path, generator)


def build_module(spec: S.ModelSpec, generator: torch.Generator | None = None) -> Sequential:
    """The module tree of `spec.body`; the root's own name is not a prefix (as in spec paths).

    Its forward is `module(x, masks)`: x (N, *spec.input_shape) -> (N, *spec.output_shape).
    Parameters are torch's default init; load canonical ones with `load_canonical`.
    """
    return _node(spec.body, "", generator)


def canonical_names(spec: S.ModelSpec) -> tuple[list[str], list[str]]:
    """(parameter paths, buffer paths) in forward order, from the spec alone."""
    params, buffers = S.param_shapes(spec)
    return list(params), list(buffers)


def load_canonical(module: nn.Module, spec: S.ModelSpec, params: dict, buffers: dict) -> None:
    """Copy canonical arrays into the module, in its dtype and on its device.

    The keys must be exactly the spec's; a `num_batches_tracked` that came along with a torch
    state_dict is tolerated (and ignored: with a float momentum torch never reads it).
    """
    pnames, bnames = canonical_names(spec)
    state = module.state_dict(keep_vars=True)
    for kind, names, given in (("parameter", pnames, params), ("buffer", bnames, buffers)):
        missing = [k for k in names if k not in given]
        extra = [k for k in given if k not in names and k not in state]
        if missing or extra:
            raise ValueError(f"canonical {kind}s do not match the spec {spec.arch!r}: "
                           f"missing {missing}, unexpected {extra}")
        for k in names:
            target = state[k]
            value = torch.as_tensor(given[k])
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{kind} {k}: shape {tuple(value.shape)}, the spec says "
                                 f"{tuple(target.shape)}")
            with torch.no_grad():
                target.copy_(value)
