"""torch.optim configured to compute exactly the canonical rules of backends/optim.py (SPEC 4.3).

    canonical  torch.optim                                               state <-> slot
    gd, sgd    SGD(lr, momentum=0)                                       -
    momentum   SGD(lr, momentum=mu, dampening=0, nesterov)               momentum_buffer <-> v
    adagrad    Adagrad(lr, eps, lr_decay=0, initial_accumulator_value=0) sum <-> G
    rmsprop    RMSprop(lr, alpha=rho, eps, momentum=0, centered=False)   square_avg <-> E
    adam       Adam(lr, betas=(b1, b2), eps, amsgrad=False,              exp_avg <-> m,
                    decoupled_weight_decay=False)                        exp_avg_sq <-> v

weight_decay goes to each optimizer's own `weight_decay`, which adds wd * p to the gradient
before the rule (torch.optim.SGD/Adagrad/RMSprop/Adam source: `grad = grad.add(param,
alpha=weight_decay)`): the canonical L2 penalty, not AdamW's decoupled decay.

Checked against torch 2.13's `_single_tensor_*` code:
  - SGD's first momentum step sets buf = g, which is mu * 0 + g; Nesterov steps with
    g + mu * buf, the canonical p -= lr (g + mu v).
  - Adam computes lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), the canonical
    formula rearranged (equal up to rounding, ~1 ulp).
  - foreach (multi-tensor) kernels do the same operations in the same order and are used on
    the GPU; `fused` kernels are not used (they fold operations differently).

Warning, where torch's defaults differ from the canonical ones (all are passed explicitly
here, so none leaks through): torch's Adagrad has eps 1e-10 (canonical 1e-8); torch's
RMSprop decays with alpha 0.99 (canonical rho 0.9); torch's SGD has momentum 0 (canonical
mu 0.9). Both put eps outside the square root, as the canonical rules do. torch's SGD keeps
no step count, so the native state is the torch optimizer and the canonical step t beside it.

References: torch.optim docs (the algorithm boxes of SGD, Adagrad, RMSprop, Adam);
backends/optim.py for the canonical table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..base import check_opt_state
from ..optim import SLOTS, OptimizerSpec

# canonical slot -> torch's per-parameter state key
_TORCH_SLOTS = {"gd": {}, "sgd": {}, "momentum": {"v": "momentum_buffer"},
                "adagrad": {"G": "sum"}, "rmsprop": {"E": "square_avg"},
                "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}
_HAS_STEP = ("adagrad", "rmsprop", "adam")  # those whose torch state keeps a `step` tensor


class _State(NamedTuple):
    optimizer: torch.optim.Optimizer  # holds the slots; its step() updates them in place
    step: int  # the canonical t of the last update: torch's SGD counts no steps


def build(spec: OptimizerSpec, params: dict[str, torch.nn.Parameter]) -> _State:
    """The torch optimizer for `spec` over `params` ({path: parameter}), before its first step.

    On a GPU it takes the foreach (multi-tensor) kernels, which compute the same as the
    single-tensor ones (module docstring).
    """
    tensors = list(params.values())
    common = dict(lr=spec.lr, weight_decay=spec.weight_decay, maximize=False,
                  foreach=any(p.is_cuda for p in tensors))
    if spec.name in ("gd", "sgd"):
        return _State(torch.optim.SGD(tensors, momentum=0.0, fused=False, **common), 0)
    if spec.name == "momentum":
        if spec.momentum == 0:
            # torch's SGD keeps no buffer with momentum 0, so v could not be exported.
            raise ValueError("momentum with mu = 0 is sgd; use optimizer name 'sgd'")
        return _State(torch.optim.SGD(tensors, momentum=spec.momentum, dampening=0.0,
                                      nesterov=spec.nesterov, fused=False, **common), 0)
    if spec.name == "adagrad":
        return _State(torch.optim.Adagrad(tensors, lr_decay=0.0, initial_accumulator_value=0.0,
                                          eps=spec.eps, fused=False, **common), 0)
    if spec.name == "rmsprop":
        return _State(torch.optim.RMSprop(tensors, alpha=spec.rho, eps=spec.eps, momentum=0.0,
                                          centered=False, **common), 0)
    if spec.name == "adam":
        return _State(torch.optim.Adam(tensors, betas=(spec.beta1, spec.beta2), eps=spec.eps,
                                       amsgrad=False, decoupled_weight_decay=False,
                                       fused=False, **common), 0)
    raise ValueError(f"unknown optimizer {spec.name!r}; known: {', '.join(SLOTS)}")


def load_state(spec: OptimizerSpec, params: dict[str, torch.nn.Parameter],
               state: dict) -> _State:
    """Canonical `state` installed through the optimizer's own `load_state_dict`.

    StateError unless it fits the params. `load_state_dict` casts each slot to its
    parameter's dtype and device; `step` stays a scalar float32 tensor as torch makes it
    (exact for t < 2^24).
    """
    check_opt_state(spec, state, {k: tuple(p.shape) for k, p in params.items()})
    optimizer, t = build(spec, params).optimizer, int(state["step"])
    per_param = {}
    for i, name in enumerate(params):
        entry = {key: torch.as_tensor(np.asarray(state["slots"][slot][name]))
                 for slot, key in _TORCH_SLOTS[spec.name].items()}
        if spec.name in _HAS_STEP:
            entry["step"] = torch.tensor(float(t), dtype=torch.float32)
        if entry:
            per_param[i] = entry
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": per_param, "param_groups": current["param_groups"]})
    return _State(optimizer, t)


def export_state(spec: OptimizerSpec, params: dict[str, torch.nn.Parameter],
                 state: _State) -> dict:
    """Canonical {"step": t, "slots": {slot: {path: array}}}; a slot torch has not yet made
    (SGD and Adam create state lazily, at their first step) is zero, as canonical init is."""
    slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in SLOTS[spec.name]}
    for name, p in params.items():
        native = state.optimizer.state.get(p, {})
        for slot, key in _TORCH_SLOTS[spec.name].items():
            value = native.get(key)
            if value is None:
                slots[slot][name] = np.zeros(tuple(p.shape), _np_dtype(p))
            else:
                slots[slot][name] = value.detach().cpu().numpy().copy()
    return {"step": int(state.step), "slots": slots}


def step(spec: OptimizerSpec, params: dict[str, torch.nn.Parameter], grads: dict,
         state: _State) -> tuple[dict, _State]:
    """One canonical update, in place: (params, state) with the new values.

    grads {path: tensor on its parameter's device and dtype, or None for one the loss does
    not reach, which torch's step leaves as it is}.
    """
    del spec  # the optimizer was built for it
    for k, p in params.items():
        p.grad = grads[k]
    state.optimizer.step()
    return params, _State(state.optimizer, state.step + 1)


def _step_own_grads(state: _State) -> _State:
    """`step` on the gradients already in each parameter's `.grad` (the trainer's own
    backward): the same update, without handing them back and forth."""
    state.optimizer.step()
    return _State(state.optimizer, state.step + 1)


def _np_dtype(p: torch.Tensor) -> np.dtype:
    return np.dtype(str(p.dtype).removeprefix("torch."))
