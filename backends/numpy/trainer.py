"""NumpyTrainer: the backend protocol (backends/base.py) over nn.py and its hand-written backward.

State is NumPy arrays in canonical form, in the trainer's dtype: params and buffers (flat dicts
keyed by canonical path) and the canonical optimizer state. `train_step` is `loss_and_grads`
then `apply_gradients`: there is nothing to fuse. rng="native" draws the dropout masks the
caller does not pass from a np.random.Generator seeded with `seed`.
"""

from __future__ import annotations

import numpy as np

from ..base import (
    Arrays,
    Trainer,
    check_arrays,
    check_input,
    check_loss,
    check_masks,
    check_rng,
    check_targets,
)
from ..optim import OptimizerSpec
from ..spec import ModelSpec, dropout_layers
from . import nn
from . import optim as opt


class NumpyTrainer(Trainer):
    """The Trainer protocol on the host; every op's backward is written out in layers.py."""

    backend = "numpy"

    def __init__(self, spec: ModelSpec, params: Arrays, buffers: Arrays,
                 optimizer: OptimizerSpec, *, device: str, device_name: str, dtype: str,
                 opt_state: dict | None = None, rng: str = "canonical", seed: int = 0):
        check_rng(rng)
        check_loss(spec.loss)
        self.spec, self.optimizer, self.rng, self.seed = spec, optimizer, rng, seed
        self.device, self.device_name, self.dtype = device, device_name, dtype
        self._np_dtype = np.dtype(dtype)
        self._params, self._buffers = nn.build(spec, params, buffers, dtype=self._np_dtype)
        if opt_state is None:
            self._opt = opt.build(optimizer, self._params)
        else:
            self._opt = opt.load_state(optimizer, self._params, opt_state)
        self._rng = np.random.default_rng(seed) if rng == "native" else None
        self._dropouts, self._output_shape = dropout_layers(spec), spec.output_shape
        self._shapes = {k: p.shape for k, p in self._params.items()}

    # ------------------------------------------------------------------ checking arrays

    def _x(self, x) -> np.ndarray:
        check_input(x, self.spec.input_shape)
        return np.asarray(x, dtype=self._np_dtype)  # (N, *spec.input_shape)

    def _y(self, y, batch: int) -> np.ndarray:
        check_targets(y, batch, self._output_shape, self.spec.loss)
        return np.asarray(y)

    def _masks(self, masks, batch: int) -> Arrays | None:
        check_masks(self._dropouts, masks, batch, native=self.rng == "native")
        return masks

    # ------------------------------------------------------------------ the protocol

    def forward(self, x, *, train=False, masks=None):
        x = self._x(x)
        masks = self._masks(masks, len(x)) if train else None
        return nn.apply(self.spec, self._params, self._buffers, x, train, masks,
                        rng=self._rng)[0]

    def probe(self, x, y=None, *, train=True, masks=None):
        x = self._x(x)
        y = None if y is None else self._y(y, len(x))
        masks = self._masks(masks, len(x)) if train else None
        outputs: Arrays = {}
        out, _, backward = nn.apply(self.spec, self._params, self._buffers, x, train, masks,
                                    outputs, rng=self._rng)  # the new statistics are dropped
        if y is None:
            return outputs, None
        _, loss_backward = nn.loss(self.spec.loss, out, y)
        return outputs, backward(loss_backward())[0]

    def evaluate(self, x, y):
        x = self._x(x)
        y = self._y(y, len(x))
        out = nn.apply(self.spec, self._params, self._buffers, x, False)[0]
        return float(nn.loss(self.spec.loss, out, y)[0]), out

    def loss_and_grads(self, x, y, masks=None):
        x = self._x(x)
        y, masks = self._y(y, len(x)), self._masks(masks, len(x))
        out, buffers, backward = nn.apply(self.spec, self._params, self._buffers, x, True,
                                          masks, rng=self._rng)
        loss, loss_backward = nn.loss(self.spec.loss, out, y)
        _, grads = backward(loss_backward())
        self._buffers = buffers
        return float(loss), {k: grads[k] for k in self._params}

    def apply_gradients(self, grads):
        check_arrays("gradients", grads, self._shapes)
        self._params, self._opt = opt.step(self.optimizer, self._params, grads, self._opt)

    def train_step(self, x, y, masks=None):
        loss, grads = self.loss_and_grads(x, y, masks)
        self.apply_gradients(grads)
        return loss

    def params(self):
        return {k: v.copy() for k, v in self._params.items()}

    def buffers(self):
        return {k: v.copy() for k, v in self._buffers.items()}

    def opt_state(self):
        return opt.export_state(self.optimizer, self._params, self._opt)
