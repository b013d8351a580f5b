"""The torch layers the spec needs beyond torch.nn's own: containers that thread the dropout
masks, inverted dropout with a handed-in mask, maxout, and leaky ReLU with a slope above 1;
and `upsample`, the spec's Upsample as torch.nn.Upsample.

nn.py builds the module tree from these and torch.nn's layers. The containers'
`forward(x, masks)` threads the dropout masks, a dict {dropout path: keep-mask
(N, *input_shape)}, down to the `Dropout` leaves; every other leaf is called as `m(x)`.

References: Srivastava et al. 2014 (dropout); Goodfellow et al. 2013 (Maxout); torch docs,
torch.nn.Upsample and torch.nn.functional.interpolate (align_corners=False).
"""

from __future__ import annotations

import torch
from torch import nn

from ..base import missing_mask


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
            mask = masks[self.path]  # its shape was checked with base.check_masks
        elif self.generator is not None:
            mask = (torch.rand(x.shape, generator=self.generator, device=x.device,
                               dtype=x.dtype) >= self.p).to(x.dtype)
        else:
            raise missing_mask(self.path, self.p, tuple(x.shape))
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


_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def upsample(ndim: int, scale: tuple[int, ...], mode: str) -> nn.Module:
    """(N, C, *S) -> (N, C, *(S * scale)): F.interpolate(x, scale_factor=scale, mode=...).

    The spec's "linear" is torch's linear, bilinear or trilinear by ndim, with
    align_corners=False (half-pixel centres, src = (o + 0.5) / scale - 0.5 clamped at 0);
    "nearest" is torch's nearest (src = floor(o / scale)), which takes no align_corners.
    """
    factor = tuple(float(s) for s in scale)
    if mode == "nearest":
        return nn.Upsample(scale_factor=factor, mode="nearest")
    if mode == "linear":
        return nn.Upsample(scale_factor=factor, mode=_LINEAR[ndim], align_corners=False)
    raise ValueError(f"upsample mode must be 'nearest' or 'linear', got {mode!r}")


_TAKES_MASKS = (Sequential, Parallel, Dropout)
