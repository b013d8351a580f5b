"""NumpyTrainer: walks the model spec with the hand-written ops of nn.py.

The forward pass returns, beside the output, a record tree shaped like the spec (a list per
Sequential, a list of branches per Parallel, one entry per leaf holding its backward and its
cache); the backward pass walks that record in reverse. A Parallel hands its input to every
branch and merges by "add" (its backward gives every branch the same gradient and sums their
input gradients) or "concat" on axis 1 (its backward splits the gradient by channels).
"""

from __future__ import annotations

import numpy as np

from .. import spec as S
from ..base import Arrays, Trainer
from ..optim import OptimizerSpec
from . import nn
from . import optim as opt


def _checked(given: dict, shapes: dict, what: str, dtype) -> dict:
    """Copies of `given` in the spec's order and `dtype`; ValueError on any mismatch."""
    missing, extra = set(shapes) - set(given), set(given) - set(shapes)
    if missing or extra:
        raise ValueError(f"{what}: missing {sorted(missing)}, unknown {sorted(extra)}")
    out = {}
    for k, shape in shapes.items():
        if tuple(np.shape(given[k])) != tuple(shape):
            raise ValueError(f"{what} {k}: shape {np.shape(given[k])}, expected {shape}")
        out[k] = np.array(given[k], dtype=dtype)
    return out


class NumpyTrainer(Trainer):
    backend = "numpy"

    def __init__(self, spec: S.ModelSpec, params: Arrays, buffers: Arrays,
                 optimizer: OptimizerSpec, *, device: str, device_name: str, dtype: np.dtype,
                 opt_state: dict | None, rng: str, seed: int):
        if rng not in ("canonical", "native"):
            raise ValueError(f"rng must be 'canonical' or 'native', got {rng!r}")
        if spec.loss not in nn.LOSSES:
            raise ValueError(f"unknown loss {spec.loss!r}; known: {', '.join(nn.LOSSES)}")
        self.spec, self.optimizer = spec, optimizer
        self.device, self.device_name, self.dtype = device, device_name, np.dtype(dtype).name
        pshapes, bshapes = S.param_shapes(spec)
        self._params = _checked(params, pshapes, "params", dtype)
        self._buffers = _checked(buffers, bshapes, "buffers", dtype)
        self._opt = opt.init_state(optimizer, self._params, opt_state)
        self._rng = np.random.default_rng(seed) if rng == "native" else None
        self._loss_forward, self._loss_backward = nn.LOSSES[spec.loss]

    # ------------------------------------------------------------------------- forward

    def _input(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.shape[1:] != tuple(self.spec.input_shape):
            raise ValueError(f"input shape {x.shape}: expected (N, *{self.spec.input_shape})")
        return x

    def _mask(self, path: str, p: float, x: np.ndarray, masks) -> np.ndarray:
        if masks is not None and path in masks:
            mask = np.asarray(masks[path])
            if mask.shape != x.shape:
                raise ValueError(f"dropout layer {path!r}: mask shape {mask.shape}, "
                                 f"expected {x.shape}")
            return mask
        if self._rng is None:
            raise ValueError(f"dropout layer {path!r} (p={p}) needs a keep-mask of shape "
                             f"{x.shape} in train mode: with rng='canonical' the caller passes "
                             "masks (see backends.spec.dropout_masks)")
        return (self._rng.random(x.shape) >= p).astype(self.dtype)

    def _leaf(self, layer, x, path, ctx):
        """(out, (backward, param names, cache)) for one leaf."""
        P = self._params
        if isinstance(layer, (S.Linear, S.Conv, S.ConvTranspose)):
            w, b = P[f"{path}.weight"], P.get(f"{path}.bias")
            if isinstance(layer, S.Linear):
                out, cache = nn.linear_forward(x, w, b)
                back = nn.linear_backward
            elif isinstance(layer, S.Conv):
                out, cache = nn.conv_forward(x, w, b, layer.stride, layer.padding,
                                             layer.dilation)
                back = nn.conv_backward
            else:
                out, cache = nn.conv_transpose_forward(x, w, b, layer.stride, layer.padding,
                                                       layer.output_padding, layer.dilation)
                back = nn.conv_transpose_backward
            return out, (back, (f"{path}.weight", f"{path}.bias"), cache)
        if isinstance(layer, S.BatchNorm):
            train, mean, var = ctx["train"], f"{path}.running_mean", f"{path}.running_var"
            out, cache = nn.batchnorm_forward(
                x, P[f"{path}.weight"], P[f"{path}.bias"], self._buffers[mean],
                self._buffers[var], train=train, eps=layer.eps, momentum=layer.momentum)
            if train:
                ctx["buffers"][mean], ctx["buffers"][var] = cache["running"]
            return out, (nn.batchnorm_backward, (f"{path}.weight", f"{path}.bias"), cache)
        if isinstance(layer, S.Pool):
            out, cache = nn.pool_forward(x, layer.mode, layer.kernel, layer.stride,
                                         layer.padding)
            return out, (nn.pool_backward, (), cache)
        if isinstance(layer, S.Dropout):
            if not ctx["train"] or layer.p == 0:
                return x, None  # identity
            mask = self._mask(path, layer.p, x, ctx["masks"])
            out, cache = nn.dropout_forward(x, mask, layer.p)
            return out, (nn.dropout_backward, (), cache)
        if isinstance(layer, S.Flatten):
            out, cache = nn.flatten_forward(x)
            return out, (nn.flatten_backward, (), cache)
        if isinstance(layer, S.Activation):
            forward, back = nn.ACTIVATIONS[layer.fn]
            if layer.fn == "leaky_relu":
                out, cache = forward(x, layer.slope)
            elif layer.fn == "maxout":
                out, cache = forward(x, layer.k)
            else:
                out, cache = forward(x)
            return out, (back, (), cache)
        raise TypeError(f"layer {path}: not a layer: {type(layer).__name__}")

    def _forward(self, layer, x, path, ctx):
        if isinstance(layer, S.Sequential):
            record = []
            for child in layer.layers:
                x, rec = self._forward(child, x, S.join(path, child.name), ctx)
                record.append(rec)
            return x, record
        if isinstance(layer, S.Parallel):
            outs, records = [], []
            for branch in layer.branches:
                out, rec = self._forward(branch, x, S.join(path, branch.name), ctx)
                outs.append(out)
                records.append(rec)
            if layer.merge == "add":
                return sum(outs[1:], outs[0]), (layer.merge, records, None)
            sizes = [o.shape[1] for o in outs]
            return np.concatenate(outs, axis=1), (layer.merge, records, sizes)
        out, record = self._leaf(layer, x, path, ctx)
        if "outputs" in ctx:  # probe() keeps every leaf's output
            ctx["outputs"][path] = out
        return out, record

    def _backward(self, layer, dout, record, grads):
        """Accumulates parameter gradients into `grads`; returns the input gradient."""
        if isinstance(layer, S.Sequential):
            for child, rec in zip(reversed(layer.layers), reversed(record)):
                dout = self._backward(child, dout, rec, grads)
            return dout
        if isinstance(layer, S.Parallel):
            merge, records, sizes = record
            if merge == "add":
                parts = [dout] * len(records)
            else:
                parts = np.split(dout, np.cumsum(sizes)[:-1], axis=1)  # (N, C_i, *S) each
            dxs = [self._backward(b, g, r, grads)
                   for b, g, r in zip(layer.branches, parts, records)]
            return sum(dxs[1:], dxs[0])
        if record is None:  # an identity leaf
            return dout
        back, names, cache = record
        dx, leaf_grads = back(dout, cache)
        for name, g in zip(names, leaf_grads):
            if g is not None:
                grads[name] = g
        return dx

    def _run(self, x, train, masks):
        ctx = {"train": train, "masks": masks, "buffers": {}}
        out, record = self._forward(self.spec.body, self._input(x), "", ctx)
        return out, record, ctx["buffers"]

    def forward(self, x, *, train=False, masks=None):
        return self._run(x, train, masks)[0]

    def probe(self, x, y=None, *, train=True, masks=None):
        ctx = {"train": train, "masks": masks, "buffers": {}, "outputs": {}}
        out, record = self._forward(self.spec.body, self._input(x), "", ctx)
        if y is None:
            return ctx["outputs"], None
        _, cache = self._loss(out, y)  # the new running statistics in ctx are dropped
        dx = self._backward(self.spec.body, self._loss_backward(cache), record, {})
        return ctx["outputs"], dx

    def _loss(self, out, y):
        y = np.asarray(y)
        if self.spec.loss == "cross_entropy":
            if y.shape != out.shape[:1]:
                raise ValueError(f"labels shape {y.shape}: expected ({out.shape[0]},)")
        elif y.shape != out.shape:
            raise ValueError(f"targets shape {y.shape}: expected {out.shape}")
        return self._loss_forward(out, y)

    def evaluate(self, x, y):
        out = self.forward(x, train=False)
        return float(self._loss(out, y)[0]), out

    # ------------------------------------------------------------------------- training

    def loss_and_grads(self, x, y, masks=None):
        out, record, new_buffers = self._run(x, True, masks)
        loss, cache = self._loss(out, y)
        grads: Arrays = {}
        self._backward(self.spec.body, self._loss_backward(cache), record, grads)
        self._buffers.update(new_buffers)
        return float(loss), {k: grads[k] for k in self._params}

    def apply_gradients(self, grads):
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
        return opt.copy_state(self._opt)
