"""The canonical optimizers: one definition of each, as small pure update rules (SPEC 4.3).

Sorted in order of increasing complexity (as tinygrad's optim.py is). Each rule is a pure
function of one parameter, `_rule(g, slots, p, spec, t) -> (new_p, new_slots)` with slots
{slot name: array}, and a pair of pure functions, as in optax's `GradientTransformation`,
applies it to every parameter:

    init(spec, params) -> state             state: {"step": t, "slots": {slot: {path: array}}}
    update(spec, params, grads, state) -> (new_params, new_state)

with the step t counted from 1. Weight decay is an L2 penalty added to the gradient before
the rule: g <- g + wd * p. The NumPy backend calls these rules directly; the torch and JAX
backends configure their libraries to compute exactly the same math, and the parity tests
hold them to it. Canonical optimizer state, as every backend exports it, is that `state`,
with the slot names below. Each backend's optim.py translates it to and from its native
state with the same four functions: `build(spec, params)`, `load_state(spec, params,
state)`, `export_state(spec, params, state)` and `step(spec, params, grads, state)`
(backends/base.py).

Defaults (one table, also in the README):

    rule      formula                                                   defaults     slots
    gd, sgd   p -= lr g                                                 -            -
    momentum  v = mu v + g; p -= lr v  (nesterov: p -= lr (g + mu v))   mu 0.9       v
    adagrad   G += g^2; p -= lr g / (sqrt(G) + eps)                     eps 1e-8     G
    rmsprop   E = rho E + (1 - rho) g^2; p -= lr g / (sqrt(E) + eps)    rho 0.9,     E
                                                                        eps 1e-8
    adam      m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;           b1 0.9,      m, v
              p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)   b2 0.999,
                                                                        eps 1e-8

Warning, where the libraries disagree with each other and with this table:
  - torch's Adagrad starts G at 0 with eps 1e-10 outside the root; optax's starts G at 0.1 and
    puts eps 1e-7 inside the root. Here G starts at 0 and eps is outside.
  - torch's RMSprop decays with alpha 0.99, optax's with 0.9 and eps inside the root. Here
    rho is 0.9 (Hinton's lecture) and eps is outside.
  - gd and sgd are the same rule; gd means the runner feeds the whole training set each step.

References: Duchi et al. 2011 (Adagrad); Hinton, Neural Networks for ML, lecture 6e
(RMSProp); Kingma & Ba 2015 (Adam, Algorithm 1); Sutskever et al. 2013 (momentum, Nesterov).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fields import checked, choice, non_negative, positive, unit_interval

OPTIMIZERS = ("gd", "sgd", "momentum", "adagrad", "rmsprop", "adam")
SLOTS = {"gd": (), "sgd": (), "momentum": ("v",), "adagrad": ("G",), "rmsprop": ("E",),
         "adam": ("m", "v")}


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """One optimizer, each field declared once: harness's `optimizer:` section is this class."""

    name: str = choice("sgd", OPTIMIZERS)
    lr: float = checked(0.01, positive, "> 0")
    momentum: float = checked(0.9, unit_interval, "in [0, 1)")  # mu, for momentum
    nesterov: bool = False  # for momentum
    rho: float = checked(0.9, unit_interval, "in [0, 1)")  # rmsprop's decay
    beta1: float = checked(0.9, unit_interval, "in [0, 1)")  # adam
    beta2: float = checked(0.999, unit_interval, "in [0, 1)")  # adam
    eps: float = checked(1e-8, positive, "> 0")  # adagrad, rmsprop, adam; outside the root
    weight_decay: float = checked(0.0, non_negative, ">= 0")  # L2 penalty: g <- g + wd * p


def init(spec: OptimizerSpec, params: dict[str, np.ndarray]) -> dict:
    """Canonical optimizer state before the first step: every slot zero."""
    return {"step": 0, "slots": {s: {k: np.zeros_like(p) for k, p in params.items()}
                                 for s in SLOTS[spec.name]}}


def _sgd(g, slots, p, o, t):
    return p - o.lr * g, slots


def _momentum(g, slots, p, o, t):
    v = o.momentum * slots["v"] + g
    step = g + o.momentum * v if o.nesterov else v
    return p - o.lr * step, {"v": v}


def _adagrad(g, slots, p, o, t):
    G = slots["G"] + g * g
    return p - o.lr * g / (np.sqrt(G) + o.eps), {"G": G}


def _rmsprop(g, slots, p, o, t):
    E = o.rho * slots["E"] + (1 - o.rho) * g * g
    return p - o.lr * g / (np.sqrt(E) + o.eps), {"E": E}


def _adam(g, slots, p, o, t):
    m = o.beta1 * slots["m"] + (1 - o.beta1) * g
    v = o.beta2 * slots["v"] + (1 - o.beta2) * g * g
    m_hat = m / (1 - o.beta1**t)
    v_hat = v / (1 - o.beta2**t)
    return p - o.lr * m_hat / (np.sqrt(v_hat) + o.eps), {"m": m, "v": v}


RULES = {"gd": _sgd, "sgd": _sgd, "momentum": _momentum, "adagrad": _adagrad,
         "rmsprop": _rmsprop, "adam": _adam}


def update(spec: OptimizerSpec, params: dict, grads: dict, state: dict) -> tuple[dict, dict]:
    """One step of the rule on every parameter: (new params, new state). Pure."""
    t = state["step"] + 1
    rule = RULES[spec.name]
    new_params, new_slots = {}, {s: {} for s in SLOTS[spec.name]}
    for k, p in params.items():
        g = grads[k]
        if spec.weight_decay:
            g = g + spec.weight_decay * p
        dtype = p.dtype
        slots = {s: state["slots"][s][k] for s in SLOTS[spec.name]}
        new_p, slots = rule(g, slots, p, spec, t)
        new_params[k] = new_p.astype(dtype, copy=False)
        for s, value in slots.items():
            new_slots[s][k] = value.astype(dtype, copy=False)
    return new_params, {"step": t, "slots": new_slots}
