"""Glue between the NumPy trainer and the canonical optimizer rules of backends/optim.py.

The rules themselves live there, once, for every backend; the NumPy backend is their
reference and calls them directly. Here we only hold the state in the build dtype.
"""

from __future__ import annotations

import numpy as np

from .. import optim as canonical


def init_state(spec: canonical.OptimizerSpec, params: dict, state: dict | None = None) -> dict:
    """Canonical state {"step": t, "slots": {slot: {path: array}}}, zeros unless given.

    A given state is checked against the rule's slots and the params, and copied into the
    params' dtype.
    """
    if state is None:
        return canonical.init(spec, params)
    slots = state.get("slots", {})
    if set(slots) != set(canonical.SLOTS[spec.name]):
        raise ValueError(f"optimizer {spec.name} keeps slots {canonical.SLOTS[spec.name]}, "
                         f"the given state has {tuple(slots)}")
    copied = {}
    for slot, values in slots.items():
        if set(values) != set(params):
            missing, extra = set(params) - set(values), set(values) - set(params)
            raise ValueError(f"optimizer slot {slot!r}: missing {sorted(missing)}, "
                             f"unknown {sorted(extra)}")
        copied[slot] = {k: np.array(values[k], dtype=p.dtype) for k, p in params.items()}
    return {"step": int(state["step"]), "slots": copied}


def step(spec: canonical.OptimizerSpec, params: dict, grads: dict, state: dict):
    """One canonical update: (new params, new state); the inputs are left as they were."""
    if set(grads) != set(params):
        missing, extra = set(params) - set(grads), set(grads) - set(params)
        raise ValueError(f"gradients: missing {sorted(missing)}, unknown {sorted(extra)}")
    grads = {k: np.asarray(grads[k], dtype=p.dtype) for k, p in params.items()}
    return canonical.update(spec, params, grads, state)


def copy_state(state: dict) -> dict:
    return {"step": state["step"],
            "slots": {s: {k: v.copy() for k, v in vals.items()}
                      for s, vals in state["slots"].items()}}
