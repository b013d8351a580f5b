"""The models every step benchmark trains: one table, so asv, the scripts and the gate agree.

    mlp-mario      mlp (2 x 64, ReLU) on mario's (3,) positions, one output, MSE
    mlp-digits     mlp (2 x 64, ReLU) on (1, 8, 8) digits, 10 classes, cross-entropy
    lenet-digits   LeNet (3x3 kernels at this size) on (1, 8, 8) digits
    resnet-digits  a small ResNet (width 16, one block per stage, 3 stages) on (1, 8, 8)

All train with plain SGD (lr 0.01) on batches of 64, He initialisation, float32. Inputs are
standard normal and labels uniform, drawn once from a fixed seed: the timings do not depend
on what the data say.
"""

from __future__ import annotations

import functools

import numpy as np

from backends.archs import build_model
from backends.init import init_params
from backends.optim import OptimizerSpec

BATCH = 64
LR = 0.01
MODELS = {
    "mlp-mario": dict(arch="mlp", input_shape=(3,), n_out=1, loss="mse"),
    "mlp-digits": dict(arch="mlp", input_shape=(1, 8, 8), n_out=10, loss="cross_entropy"),
    "lenet-digits": dict(arch="lenet", input_shape=(1, 8, 8), n_out=10,
                         loss="cross_entropy"),
    "resnet-digits": dict(arch="resnet", input_shape=(1, 8, 8), n_out=10,
                          loss="cross_entropy", depth=1),
}
SGD = OptimizerSpec(name="sgd", lr=LR)


@functools.cache
def spec_for(name: str):
    m = dict(MODELS[name])
    return build_model(m.pop("arch"), m.pop("input_shape"), m.pop("n_out"), m.pop("loss"),
                       **m)


def state(name: str, seed: int = 0):
    """(params, buffers): canonical He-initialised weights, the same on every backend."""
    return init_params(spec_for(name), "he", np.random.default_rng(seed))


def batch(name: str, n: int = BATCH, seed: int = 0):
    """(x (n, *input_shape) float32, y): int64 labels for cross-entropy, else (n, 1) float32."""
    spec, rng = spec_for(name), np.random.default_rng(seed + 1)
    x = rng.standard_normal((n, *spec.input_shape), dtype=np.float32)
    if spec.loss == "cross_entropy":
        return x, rng.integers(0, spec.output_shape[0], n).astype(np.int64)
    return x, rng.standard_normal((n, *spec.output_shape), dtype=np.float32)


def trainer(name: str, module, device: str = "cpu"):
    """A trainer of model `name` on the backend `module` (from common.require)."""
    params, buffers = state(name)
    return module.build(spec_for(name), params, buffers, SGD, device=device)
