"""Analytic FLOPs over the backends.spec layer tree, for GFLOP/s and model FLOPs utilisation.

Matrix-product layers (per sample; multiply-accumulates count 2, biases are ignored):

    Linear          2 in out
    Conv            2 C_out prod(O) C_in prod(K)      O: the output's spatial size
    ConvTranspose   2 C_in prod(S) C_out prod(K)      S: the input's spatial size

Everything else is counted nominally, as `other`, per element: pooling prod(K) per output
(one compare or add per window member), BatchNorm 8 per element (mean 1, variance 3,
normalise 2, scale and shift 2), an activation or a dropout 1, a residual addition 1 per
added branch, flatten and concatenation 0.

A training step (forward + backward) counts 3x the forward: the backward of a product is two
products of the forward's size (dx and dW). Model FLOPs utilisation counts the matrix
products only, as PaLM's MFU does (Chowdhery et al. 2022, appendix B): `other` is memory
traffic, not arithmetic the roofline could bound.

    python -m benchmarks.flops     # the benchmarked models' FLOPs per sample
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from backends.spec import (
    Activation,
    BatchNorm,
    Conv,
    ConvTranspose,
    Dropout,
    Linear,
    ModelSpec,
    Parallel,
    Pool,
    Sequential,
    output_shape,
)

TRAIN_FACTOR = 3  # forward + backward = 3 x forward
BATCHNORM_PER_ELEMENT = 8


@dataclass(frozen=True)
class Count:
    """Forward FLOPs per sample: matrix products, and the nominal rest."""

    matmul: int = 0
    other: int = 0

    def __add__(self, o: Count) -> Count:
        return Count(self.matmul + o.matmul, self.other + o.other)

    @property
    def total(self) -> int:
        return self.matmul + self.other


def leaf(layer, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Count:
    """Forward FLOPs of one leaf for one sample; shapes exclude the batch."""
    if isinstance(layer, Linear):
        return Count(matmul=2 * layer.in_features * layer.out_features)
    if isinstance(layer, Conv):
        return Count(matmul=2 * math.prod(out_shape) * layer.in_channels
                     * math.prod(layer.kernel))
    if isinstance(layer, ConvTranspose):
        return Count(matmul=2 * math.prod(in_shape) * layer.out_channels
                     * math.prod(layer.kernel))
    if isinstance(layer, Pool):
        return Count(other=math.prod(out_shape) * math.prod(layer.kernel))
    if isinstance(layer, BatchNorm):
        return Count(other=BATCHNORM_PER_ELEMENT * math.prod(in_shape))
    if isinstance(layer, Activation) or (isinstance(layer, Dropout) and layer.p > 0):
        return Count(other=math.prod(in_shape))
    return Count()  # Flatten, Dropout(p=0)


def _walk(layer, shape: tuple[int, ...]) -> tuple[Count, tuple[int, ...]]:
    if isinstance(layer, Sequential):
        total = Count()
        for child in layer.layers:
            count, shape = _walk(child, shape)
            total += count
        return total, shape
    if isinstance(layer, Parallel):
        total = Count()
        for branch in layer.branches:
            total += _walk(branch, shape)[0]
        out = output_shape(layer, shape)
        if layer.merge == "add":
            total += Count(other=math.prod(out) * (len(layer.branches) - 1))
        return total, out
    out = output_shape(layer, shape)
    return leaf(layer, shape, out), out


def forward(spec: ModelSpec) -> Count:
    """Forward FLOPs of the whole model, per sample."""
    return _walk(spec.body, tuple(spec.input_shape))[0]


def train_step(spec: ModelSpec, batch: int) -> int:
    """The matrix-product FLOPs of one training step on `batch` samples: what MFU divides."""
    return TRAIN_FACTOR * forward(spec).matmul * batch


def main() -> None:
    from .models import MODELS, spec_for

    print("| model | input | params | forward MFLOP/sample (products) | other | "
          "training step GFLOP (batch 64, products) |")
    print("|---|---|---|---|---|---|")
    from backends.spec import count_params

    for name in MODELS:
        spec = spec_for(name)
        c = forward(spec)
        print(f"| {name} | {spec.input_shape} | {count_params(spec)} | {c.matmul / 1e6:.3f} "
              f"| {c.other / 1e6:.3f} | {train_step(spec, 64) / 1e9:.4f} |")


if __name__ == "__main__":
    main()
