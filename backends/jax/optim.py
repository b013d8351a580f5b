"""The canonical optimizers (backends/optim.py) as optax transformations, and their state.

The native state is optax's; every rule is `chain(_count_steps(), L2 decay, rule)`:

    gd, sgd   optax.sgd(lr)                                p += -lr g
    momentum  optax.sgd(lr, momentum=mu, nesterov=...)     optax.trace: v = g + mu v, and
                                                           nesterov's update g + mu v (new v)
    adam      optax.adam(lr, b1, b2, eps, eps_root=0)      m^ = m / (1 - b1^t),
                                                           v^ = v / (1 - b2^t) (count from 1),
                                                           update m^ / (sqrt(v^ + 0) + eps)
    adagrad   _adagrad(lr, eps) below                      optax.adagrad cannot express it
    rmsprop   _rmsprop(lr, rho, eps) below                 optax.rmsprop cannot express it
    L2        optax.add_decayed_weights(wd), chained *before* the rule: g + wd p, a penalty
              on the gradient that the rule then rescales (not AdamW's decoupled decay)

The optax formulas above were read from optax 0.2.8's `transform.trace`,
`transform.scale_by_adam` and `tree.bias_correction`; the parity tests hold every rule to
`backends.optim.update` at rtol 1e-12 in float64.

Warning, where optax's own aliases disagree with the canonical rules (so none is used):
  - optax.adagrad starts its accumulator at `initial_accumulator_value=0.1` and puts eps
    (1e-7) inside the root, sqrt(G + eps); torch starts at 0 with eps 1e-10 outside. The
    canonical rule starts at 0 with eps outside: g / (sqrt(G) + eps).
  - optax.rmsprop decays with 0.9 and puts eps (1e-8) inside the root, sqrt(E + eps); torch's
    RMSprop decays with alpha 0.99, eps outside. The canonical rule: rho 0.9, eps outside.

Canonical state, `{"step": t, "slots": {slot: {path: array}}}`, maps onto the optax state:
step <-> _StepState.step (and adam's count), momentum's v <-> TraceState.trace, adam's m, v <->
ScaleByAdamState.mu, nu, adagrad's G <-> _AdagradState.G, rmsprop's E <-> _RMSPropState.E.
Params are flat dicts keyed by canonical path, so every slot is already keyed by canonical
name. `step` is a pure function, for the trainer's one `jax.jit` of the whole train step.

References: optax `optax/_src/alias.py` and `transform.py`; Duchi et al. 2011 (Adagrad);
Hinton, lecture 6e (RMSProp); Kingma & Ba 2015, Algorithm 1 (Adam).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..base import check_opt_state
from ..optim import SLOTS, OptimizerSpec


class _StepState(NamedTuple):
    step: jax.Array  # () int32: steps taken, the canonical t of the last update


class _AdagradState(NamedTuple):
    G: dict  # {path: sum of squared gradients}, like the params


class _RMSPropState(NamedTuple):
    E: dict  # {path: running mean of squared gradients}, like the params


def _count_steps() -> optax.GradientTransformation:
    """Passes updates through and counts them: the canonical step t for every rule."""

    def init(params):
        del params
        return _StepState(step=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        return updates, _StepState(step=state.step + 1)

    return optax.GradientTransformation(init, update)


def _adagrad(learning_rate: float, eps: float = 1e-8) -> optax.GradientTransformation:
    """G += g^2; update = -lr g / (sqrt(G) + eps), G from 0 and eps outside the root.

    Warning: optax.adagrad starts G at 0.1 and uses sqrt(G + eps); torch.optim.Adagrad uses
    eps 1e-10. References: Duchi et al. 2011.
    """

    def init(params):
        return _AdagradState(G=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        G = jax.tree.map(lambda g, s: s + g * g, updates, state.G)
        updates = jax.tree.map(lambda g, s: -learning_rate * g / (jnp.sqrt(s) + eps),
                               updates, G)
        return updates, _AdagradState(G=G)

    return optax.GradientTransformation(init, update)


def _rmsprop(learning_rate: float, rho: float = 0.9,
            eps: float = 1e-8) -> optax.GradientTransformation:
    """E = rho E + (1 - rho) g^2; update = -lr g / (sqrt(E) + eps), eps outside the root.

    Warning: optax.rmsprop uses sqrt(E + eps); torch.optim.RMSprop decays with alpha 0.99,
    optax with 0.9 (as here). References: Hinton, Neural Networks for ML, lecture 6e.
    """

    def init(params):
        return _RMSPropState(E=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        E = jax.tree.map(lambda g, s: rho * s + (1 - rho) * g * g, updates, state.E)
        updates = jax.tree.map(lambda g, s: -learning_rate * g / (jnp.sqrt(s) + eps),
                               updates, E)
        return updates, _RMSPropState(E=E)

    return optax.GradientTransformation(init, update)


def _rule(spec: OptimizerSpec) -> optax.GradientTransformation:
    if spec.name in ("gd", "sgd"):
        return optax.sgd(spec.lr)
    if spec.name == "momentum":
        return optax.sgd(spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    if spec.name == "adam":
        return optax.adam(spec.lr, b1=spec.beta1, b2=spec.beta2, eps=spec.eps, eps_root=0.0)
    if spec.name == "adagrad":
        return _adagrad(spec.lr, eps=spec.eps)
    if spec.name == "rmsprop":
        return _rmsprop(spec.lr, rho=spec.rho, eps=spec.eps)
    raise ValueError(f"unknown optimizer {spec.name!r}; known: {', '.join(SLOTS)}")


def _transform(spec: OptimizerSpec) -> optax.GradientTransformation:
    """chain(_count_steps, add_decayed_weights(wd) or identity, rule): SPEC 4.3's math."""
    decay = optax.add_decayed_weights(spec.weight_decay) if spec.weight_decay else optax.identity()
    return optax.chain(_count_steps(), decay, _rule(spec))


def build(spec: OptimizerSpec, params: dict):
    """The optax state before the first step: step 0, every slot zero, like `params`."""
    return _transform(spec).init(params)


def load_state(spec: OptimizerSpec, params: dict, state: dict):
    """Canonical `state` -> optax state for `params`, whose dtypes the slots take (copies).

    StateError unless it fits the params.
    """
    check_opt_state(spec, state, {k: p.shape for k, p in params.items()})
    step, slots = int(state["step"]), state["slots"]

    def like(slot):
        return {k: jnp.array(slots[slot][k], dtype=p.dtype) for k, p in params.items()}

    def put(s):
        if isinstance(s, _StepState):
            return _StepState(step=jnp.asarray(step, jnp.int32))
        if isinstance(s, optax.TraceState):
            return optax.TraceState(trace=like("v"))
        if isinstance(s, optax.ScaleByAdamState):
            return s._replace(count=jnp.asarray(step, jnp.int32), mu=like("m"), nu=like("v"))
        if isinstance(s, _AdagradState):
            return _AdagradState(G=like("G"))
        if isinstance(s, _RMSPropState):
            return _RMSPropState(E=like("E"))
        return s

    return _map_states(build(spec, params), put)


def export_state(spec: OptimizerSpec, params: dict, state) -> dict:
    """optax state -> {"step": t, "slots": {slot: {path: np.ndarray}}} (NumPy copies)."""
    del params  # the slots are keyed like them already
    found: dict = {}

    def grab(s):
        if isinstance(s, _StepState):
            found["step"] = int(s.step)
        elif isinstance(s, optax.TraceState):
            found["v"] = s.trace
        elif isinstance(s, optax.ScaleByAdamState):
            found["m"], found["v"] = s.mu, s.nu
        elif isinstance(s, _AdagradState):
            found["G"] = s.G
        elif isinstance(s, _RMSPropState):
            found["E"] = s.E
        return s

    _map_states(state, grab)
    slots = {slot: {k: np.array(v) for k, v in found[slot].items()} for slot in SLOTS[spec.name]}
    return {"step": found["step"], "slots": slots}


def step(spec: OptimizerSpec, params: dict, grads: dict, state) -> tuple[dict, object]:
    """One canonical update: (new params, new state). Pure, so it can sit inside `jax.jit`."""
    updates, state = _transform(spec).update(grads, state, params)
    return optax.apply_updates(params, updates), state


def _map_states(state, fn):
    """Rebuild a (nested tuple of) optax state(s), passing each NamedTuple state through fn."""
    if hasattr(state, "_fields"):
        return fn(state)
    if isinstance(state, tuple):
        return tuple(_map_states(s, fn) for s in state)
    return state
