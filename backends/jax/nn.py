"""The JAX model: pure functions of (params, buffers, x), the spec walked onto layers.py.

    build(spec, params, buffers, *, dtype, device) -> (params, buffers)
    apply(spec, params, buffers, x, train, masks=None, outputs=None) -> (out, new_buffers)
    loss(name, out, y) -> mean loss

Nothing here holds state: BatchNorm's new running statistics come back as `new_buffers`,
dropout masks come in as arguments, so the whole of it can sit inside one `jax.jit` and be
differentiated by `jax.value_and_grad`. Params and buffers are flat dicts keyed by the
canonical dotted paths (backends/spec.py), in PyTorch's layouts.

References: PyTorch `torch.nn.functional` (the semantics matched).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..base import check_arrays, check_loss, missing_mask
from ..spec import (
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
    join,
    param_shapes,
)
from . import layers


def build(spec: ModelSpec, params: dict, buffers: dict, *, dtype: np.dtype,
          device: jax.Device) -> tuple[dict, dict]:
    """(params, buffers) on `device`, in `dtype` and the spec's order.

    StateError unless the keys and shapes are the spec's. The host copies (np.array) make
    sure the device buffers, which the train step donates, never alias the caller's arrays.
    """
    pshapes, bshapes = param_shapes(spec)
    check_arrays("params", params, pshapes)
    check_arrays("buffers", buffers, bshapes)
    return jax.device_put(({k: np.array(params[k], dtype) for k in pshapes},
                           {k: np.array(buffers[k], dtype) for k in bshapes}), device)


def apply(spec: ModelSpec, params, buffers, x, train: bool, masks=None, outputs=None):
    """(N, *spec.input_shape) -> ((N, *spec.output_shape), new_buffers). Pure.

    `masks` maps each dropout path with p > 0 to its keep-mask (N, *input_shape); they are
    needed in training mode only. `new_buffers` holds BatchNorm's updated running statistics
    in training mode and the same arrays in evaluation mode. A dict `outputs` receives every
    leaf's output, keyed by its path (for diagnostics).
    """
    new_buffers = dict(buffers)
    out = _run(spec.body, "", params, buffers, new_buffers, x, train, masks or {}, outputs)
    return out, new_buffers


def loss(name, out, y):
    """Mean loss over the batch: mse and l1 over every element; cross_entropy of int labels.

    out (N, ...); y (N, ...) float for mse / l1, (N,) integer class labels for cross_entropy.
    """
    check_loss(name)
    if name == "mse":
        return jnp.mean(jnp.square(out - y))
    if name == "l1":
        # |d| with the subgradient sign(d), 0 at d = 0 as torch's l1_loss: jnp.abs's is 1 there
        diff = out - y
        return jnp.mean(diff * lax.stop_gradient(jnp.sign(diff)))
    logp = jax.nn.log_softmax(out, axis=1)  # (N, classes)
    picked = jnp.take_along_axis(logp, y.astype(jnp.int32)[:, None], axis=1)  # (N, 1)
    return -jnp.mean(picked)


# ----------------------------------------------------------------------------- the tree


def _leaf(layer, path, params, buffers, new_buffers, x, train, masks):
    w, b = params.get(f"{path}.weight"), params.get(f"{path}.bias")
    if isinstance(layer, Linear):
        return layers.linear(x, w, b)
    if isinstance(layer, Conv):
        return layers.conv(x, w, b, layer.stride, layer.padding, layer.dilation)
    if isinstance(layer, ConvTranspose):
        return layers.conv_transpose(x, w, b, layer.stride, layer.padding,
                                     layer.output_padding, layer.dilation)
    if isinstance(layer, Pool):
        return layers.pool(x, layer.mode, layer.kernel, layer.stride, layer.padding)
    if isinstance(layer, Upsample):
        return layers.upsample(x, layer.scale, layer.mode)
    if isinstance(layer, BatchNorm):
        rm, rv = f"{path}.running_mean", f"{path}.running_var"
        y, new_buffers[rm], new_buffers[rv] = layers.batchnorm(
            x, w, b, buffers[rm], buffers[rv], train=train, momentum=layer.momentum,
            eps=layer.eps)
        return y
    if isinstance(layer, Dropout):
        if not train or layer.p == 0:
            return x
        if path not in masks:
            raise missing_mask(path, layer.p, x.shape)
        return layers.dropout(x, masks[path], layer.p)
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)  # (N, C, ...) -> (N, C * ...)
    if isinstance(layer, Activation):
        return layers.activation(x, layer.fn, layer.slope, layer.k)
    raise TypeError(f"layer {path!r}: {type(layer).__name__} is not a spec layer")


def _run(layer, path, params, buffers, new_buffers, x, train, masks, outputs=None):
    """The walk over the spec tree; with `outputs`, every leaf's output is kept there."""
    if isinstance(layer, Sequential):
        for child in layer.layers:
            x = _run(child, join(path, child.name), params, buffers, new_buffers, x, train,
                     masks, outputs)
        return x
    if isinstance(layer, Parallel):
        outs = [_run(br, join(path, br.name), params, buffers, new_buffers, x, train, masks,
                     outputs) for br in layer.branches]  # an empty branch is the identity
        if layer.merge == "add":
            return sum(outs[1:], outs[0])
        if layer.merge == "concat":
            return jnp.concatenate(outs, axis=1)  # (N, sum C_i, *spatial)
        raise ValueError(f"layer {path!r}: merge must be 'add' or 'concat'")
    out = _leaf(layer, path, params, buffers, new_buffers, x, train, masks)
    if outputs is not None:
        outputs[path] = out
    return out
