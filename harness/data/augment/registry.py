"""The registry of augmentations, the checks of an experiment's `augment:` list, and the
entry point of the training loop (`augment_pair`).

An op registers itself with `@augmentation(name, ...)` (ops2d.py, ops3d.py); the package's
`__init__` imports both, so the registry is full whenever `harness.data.augment` is imported.
Problems come back as `harness.errors.ConfigError` values with the key path inside the list
("augment[1].std"); the config reader fills in the file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from harness.errors import ConfigError, suggest


class Augmentation(NamedTuple):
    """A registered op: the function, its default parameters, and whether it moves voxels
    or pixels (then a dense target must move with it: `augment_pair`)."""

    fn: Callable[..., np.ndarray]
    defaults: dict[str, Any]
    geometric: bool = False


AUGMENTATIONS: dict[str, Augmentation] = {}
# Which numbers of spatial axes an op accepts (None: any), the allowed range of each
# numeric parameter (low, high), inclusive, None for unbounded, and the allowed values of
# each string parameter; read by check_augmentations.
SPATIAL_DIMS: dict[str, tuple[int, ...] | None] = {}
BOUNDS: dict[str, dict[str, tuple[float | None, float | None]]] = {}
CHOICES: dict[str, dict[str, tuple[str, ...]]] = {}


def augmentation(
    name: str,
    *,
    spatial_dims: tuple[int, ...] | None = None,
    bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
    choices: Mapping[str, tuple[str, ...]] | None = None,
    geometric: bool = False,
    **defaults: Any,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator that registers `fn` under `name` with its default parameters."""

    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in AUGMENTATIONS:
            raise ValueError(f"augmentation {name!r} is registered twice")
        AUGMENTATIONS[name] = Augmentation(fn, dict(defaults), geometric)
        SPATIAL_DIMS[name] = spatial_dims
        BOUNDS[name] = dict(bounds or {})
        CHOICES[name] = dict(choices or {})
        return fn

    return decorate


# ---- specs from the YAML ----------------------------------------------------------------

Spec = str | Mapping[str, Any]


def check_augmentations(
    specs: Sequence[Spec], input_shape: Sequence[int] | None = None
) -> list[ConfigError]:
    """Every problem with an `augment:` list, all at once (empty when it is fine), each with
    its path inside the list ("augment[1].std") and no file (the reader's to fill in).

    specs: names or {name: ..., **params}; input_shape: one sample's shape (C, *spatial),
    if known, to refuse an op that cannot take that many spatial axes.
    """
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        return [_problem("augment", "expected a list of names or {name: ..., params}, found "
                                    f"{specs!r}")]
    problems = []
    for i, spec in enumerate(specs):
        where = f"augment[{i}]"
        if isinstance(spec, str):
            name, params = spec, {}
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            problems.append(_problem(where, f"expected a name or {{name: ..., params}}, "
                                            f"found {spec!r}"))
            continue
        if name not in AUGMENTATIONS:
            hint = suggest(name, AUGMENTATIONS) or f"; known: {sorted(AUGMENTATIONS)}"
            problems.append(_problem(where, f"unknown augmentation {name!r}{hint}"))
            continue
        problems += _check_params(where, name, params)
        dims = SPATIAL_DIMS[name]
        if input_shape is not None and dims is not None and len(input_shape) - 1 not in dims:
            problems.append(_problem(
                where, f"{name!r} needs inputs with {' or '.join(map(str, dims))} spatial "
                       f"axes, found input shape {tuple(input_shape)}"))
    return problems


def _problem(path: str, message: str) -> ConfigError:
    return ConfigError("", path, message)


def _check_params(where: str, name: str, params: Mapping[str, Any]) -> list[ConfigError]:
    defaults, bounds = AUGMENTATIONS[name].defaults, BOUNDS[name]
    problems = []
    for key, value in params.items():
        path = f"{where}.{key}"
        if key not in defaults:
            hint = suggest(key, defaults) or f"; known: {sorted(defaults)}"
            problems.append(_problem(path, f"unknown parameter of {name!r}{hint}"))
            continue
        want = type(defaults[key])
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            problems.append(_problem(path, f"expected {want.__name__}, found "
                                           f"{type(value).__name__} {value!r}"))
            continue
        allowed = CHOICES[name].get(key)
        if allowed is not None and value not in allowed:
            problems.append(_problem(path, f"expected one of {', '.join(map(repr, allowed))}, "
                                           f"found {value!r}{suggest(value, allowed)}"))
            continue
        low, high = bounds.get(key, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                want_range = f">= {low}"
            elif low is None:
                want_range = f"<= {high}"
            else:
                want_range = f"in [{low}, {high}]"
            problems.append(_problem(path, f"expected a value {want_range}, found {value!r}"))
    return problems


def resolve_augmentations(specs: Sequence[Spec]) -> list[tuple[str, dict[str, Any]]]:
    """Specs -> [(name, params with defaults filled)], e.g. [flip] -> [('flip', {'p': 0.5})].

    Raises ValueError listing every problem. The resolved form is what a trial's config
    (and so its hash) should hold.
    """
    problems = check_augmentations(specs)
    if problems:
        raise ValueError("\n".join(f"{e.path}: {e.message}" for e in problems))
    out = []
    for spec in specs:
        if isinstance(spec, str):
            name, params = spec, {}
        else:
            name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        out.append((name, {**AUGMENTATIONS[name].defaults, **params}))
    return out


def apply_augmentations(
    x: np.ndarray, specs: Sequence[Spec], rng: np.random.Generator
) -> np.ndarray:
    """Apply the listed ops in order. x (N, C, *spatial) float32 -> same shape, new array.

    With an empty list, x comes back as it is (not copied; nothing writes to it).
    """
    for name, params in resolve_augmentations(specs):
        x = AUGMENTATIONS[name].fn(x, rng, **params)
    return x


def augment_pair(
    x: np.ndarray,
    y: np.ndarray,
    specs: Sequence[Spec],
    rng: np.random.Generator,
    *,
    y_fill: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the listed ops to x, and each geometric one identically to a dense y.

    x (N, C, *S); y (N, C', *S) dense (moved with x) or anything else, e.g. (N,) labels
    (returned as it is). y_fill replaces an op's `fill` for y (sdf: +trunc, far space);
    None keeps the op's. Draws from rng exactly what `apply_augmentations(x, specs, rng)`
    draws, so a classification trial is the same whichever of the two the runner calls.
    """
    x = np.asarray(x, dtype=np.float32)
    dense = np.ndim(y) == x.ndim and np.shape(y)[2:] == x.shape[2:]
    for name, params in resolve_augmentations(specs):
        fn = AUGMENTATIONS[name].fn
        if dense and AUGMENTATIONS[name].geometric:
            twin = copy.deepcopy(rng)  # will draw what rng draws next: the same transform
            x = fn(x, rng, **params)
            y_params = dict(params)
            if y_fill is not None and "fill" in y_params:
                y_params["fill"] = y_fill
            y = fn(np.asarray(y, dtype=np.float32), twin, **y_params)
        else:
            x = fn(x, rng, **params)
    return x, y
