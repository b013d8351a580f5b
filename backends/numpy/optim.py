"""The canonical optimizers (backends/optim.py) in the NumPy backend: the rules, called directly.

The rules live there, once, for every backend; the NumPy backend is their reference. Its
native state is the canonical state itself, `{"step": t, "slots": {slot: {path: array}}}`,
held in the params' dtype, so loading and exporting are checked copies.
"""

from __future__ import annotations

import numpy as np

from ..base import check_opt_state
from ..optim import SLOTS, OptimizerSpec, init, update


def build(spec: OptimizerSpec, params: dict) -> dict:
    """State before the first step: every slot zero, in the params' dtype."""
    return init(spec, params)


def load_state(spec: OptimizerSpec, params: dict, state: dict) -> dict:
    """Canonical `state` copied into the params' dtype; StateError unless it fits them."""
    check_opt_state(spec, state, {k: p.shape for k, p in params.items()})
    return {"step": int(state["step"]),
            "slots": {s: {k: np.array(state["slots"][s][k], dtype=p.dtype)
                          for k, p in params.items()} for s in SLOTS[spec.name]}}


def export_state(spec: OptimizerSpec, params: dict, state: dict) -> dict:
    """Canonical state: a copy of the native one, which is canonical already."""
    del spec, params  # nothing to translate
    return {"step": state["step"],
            "slots": {s: {k: v.copy() for k, v in vals.items()}
                      for s, vals in state["slots"].items()}}


def step(spec: OptimizerSpec, params: dict, grads: dict, state: dict) -> tuple[dict, dict]:
    """One canonical update: (new params, new state); the inputs are left as they were."""
    grads = {k: np.asarray(grads[k], dtype=p.dtype) for k, p in params.items()}
    return update(spec, params, grads, state)
