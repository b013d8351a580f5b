"""Canonical parameters and their initialisation, once, from a seeded NumPy generator.

Canonical parameters are an ordered `dict[str, np.ndarray]`, float32, keyed by the dotted path
of the model spec, in PyTorch's layouts (linear out x in, conv out x in x k..., transposed conv
in x out x k...). Every backend converts from and to this form, so a trial starts from the very
same weights on every backend (SPEC 4.1).

Schemes (weights only; biases are zero, BatchNorm scale 1 and offset 0):
    gaussian  std = `std` (default 0.01), the lecture's "small random numbers"
    lecun     std = 1 / sqrt(fan_in)            (LeCun et al., 1998, "Efficient BackProp")
    xavier    std = sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, 2010)
    he        std = sqrt(2 / fan_in)              (He et al., 2015)

The lecture writes He's rule as `w = np.random.randn(n) / sqrt(2.0/n)`: that divides by the
factor and is a typo for `* sqrt(2.0/n)`; we implement the paper's rule.

fan_in of a linear layer is in_features and fan_out out_features; of a conv, in_channels x
kernel volume and out_channels x kernel volume (torch's convention); of a transposed conv,
in_channels x kernel volume and out_channels x kernel volume (the roles as the layer is used,
not as torch's weight layout would suggest).
"""

from __future__ import annotations

import math

import numpy as np

from .spec import BatchNorm, Conv, ConvTranspose, Linear, ModelSpec

INITS = ("gaussian", "lecun", "xavier", "he")


def fans(layer) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight-carrying layer."""
    if isinstance(layer, Linear):
        return layer.in_features, layer.out_features
    kvol = math.prod(layer.kernel)
    return layer.in_channels * kvol, layer.out_channels * kvol


def weight_std(scheme: str, fan_in: int, fan_out: int, std: float = 0.01) -> float:
    if scheme == "gaussian":
        return std
    if scheme == "lecun":
        return 1.0 / math.sqrt(fan_in)
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "he":
        return math.sqrt(2.0 / fan_in)
    raise ValueError(f"unknown init {scheme!r}; known: {', '.join(INITS)}")


def init_params(spec: ModelSpec, scheme: str, rng: np.random.Generator, std: float = 0.01,
                dtype=np.float32) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(params, buffers): weights drawn in forward order from `rng`, everything else constant."""
    params: dict[str, np.ndarray] = {}
    buffers: dict[str, np.ndarray] = {}
    for path, layer in spec.layers():
        if isinstance(layer, (Linear, Conv, ConvTranspose)):
            shape = ((layer.out_features, layer.in_features) if isinstance(layer, Linear) else
                     (layer.out_channels, layer.in_channels, *layer.kernel)
                     if isinstance(layer, Conv) else
                     (layer.in_channels, layer.out_channels, *layer.kernel))
            s = weight_std(scheme, *fans(layer), std=std)
            params[f"{path}.weight"] = (rng.standard_normal(shape) * s).astype(dtype)
            if layer.bias:
                n = layer.out_features if isinstance(layer, Linear) else layer.out_channels
                params[f"{path}.bias"] = np.zeros(n, dtype)
        elif isinstance(layer, BatchNorm):
            c = layer.num_features
            params[f"{path}.weight"] = np.ones(c, dtype)
            params[f"{path}.bias"] = np.zeros(c, dtype)
            buffers[f"{path}.running_mean"] = np.zeros(c, dtype)
            buffers[f"{path}.running_var"] = np.ones(c, dtype)
    return params, buffers
