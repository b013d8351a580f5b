"""The NumPy model: the spec walked onto the hand-written layers of layers.py.

    build(spec, params, buffers, *, dtype) -> (params, buffers)
    apply(spec, params, buffers, x, train, masks=None, outputs=None, *, rng=None)
        -> (out, new_buffers, backward)
    loss(name, out, y) -> (mean loss, backward)

NumPy has no autograd, so `apply` and `loss` return, beside their value, the function that
pulls a gradient back through them, as `jax.vjp` does: apply's `backward(dout) -> (dx,
grads)`, loss's `backward() -> dout`. The forward pass records a tree shaped like the spec (a
list per Sequential, a list of branches per Parallel, one entry per leaf holding its backward
and its cache); the backward pass walks that record in reverse. A Parallel hands its input to
every branch and merges by "add" (its backward gives every branch the same gradient and sums
their input gradients) or "concat" on axis 1 (its backward splits the gradient by channels).

The layers are looked up in layers.py at each call, so a test may monkeypatch one.

References: `jax.vjp` (a value and its pullback); cs231n assignment 2 `layers.py` (the
forward/backward/cache shape).
"""

from __future__ import annotations

import numpy as np

from .. import spec as S
from ..base import check_arrays, missing_mask
from . import layers


def build(spec: S.ModelSpec, params: dict, buffers: dict, *, dtype) -> tuple[dict, dict]:
    """(params, buffers): copies of the canonical arrays in `dtype`, in the spec's order.

    The NumPy model is its arrays. StateError unless the keys and shapes are the spec's.
    """
    pshapes, bshapes = S.param_shapes(spec)
    check_arrays("params", params, pshapes)
    check_arrays("buffers", buffers, bshapes)
    return ({k: np.array(params[k], dtype=dtype) for k in pshapes},
            {k: np.array(buffers[k], dtype=dtype) for k in bshapes})


def apply(spec: S.ModelSpec, params: dict, buffers: dict, x: np.ndarray, train: bool,
          masks: dict | None = None, outputs: dict | None = None, *, rng=None):
    """x (N, *spec.input_shape) -> (out (N, *spec.output_shape), new_buffers, backward).

    new_buffers: BatchNorm's running statistics after a training pass (in evaluation, the
    same arrays). masks {dropout path: keep-mask (N, *input shape)} are needed in training
    mode, unless `rng` (a np.random.Generator: rng="native") draws them. A dict `outputs`
    receives every leaf's output, keyed by its path. backward(dout (N, *output_shape)) ->
    (dx (N, *input_shape), {param path: gradient}).
    """
    ctx = {"params": params, "buffers": buffers, "train": train, "masks": masks, "rng": rng,
           "new": {}, "outputs": outputs}
    out, record = _forward(spec.body, x, "", ctx)

    def backward(dout):
        grads: dict = {}
        dx = _backward(spec.body, dout, record, grads)
        return dx, grads

    return out, {**buffers, **ctx["new"]}, backward


def loss(name: str, out: np.ndarray, y: np.ndarray):
    """(mean loss, backward): backward() -> d(loss)/d(out), shaped like out.

    out (N, ...); y (N,) integer class labels for cross_entropy, else shaped like out.
    """
    forward, back = layers.LOSSES[name]
    value, cache = forward(out, np.asarray(y))
    return value, lambda: back(cache)


# ----------------------------------------------------------------------------- the walk


def _mask(path: str, p: float, x: np.ndarray, ctx) -> np.ndarray:
    masks, rng = ctx["masks"], ctx["rng"]
    if masks is not None and path in masks:
        return np.asarray(masks[path])  # its shape was checked with base.check_masks
    if rng is None:
        raise missing_mask(path, p, x.shape)
    return (rng.random(x.shape) >= p).astype(x.dtype)


def _leaf(layer, x, path, ctx):
    """(out, (backward, param names, cache)) for one leaf."""
    P = ctx["params"]
    if isinstance(layer, (S.Linear, S.Conv, S.ConvTranspose)):
        w, b = P[f"{path}.weight"], P.get(f"{path}.bias")
        if isinstance(layer, S.Linear):
            out, cache = layers.linear_forward(x, w, b)
            back = layers.linear_backward
        elif isinstance(layer, S.Conv):
            out, cache = layers.conv_forward(x, w, b, layer.stride, layer.padding,
                                             layer.dilation)
            back = layers.conv_backward
        else:
            out, cache = layers.conv_transpose_forward(x, w, b, layer.stride, layer.padding,
                                                       layer.output_padding, layer.dilation)
            back = layers.conv_transpose_backward
        return out, (back, (f"{path}.weight", f"{path}.bias"), cache)
    if isinstance(layer, S.BatchNorm):
        train, mean, var = ctx["train"], f"{path}.running_mean", f"{path}.running_var"
        out, cache = layers.batchnorm_forward(
            x, P[f"{path}.weight"], P[f"{path}.bias"], ctx["buffers"][mean],
            ctx["buffers"][var], train=train, eps=layer.eps, momentum=layer.momentum)
        if train:
            ctx["new"][mean], ctx["new"][var] = cache["running"]
        return out, (layers.batchnorm_backward, (f"{path}.weight", f"{path}.bias"), cache)
    if isinstance(layer, S.Pool):
        out, cache = layers.pool_forward(x, layer.mode, layer.kernel, layer.stride,
                                         layer.padding)
        return out, (layers.pool_backward, (), cache)
    if isinstance(layer, S.Upsample):
        out, cache = layers.upsample_forward(x, layer.scale, layer.mode)
        return out, (layers.upsample_backward, (), cache)
    if isinstance(layer, S.Dropout):
        if not ctx["train"] or layer.p == 0:
            return x, None  # identity
        out, cache = layers.dropout_forward(x, _mask(path, layer.p, x, ctx), layer.p)
        return out, (layers.dropout_backward, (), cache)
    if isinstance(layer, S.Flatten):
        out, cache = layers.flatten_forward(x)
        return out, (layers.flatten_backward, (), cache)
    if isinstance(layer, S.Activation):
        forward, back = layers.ACTIVATIONS[layer.fn]
        if layer.fn == "leaky_relu":
            out, cache = forward(x, layer.slope)
        elif layer.fn == "maxout":
            out, cache = forward(x, layer.k)
        else:
            out, cache = forward(x)
        return out, (back, (), cache)
    raise TypeError(f"layer {path!r}: {type(layer).__name__} is not a spec layer")


def _forward(layer, x, path, ctx):
    if isinstance(layer, S.Sequential):
        record = []
        for child in layer.layers:
            x, rec = _forward(child, x, S.join(path, child.name), ctx)
            record.append(rec)
        return x, record
    if isinstance(layer, S.Parallel):
        outs, records = [], []
        for branch in layer.branches:
            out, rec = _forward(branch, x, S.join(path, branch.name), ctx)
            outs.append(out)
            records.append(rec)
        if layer.merge == "add":
            return sum(outs[1:], outs[0]), (layer.merge, records, None)
        sizes = [o.shape[1] for o in outs]
        return np.concatenate(outs, axis=1), (layer.merge, records, sizes)  # (N, sum C_i, *S)
    out, record = _leaf(layer, x, path, ctx)
    if ctx["outputs"] is not None:
        ctx["outputs"][path] = out
    return out, record


def _backward(layer, dout, record, grads):
    """Accumulates parameter gradients into `grads`; returns the input gradient."""
    if isinstance(layer, S.Sequential):
        for child, rec in zip(reversed(layer.layers), reversed(record)):
            dout = _backward(child, dout, rec, grads)
        return dout
    if isinstance(layer, S.Parallel):
        merge, records, sizes = record
        if merge == "add":
            parts = [dout] * len(records)
        else:
            parts = np.split(dout, np.cumsum(sizes)[:-1], axis=1)  # (N, C_i, *S) each
        dxs = [_backward(b, g, r, grads) for b, g, r in zip(layer.branches, parts, records)]
        return sum(dxs[1:], dxs[0])
    if record is None:  # an identity leaf
        return dout
    back, names, cache = record
    dx, leaf_grads = back(dout, cache)
    for name, g in zip(names, leaf_grads):
        if g is not None:
            grads[name] = g
    return dx
