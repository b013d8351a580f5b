"""Per-layer diagnostics, the same on every backend: they are computed here, in NumPy, from
what any backend hands back in canonical form (`Trainer.probe`, `loss_and_grads`, `params`).

Every `train.diag_every` steps the training loop calls `Diagnostics.step` instead of
`train_step`. It takes the leaf outputs of the batch (`probe`, which changes no state), then
runs `loss_and_grads` and `apply_gradients`, which together are one training step, so the
trajectory is the one without diagnostics. Logged at step s, like `train/loss` (the loss
before the s-th update), as `diag/<layer path>/<quantity>`:

    act_mean, act_std   mean and (population) standard deviation over the batch and every unit
                        of the output of each Activation leaf, and of the model's last leaf
                        (its outputs: exploding or collapsing outputs show here)
    dead_frac           relu and leaky_relu leaves: the fraction of units (features, or channels
                        x positions) whose output is <= 0 for every sample of the batch
    grad_norm           each leaf with parameters: the L2 norm of the gradient of all of them
                        (weight and bias together), at the batch's loss
    update_ratio        ... ||p_after - p_before|| / ||p_before|| over the same parameters: the
                        step's relative size (about 1e-3 is healthy: cs231n, "Neural Networks
                        Part 3", ratio of updates to weights)

Dropout layers see the step's own masks. With `rng: native` the batch has no host masks; the
probe then draws its own from a NumPy stream of its own, so that the backend's generator,
and with it the trajectory, stays untouched.

References: Glorot & Bengio 2010 (activation and gradient statistics per layer of deep tanh
and sigmoid nets); cs231n "Neural Networks Part 3" (the update/weight ratio, dead ReLUs).

`python -m benchmarks.diagnostics FILE [--set ...]` measures what diagnostics cost: see
benchmarks/README.md, "Diagnostics overhead (issue 6)".
"""

from __future__ import annotations

import math

import numpy as np

from backends.spec import Activation, ModelSpec, dropout_masks
from harness.names import diag_key, streams


def watched(spec: ModelSpec) -> list[str]:
    """The leaves whose outputs are measured: every Activation, and the last leaf."""
    leaves = list(spec.layers())
    paths = [path for path, layer in leaves if isinstance(layer, Activation)]
    if leaves[-1][0] not in paths:
        paths.append(leaves[-1][0])
    return paths


def activation_stats(spec: ModelSpec, outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """act_mean, act_std (and dead_frac of rectifiers) from `probe`'s outputs (N, *units)."""
    layers = dict(spec.layers())
    out = {}
    for path in watched(spec):
        a = np.asarray(outputs[path], np.float64)
        out[diag_key(path, "act_mean")] = float(a.mean())
        out[diag_key(path, "act_std")] = float(a.std())
        layer = layers[path]
        if isinstance(layer, Activation) and layer.fn in ("relu", "leaky_relu"):
            dead = np.all(a <= 0, axis=0)  # (*units): never positive on this batch
            out[diag_key(path, "dead_frac")] = float(dead.mean())
    return out


def _leaf_params(spec: ModelSpec, names) -> dict[str, list[str]]:
    """leaf path -> its parameter names among `names`: `<path>.weight`, `<path>.bias`."""
    out = {}
    for path, _ in spec.layers():
        mine = [n for n in (f"{path}.weight", f"{path}.bias") if n in names]
        if mine:
            out[path] = mine
    return out


def _sumsq(a: np.ndarray) -> float:
    """sum(a^2) by one BLAS dot in a's own dtype, scaled by max |a| so that no square under-
    or overflows (a float32 gradient of 1e-20 squares to 0); 25x faster than float64 copies."""
    a = np.ravel(a)
    m = float(np.abs(a).max(initial=0.0))
    if m == 0 or not math.isfinite(m):
        return m * m
    v = a / m
    return m * m * float(np.dot(v, v))


def _norm(arrays: dict, names: list[str]) -> float:
    """The L2 norm of the named arrays taken together."""
    return math.sqrt(sum(_sumsq(arrays[n]) for n in names))


def gradient_stats(spec: ModelSpec, grads: dict, before: dict, after: dict) -> dict[str, float]:
    """grad_norm and update_ratio per leaf with parameters (canonical arrays)."""
    out = {}
    for path, names in _leaf_params(spec, grads).items():
        out[diag_key(path, "grad_norm")] = _norm(grads, names)
        weight = _norm(before, names)
        if weight > 0:  # an all-zero parameter set (biases alone) has no ratio
            delta = {n: after[n] - before[n] for n in names}  # what the step really did
            out[diag_key(path, "update_ratio")] = _norm(delta, names) / weight
    return out


class Diagnostics:
    """The training loop's hook: `step` replaces `train_step` every `every` steps."""

    def __init__(self, spec: ModelSpec, every: int, seed: int = 0):
        self.spec, self.every = spec, every
        self._rng = streams(seed)["diagnostics"]  # masks for rng: native only

    def step(self, trainer, x, y, masks, step: int, rows: list) -> float:
        """One training step that also appends (key, value, step) rows; returns the loss."""
        probe_masks = masks if masks is not None else dropout_masks(self.spec, len(x), self._rng)
        outputs, _ = trainer.probe(x, train=True, masks=probe_masks)
        before = trainer.params()
        loss, grads = trainer.loss_and_grads(x, y, masks)
        trainer.apply_gradients(grads)
        values = {**activation_stats(self.spec, outputs),
                  **gradient_stats(self.spec, grads, before, trainer.params())}
        rows += [(k, v, step) for k, v in values.items()]
        return loss
