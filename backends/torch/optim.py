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
no step count, so the step t of the canonical state is counted by the trainer.

References: torch.optim docs (the algorithm boxes of SGD, Adagrad, RMSprop, Adam);
backends/optim.py for the canonical table.
"""

from __future__ import annotations

import numpy as np
import torch

from ..optim import SLOTS, OptimizerSpec

# canonical slot -> torch's per-parameter state key
TORCH_SLOTS = {"gd": {}, "sgd": {}, "momentum": {"v": "momentum_buffer"},
               "adagrad": {"G": "sum"}, "rmsprop": {"E": "square_avg"},
               "adam": {"m": "exp_avg", "v": "exp_avg_sq"}}
HAS_STEP = ("adagrad", "rmsprop", "adam")  # those whose torch state keeps a `step` tensor


def build_optimizer(spec: OptimizerSpec, params: list[torch.nn.Parameter], *,
                    foreach: bool = False) -> torch.optim.Optimizer:
    """The torch optimizer for `spec` over `params` (in canonical order)."""
    common = dict(lr=spec.lr, weight_decay=spec.weight_decay, foreach=foreach, maximize=False)
    if spec.name in ("gd", "sgd"):
        return torch.optim.SGD(params, momentum=0.0, fused=False, **common)
    if spec.name == "momentum":
        if spec.momentum == 0:
            # torch's SGD keeps no buffer with momentum 0, so v could not be exported.
            raise ValueError("momentum with mu = 0 is sgd; use optimizer name 'sgd'")
        return torch.optim.SGD(params, momentum=spec.momentum, dampening=0.0,
                               nesterov=spec.nesterov, fused=False, **common)
    if spec.name == "adagrad":
        return torch.optim.Adagrad(params, lr_decay=0.0, initial_accumulator_value=0.0,
                                   eps=spec.eps, fused=False, **common)
    if spec.name == "rmsprop":
        return torch.optim.RMSprop(params, alpha=spec.rho, eps=spec.eps, momentum=0.0,
                                   centered=False, **common)
    if spec.name == "adam":
        return torch.optim.Adam(params, betas=(spec.beta1, spec.beta2), eps=spec.eps,
                                amsgrad=False, decoupled_weight_decay=False, fused=False,
                                **common)
    raise ValueError(f"unknown optimizer {spec.name!r}; known: {', '.join(SLOTS)}")


def export_state(opt: torch.optim.Optimizer, spec: OptimizerSpec, names: list[str],
                 params: list[torch.nn.Parameter], step: int) -> dict:
    """Canonical {"step": t, "slots": {slot: {path: array}}}; a slot torch has not yet made
    (SGD and Adam create state lazily, at their first step) is zero, as canonical init is."""
    slots: dict[str, dict[str, np.ndarray]] = {s: {} for s in SLOTS[spec.name]}
    for name, p in zip(names, params):
        state = opt.state.get(p, {})
        for slot, key in TORCH_SLOTS[spec.name].items():
            value = state.get(key)
            if value is None:
                slots[slot][name] = np.zeros(tuple(p.shape), np_dtype(p))
            else:
                slots[slot][name] = value.detach().cpu().numpy().copy()
    return {"step": int(step), "slots": slots}


def load_state(opt: torch.optim.Optimizer, spec: OptimizerSpec, names: list[str],
               params: list[torch.nn.Parameter], state: dict) -> int:
    """Install canonical state into `opt` through its own `load_state_dict`; returns the step.

    `load_state_dict` casts each slot to its parameter's dtype and device; `step` stays a
    scalar float32 tensor as torch makes it (exact for t < 2^24).
    """
    t = int(state["step"])
    missing = [s for s in SLOTS[spec.name] if s not in state["slots"]]
    if missing:
        raise KeyError(f"optimizer state for {spec.name!r} lacks slots {missing}")
    per_param = {}
    for i, name in enumerate(names):
        entry = {key: torch.as_tensor(np.asarray(state["slots"][slot][name]))
                 for slot, key in TORCH_SLOTS[spec.name].items()}
        if spec.name in HAS_STEP:
            entry["step"] = torch.tensor(float(t), dtype=torch.float32)
        if entry:
            per_param[i] = entry
    current = opt.state_dict()
    opt.load_state_dict({"state": per_param, "param_groups": current["param_groups"]})
    return t


def np_dtype(p: torch.Tensor) -> np.dtype:
    return np.dtype(str(p.dtype).removeprefix("torch."))
