"""JaxTrainer: the backend protocol (backends/base.py) over jitted pure functions.

State lives in four pytrees on one device: params and buffers (flat dicts keyed by canonical
path), the optax state, and a `jax.random` key for rng="native". Every method is a jitted pure
function of them; the trainer only swaps in the results. `train_step` is ONE `jax.jit` --
forward, `jax.value_and_grad`, the optax update of optim.step, new BatchNorm statistics --
that donates params, opt state and buffers, so XLA may update them in place. The jitted
functions are cached per (spec, optimizer, dtype): trainers of one configuration (a sweep's
seeds) share one trace and one compile.

Dropout: rng="canonical" takes the caller's masks (spec.dropout_masks draws them from the
trial's NumPy stream) and refuses a training pass without them; rng="native" splits the key
once per training pass and draws masks with jax.random.bernoulli inside the jitted function
(masks passed in anyway are used as given).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
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
from ..spec import ModelSpec, dropout_layers, param_shapes
from . import nn
from . import optim as opt


def _draw_masks(spec: ModelSpec, key, batch: int, dtype):
    """Native-mode keep-masks from `jax.random`: {path: (batch, *input_shape)}, 1 w.p. 1 - p."""
    layers = dropout_layers(spec)
    keys = jax.random.split(key, max(len(layers), 1))
    return {path: jax.random.bernoulli(k, 1 - p, (batch, *shape)).astype(dtype)
            for k, (path, p, shape) in zip(keys, layers)}


@functools.lru_cache(maxsize=32)
def _compiled(spec: ModelSpec, optimizer: OptimizerSpec, dtype: str) -> SimpleNamespace:
    """The jitted pure functions of one (spec, optimizer, dtype), shared by its trainers.

    Specs are frozen, hashable dataclasses, so a sweep's seeds (and the tests' rebuilds) reuse
    one trace and one XLA compile instead of paying seconds for each trainer.
    """
    np_dtype = np.dtype(dtype)

    def masks_for(masks, key, batch):
        """(masks, key): the given masks, or in native mode fresh ones and the next key."""
        if masks is None:
            key, sub = jax.random.split(key)
            masks = _draw_masks(spec, sub, batch, np_dtype)
        return masks, key

    def loss_fn(params, buffers, x, y, masks):
        out, new_buffers = nn.apply(spec, params, buffers, x, True, masks)
        return nn.loss(spec.loss, out, y), new_buffers

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(params, opt_state, buffers, x, y, masks, key):
        masks, key = masks_for(masks, key, x.shape[0])
        (loss, new_buffers), grads = grad_fn(params, buffers, x, y, masks)
        params, opt_state = opt.step(optimizer, params, grads, opt_state)
        return params, opt_state, new_buffers, loss, key

    def loss_and_grads(params, buffers, x, y, masks, key):
        masks, key = masks_for(masks, key, x.shape[0])
        (loss, new_buffers), grads = grad_fn(params, buffers, x, y, masks)
        return loss, grads, new_buffers, key

    def apply_gradients(params, opt_state, grads):
        return opt.step(optimizer, params, grads, opt_state)

    def forward(params, buffers, x, masks, key, train):
        if train:
            masks, key = masks_for(masks, key, x.shape[0])
        return nn.apply(spec, params, buffers, x, train, masks)[0], key

    def evaluate(params, buffers, x, y):
        out, _ = nn.apply(spec, params, buffers, x, False)
        return nn.loss(spec.loss, out, y), out

    def probe(params, buffers, x, y, masks, key, train):
        if train:
            masks, key = masks_for(masks, key, x.shape[0])

        def loss_of(x):
            outputs = {}
            out, _ = nn.apply(spec, params, buffers, x, train, masks, outputs)
            return (0.0 if y is None else nn.loss(spec.loss, out, y)), outputs

        if y is None:
            return loss_of(x)[1], None, key
        dx, outputs = jax.grad(loss_of, has_aux=True)(x)
        return outputs, dx, key

    return SimpleNamespace(
        # ONE jit for forward + backward + update; params, opt state, buffers, key donated
        train_step=jax.jit(train_step, donate_argnums=(0, 1, 2, 6)),
        loss_and_grads=jax.jit(loss_and_grads, donate_argnums=(1, 5)),
        apply_gradients=jax.jit(apply_gradients, donate_argnums=(0, 1)),
        forward=jax.jit(forward, static_argnames="train"),
        evaluate=jax.jit(evaluate),
        probe=jax.jit(probe, static_argnames="train"))


class JaxTrainer(Trainer):
    """The Trainer protocol on one JAX device; state as jax arrays, steps as jitted functions."""

    backend = "jax"

    def __init__(self, spec: ModelSpec, params: Arrays, buffers: Arrays,
                 optimizer: OptimizerSpec, *, device: str, device_name: str, dtype: str,
                 opt_state: dict | None = None, rng: str = "canonical", seed: int = 0):
        check_rng(rng)
        check_loss(spec.loss)
        self.spec, self.optimizer, self.rng, self.seed = spec, optimizer, rng, seed
        self.device, self.device_name, self.dtype = device, device_name, dtype
        self._dev = jax.devices(device)[0]  # "cpu" or "gpu": jax's platform names
        self._np_dtype = np.dtype(dtype)
        self._params, self._buffers = nn.build(spec, params, buffers, dtype=self._np_dtype,
                                               device=self._dev)
        try:
            self._fn = _compiled(spec, optimizer, dtype)
        except TypeError:  # an unhashable spec (a list inside, say): trace it uncached
            self._fn = _compiled.__wrapped__(spec, optimizer, dtype)
        if opt_state is None:
            self._opt = self._put(opt.build(optimizer, self._params))
        else:
            self._opt = self._put(opt.load_state(optimizer, self._params, opt_state))
        self._dropouts, self._output_shape = dropout_layers(spec), spec.output_shape
        self._shapes = {k: p.shape for k, p in self._params.items()}
        # (param paths, buffer paths) in forward order: jax sorts a dict's keys
        self._order = tuple(tuple(shapes) for shapes in param_shapes(spec))
        self._key = self._put(jax.random.key(seed))

    # ------------------------------------------------------------------ host <-> device

    def _put(self, tree):
        return jax.device_put(tree, self._dev)  # commits: the jitted functions run there

    def _x(self, x):
        check_input(x, self.spec.input_shape)
        return self._put(np.asarray(x, self._np_dtype))  # (N, *spec.input_shape)

    def _y(self, y, batch: int):
        check_targets(y, batch, self._output_shape, self.spec.loss)
        if self.spec.loss == "cross_entropy":
            return self._put(np.asarray(y, np.int32))  # (N,) class labels
        return self._put(np.asarray(y, self._np_dtype))  # (N, *spec.output_shape)

    def _masks(self, masks, batch: int):
        """Device masks for a training pass; None in native mode means draw them inside."""
        check_masks(self._dropouts, masks, batch, native=self.rng == "native")
        if masks is None and self.rng == "native":
            return None
        return self._put({path: np.asarray(masks[path], self._np_dtype)
                          for path, _, _ in self._dropouts})

    # ------------------------------------------------------------------ the protocol

    def forward(self, x, *, train=False, masks=None):
        x = self._x(x)
        masks = self._masks(masks, x.shape[0]) if train else None
        out, key = self._fn.forward(self._params, self._buffers, x, masks, self._key, train=train)
        self._key = key  # a native training pass draws from the stream; nothing else changes
        return np.array(out)

    def probe(self, x, y=None, *, train=True, masks=None):
        x = self._x(x)
        y = None if y is None else self._y(y, x.shape[0])
        masks = self._masks(masks, x.shape[0]) if train else None
        outputs, dx, key = self._fn.probe(self._params, self._buffers, x, y, masks, self._key,
                                          train=train)
        self._key = key  # as forward: a native training pass draws from the stream
        outputs = {path: np.array(outputs[path]) for path, _ in self.spec.layers()}
        return outputs, None if dx is None else np.array(dx)

    def evaluate(self, x, y):
        x = self._x(x)
        loss, out = self._fn.evaluate(self._params, self._buffers, x, self._y(y, x.shape[0]))
        return float(loss), np.array(out)

    def loss_and_grads(self, x, y, masks=None):
        x = self._x(x)
        y, masks = self._y(y, x.shape[0]), self._masks(masks, x.shape[0])
        loss, grads, self._buffers, self._key = self._fn.loss_and_grads(
            self._params, self._buffers, x, y, masks, self._key)
        return float(loss), {k: np.array(grads[k]) for k in self._order[0]}

    def apply_gradients(self, grads):
        check_arrays("gradients", grads, self._shapes)
        grads = self._put({k: np.array(grads[k], self._np_dtype) for k in self._params})
        self._params, self._opt = self._fn.apply_gradients(self._params, self._opt, grads)

    def train_step(self, x, y, masks=None):
        x = self._x(x)
        y, masks = self._y(y, x.shape[0]), self._masks(masks, x.shape[0])
        self._params, self._opt, self._buffers, loss, self._key = self._fn.train_step(
            self._params, self._opt, self._buffers, x, y, masks, self._key)
        return float(loss)

    def params(self):
        return {k: np.array(self._params[k]) for k in self._order[0]}

    def buffers(self):
        return {k: np.array(self._buffers[k]) for k in self._order[1]}

    def opt_state(self):
        return opt.export_state(self.optimizer, self._params, self._opt)
