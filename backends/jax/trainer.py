"""JaxTrainer: the backend protocol (backends/base.py) over jitted pure functions.

State lives in four pytrees on one device: params and buffers (flat dicts keyed by canonical
path), the optax state, and a `jax.random` key for rng="native". Every method is a jitted pure
function of them; the trainer only swaps in the results. `train_step` is ONE `jax.jit` --
forward, `jax.value_and_grad`, optax update, `optax.apply_updates`, new BatchNorm statistics --
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
import optax

from ..base import Arrays, Trainer
from ..optim import OptimizerSpec
from ..spec import ModelSpec, dropout_layers, param_shapes
from . import nn
from . import optim as jax_optim


def _check_keys(what: str, got: dict, shapes: dict) -> None:
    missing, extra = sorted(set(shapes) - set(got)), sorted(set(got) - set(shapes))
    if missing or extra:
        raise ValueError(f"{what}: missing {missing}, unexpected {extra}")
    for k, shape in shapes.items():
        if tuple(np.shape(got[k])) != tuple(shape):
            raise ValueError(f"{what}: {k} has shape {np.shape(got[k])}, expected {shape}")


@functools.lru_cache(maxsize=32)
def compiled(spec: ModelSpec, optimizer: OptimizerSpec, dtype: str) -> SimpleNamespace:
    """The jitted pure functions of one (spec, optimizer, dtype), shared by its trainers.

    Specs are frozen, hashable dataclasses, so a sweep's seeds (and the tests' rebuilds) reuse
    one trace and one XLA compile instead of paying seconds for each trainer.
    """
    tx, np_dtype = jax_optim.transform(optimizer), np.dtype(dtype)

    def masks_for(masks, key, batch):
        """(masks, key): the given masks, or in native mode fresh ones and the next key."""
        if masks is None:
            key, sub = jax.random.split(key)
            masks = nn.draw_masks(spec, sub, batch, np_dtype)
        return masks, key

    def loss_fn(params, buffers, x, y, masks):
        out, new_buffers = nn.apply(spec, params, buffers, x, True, masks)
        return nn.loss(spec.loss, out, y), new_buffers

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(params, opt_state, buffers, x, y, masks, key):
        masks, key = masks_for(masks, key, x.shape[0])
        (loss, new_buffers), grads = grad_fn(params, buffers, x, y, masks)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, new_buffers, loss, key

    def loss_and_grads(params, buffers, x, y, masks, key):
        masks, key = masks_for(masks, key, x.shape[0])
        (loss, new_buffers), grads = grad_fn(params, buffers, x, y, masks)
        return loss, grads, new_buffers, key

    def apply_gradients(params, opt_state, grads):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

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
        tx=tx,
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
        if rng not in ("canonical", "native"):
            raise ValueError(f"rng must be 'canonical' or 'native', got {rng!r}")
        p_shapes, b_shapes = param_shapes(spec)
        _check_keys("params", params, p_shapes)
        _check_keys("buffers", buffers, b_shapes)
        self.spec, self.optimizer, self.dtype, self.rng = spec, optimizer, dtype, rng
        self.device, self.device_name = device, device_name
        self._dev = jax.devices(device)[0]  # "cpu" or "gpu": jax's platform names
        self._np_dtype = np.dtype(dtype)
        self._dropouts = {path: (p, shape) for path, p, shape in dropout_layers(spec)}
        try:
            self._fn = compiled(spec, optimizer, dtype)
        except TypeError:  # an unhashable spec (a list inside, say): trace it uncached
            self._fn = compiled.__wrapped__(spec, optimizer, dtype)
        put = self._put
        self._order = (tuple(p_shapes), tuple(b_shapes))  # forward order; jax sorts dict keys
        # np.array copies: the donated device buffers can never alias the caller's arrays
        self._params = put({k: np.array(params[k], self._np_dtype) for k in p_shapes})
        self._buffers = put({k: np.array(buffers[k], self._np_dtype) for k in b_shapes})
        if opt_state is None:
            state = self._fn.tx.init(self._params)
        else:
            state = jax_optim.from_canonical(optimizer, opt_state, self._params)
        self._opt_state = put(state)
        self._key = put(jax.random.key(seed))

    # ------------------------------------------------------------------ host <-> device

    def _put(self, tree):
        return jax.device_put(tree, self._dev)  # commits: the jitted functions run there

    def _x(self, x):
        x = np.asarray(x, self._np_dtype)  # (N, *spec.input_shape)
        if x.shape[1:] != tuple(self.spec.input_shape):
            raise ValueError(f"input shape {x.shape[1:]} != the model's {self.spec.input_shape}")
        return self._put(x)

    def _y(self, y):
        if self.spec.loss == "cross_entropy":
            return self._put(np.asarray(y, np.int32))  # (N,) class labels
        return self._put(np.asarray(y, self._np_dtype))  # (N, *spec.output_shape)

    def _masks(self, masks, batch: int):
        """Device masks for a training pass; None in native mode means draw them inside."""
        if masks is None and self.rng == "native":
            return None
        masks = masks or {}
        for path, (p, shape) in self._dropouts.items():
            if path not in masks:
                raise ValueError(f"dropout layer {path!r} (p={p}) needs a mask in training "
                                 f"mode with rng='canonical'; pass spec.dropout_masks(...)")
            if np.shape(masks[path]) != (batch, *shape):
                raise ValueError(f"mask for {path!r} has shape {np.shape(masks[path])}, "
                                 f"expected {(batch, *shape)}")
        return self._put({path: np.asarray(masks[path], self._np_dtype)
                          for path in self._dropouts})

    # ------------------------------------------------------------------ the protocol

    def forward(self, x, *, train=False, masks=None):
        x = self._x(x)
        masks = self._masks(masks, x.shape[0]) if train else None
        out, key = self._fn.forward(self._params, self._buffers, x, masks, self._key, train=train)
        self._key = key  # a native training pass draws from the stream; nothing else changes
        return np.array(out)

    def probe(self, x, y=None, *, train=True, masks=None):
        x = self._x(x)
        masks = self._masks(masks, x.shape[0]) if train else None
        y = None if y is None else self._y(y)
        outputs, dx, key = self._fn.probe(self._params, self._buffers, x, y, masks, self._key,
                                          train=train)
        self._key = key  # as forward: a native training pass draws from the stream
        outputs = {path: np.array(outputs[path]) for path, _ in self.spec.layers()}
        return outputs, None if dx is None else np.array(dx)

    def evaluate(self, x, y):
        loss, out = self._fn.evaluate(self._params, self._buffers, self._x(x), self._y(y))
        return float(loss), np.array(out)

    def loss_and_grads(self, x, y, masks=None):
        x = self._x(x)
        loss, grads, self._buffers, self._key = self._fn.loss_and_grads(
            self._params, self._buffers, x, self._y(y), self._masks(masks, x.shape[0]),
            self._key)
        return float(loss), {k: np.array(grads[k]) for k in self._order[0]}

    def apply_gradients(self, grads):
        _check_keys("grads", grads, {k: v.shape for k, v in self._params.items()})
        grads = self._put({k: np.array(grads[k], self._np_dtype) for k in self._params})
        self._params, self._opt_state = self._fn.apply_gradients(self._params, self._opt_state,
                                                              grads)

    def train_step(self, x, y, masks=None):
        x = self._x(x)
        self._params, self._opt_state, self._buffers, loss, self._key = self._fn.train_step(
            self._params, self._opt_state, self._buffers, x, self._y(y),
            self._masks(masks, x.shape[0]), self._key)
        return float(loss)

    def params(self):
        return {k: np.array(self._params[k]) for k in self._order[0]}

    def buffers(self):
        return {k: np.array(self._buffers[k]) for k in self._order[1]}

    def opt_state(self):
        return jax_optim.to_canonical(self.optimizer, self._opt_state)
