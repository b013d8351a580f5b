"""Data augmentation on the host, drawn from the trial's seeded NumPy stream.

Every op is a function `op(x, rng, **params) -> x_aug`:
    x:     (N, C, *spatial) float32, a batch; spatial is (L,), (H, W) or (D, H, W).
    rng:   the caller's `np.random.Generator` (the trial's stream), so every backend trains
           on the very same augmented batch and a seed reproduces it exactly.
    x_aug: a new float32 array of the same shape; the input is never written to.
Ops are vectorised over the batch. They act on the normalised data the tasks hand out, so
"zero" is the training mean and brightness is measured in training standard deviations.

What each op does with the spatial axes, for any number of them:
    flip        mirrors the last axis (width; the length of a 1D signal) for each sample
                with probability p. Mirroring height too would turn a 6 into a 9.
    crop        pads every spatial axis by `pad` with `fill` and crops back to the original
                size at a random offset per sample and axis: a shift of -pad..pad.
    brightness  per sample: out = c * (x - m) + m + b with m the sample's mean,
                contrast c ~ U(1 - contrast, 1 + contrast), brightness b ~ U(-brightness,
                brightness); with per_channel, m and b are per channel (a colour change).
    noise       adds i.i.d. Gaussian noise of standard deviation `std`.

An experiment lists ops by name, optionally with parameters, applied in order:

    augment: [flip, noise]
    augment: [{name: crop, pad: 2}, {name: noise, std: 0.05}]

    rotate      3D only: one of the 24 rotations of the cube, or any angle (trilinear).
    jitter      3D only: a random integer translation of up to `shift` voxels per axis.
The 3D ops live in `harness.augment3d` (imported at the end of this module, so they are
registered whenever this one is), with `augment_pair`, which moves a dense target with
its input.

Adding an op is one decorated function, e.g. (harness/augment3d.py):

    @augmentation("jitter", spatial_dims=(3,), bounds={"shift": (0, None)}, shift=2,
                  border="edge", fill=0.0)
    def jitter(x, rng, *, shift, border, fill): ...
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np


class Augmentation(NamedTuple):
    """A registered op: the function and its default parameters."""

    fn: Callable[..., np.ndarray]
    defaults: dict[str, Any]


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
    **defaults: Any,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator that registers `fn` under `name` with its default parameters."""

    def decorate(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        if name in AUGMENTATIONS:
            raise ValueError(f"augmentation {name!r} is registered twice")
        AUGMENTATIONS[name] = Augmentation(fn, dict(defaults))
        SPATIAL_DIMS[name] = spatial_dims
        BOUNDS[name] = dict(bounds or {})
        CHOICES[name] = dict(choices or {})
        return fn

    return decorate


def _batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)  # no copy when x is float32 already
    if x.ndim < 3:
        raise ValueError(f"augmentations take (N, C, *spatial), got shape {x.shape}")
    return x


def _per_sample(values: np.ndarray, ndim: int) -> np.ndarray:
    """(N,) or (N, C) -> broadcastable against an array with `ndim` axes."""
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


@augmentation("flip", bounds={"p": (0.0, 1.0)}, p=0.5)
def flip(x: np.ndarray, rng: np.random.Generator, *, p: float) -> np.ndarray:
    """Mirror the last axis of each sample with probability p. (N, C, *S) -> (N, C, *S)."""
    x = _batch(x)
    mirror = rng.random(len(x)) < p  # (N,)
    return np.where(_per_sample(mirror, x.ndim), x[..., ::-1], x)


@augmentation(
    "crop",
    bounds={"pad": (0, None)},
    choices={"border": ("edge", "constant")},
    pad=1,
    border="edge",
    fill=0.0,
)
def crop(
    x: np.ndarray, rng: np.random.Generator, *, pad: int, border: str, fill: float
) -> np.ndarray:
    """Pad every spatial axis by `pad`, crop back at a random offset (torchvision's
    RandomCrop(size, padding=pad, padding_mode="edge")). (N, C, *S) -> (N, C, *S).

    Sample n is shifted by s = offset - pad in -pad..pad along each spatial axis:
    out[n, c, i] = x[n, c, i + s] where i + s is inside; outside, the nearest border value
    (`border: edge`, the default) or `fill` (`border: constant`). Inputs are normalised, so
    a constant 0 is the mean grey, not the background: edge keeps a digit's background.
    `fill` is read only with `border: constant`.
    """
    x = _batch(x)
    offsets = rng.integers(0, 2 * pad + 1, size=(len(x), x.ndim - 2))  # (N, n_spatial)
    return translate(x, offsets - pad, pad, border, fill)


def translate(x: np.ndarray, shifts: np.ndarray, pad: int, border: str, fill: float) -> np.ndarray:
    """out[n, c, i] = x[n, c, i + shifts[n]], each shift in -pad..pad per spatial axis; where
    i + s falls outside, the nearest border value (border "edge") or `fill` ("constant").
    x (N, C, *S), shifts (N, len(S)) int -> (N, C, *S). Shared by crop and 3D jitter."""
    n, spatial = len(x), x.shape[2:]
    width = [(0, 0), (0, 0)] + [(pad, pad)] * len(spatial)
    if border == "edge":
        out = np.pad(x, width, mode="edge")
    else:
        out = np.pad(x, width, constant_values=fill)
    for d, size in enumerate(spatial):
        axis = 2 + d
        shape = [1] * x.ndim
        shape[0], shape[axis] = n, size
        idx = (pad + shifts[:, d, None] + np.arange(size)).reshape(shape)  # (N, 1, .., S_d, ..)
        out = np.take_along_axis(out, idx, axis=axis)  # this axis back to S_d
    return out


@augmentation(
    "brightness",
    bounds={"brightness": (0.0, None), "contrast": (0.0, 1.0)},
    brightness=0.2,
    contrast=0.2,
    per_channel=False,
)
def brightness(
    x: np.ndarray,
    rng: np.random.Generator,
    *,
    brightness: float,
    contrast: float,
    per_channel: bool,
) -> np.ndarray:
    """Per-sample contrast c around the mean m and additive brightness b. (N, C, *S) -> same.

    out = c * (x - m) + m + b, c ~ U(1 - contrast, 1 + contrast), b ~ U(-brightness,
    brightness); m is the sample's mean, or each channel's with per_channel (then b is
    drawn per channel too, which changes the colour balance).
    """
    x = _batch(x)
    n, c = x.shape[:2]
    spatial_axes = tuple(range(2, x.ndim))
    axes = spatial_axes if per_channel else (1, *spatial_axes)
    mean = x.mean(axis=axes, keepdims=True)  # (N, C or 1, 1, ...)
    gain = rng.uniform(1.0 - contrast, 1.0 + contrast, size=n).astype(np.float32)  # (N,)
    shift_shape = (n, c) if per_channel else (n,)
    shift = rng.uniform(-brightness, brightness, size=shift_shape).astype(np.float32)
    gain, shift = _per_sample(gain, x.ndim), _per_sample(shift, x.ndim)
    return (gain * (x - mean) + mean + shift).astype(np.float32)


@augmentation("noise", bounds={"std": (0.0, None)}, std=0.1)
def noise(x: np.ndarray, rng: np.random.Generator, *, std: float) -> np.ndarray:
    """Add i.i.d. Gaussian noise N(0, std^2). (N, C, *S) -> (N, C, *S)."""
    x = _batch(x)
    return x + np.float32(std) * rng.standard_normal(x.shape, dtype=np.float32)


# ---- specs from the YAML ----------------------------------------------------------------

Spec = str | Mapping[str, Any]


def check_augmentations(
    specs: Sequence[Spec], input_shape: Sequence[int] | None = None
) -> list[str]:
    """Every problem with an `augment:` list, all at once (empty when it is fine).

    specs: names or {name: ..., **params}; input_shape: one sample's shape (C, *spatial),
    if known, to refuse an op that cannot take that many spatial axes.
    """
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        return [f"augment must be a list of names or {{name: ..., params}}, found {specs!r}"]
    problems = []
    for i, spec in enumerate(specs):
        where = f"augment[{i}]"
        if isinstance(spec, str):
            name, params = spec, {}
        elif isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
            name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        else:
            problems.append(f"{where}: expected a name or {{name: ..., params}}, found {spec!r}")
            continue
        if name not in AUGMENTATIONS:
            near = difflib.get_close_matches(name, list(AUGMENTATIONS), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {sorted(AUGMENTATIONS)}"
            problems.append(f"{where}: unknown augmentation {name!r}{hint}")
            continue
        problems += _check_params(where, name, params)
        dims = SPATIAL_DIMS[name]
        if input_shape is not None and dims is not None and len(input_shape) - 1 not in dims:
            problems.append(
                f"{where}: {name!r} needs inputs with {' or '.join(map(str, dims))} spatial "
                f"axes, found input shape {tuple(input_shape)}"
            )
    return problems


def _check_params(where: str, name: str, params: Mapping[str, Any]) -> list[str]:
    defaults, bounds = AUGMENTATIONS[name].defaults, BOUNDS[name]
    problems = []
    for key, value in params.items():
        if key not in defaults:
            near = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {sorted(defaults)}"
            problems.append(f"{where}.{key}: unknown parameter of {name!r}{hint}")
            continue
        want = type(defaults[key])
        ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
        ok = ok or (want is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            problems.append(
                f"{where}.{key}: expected {want.__name__}, found {type(value).__name__} {value!r}"
            )
            continue
        allowed = CHOICES[name].get(key)
        if allowed is not None and value not in allowed:
            near = difflib.get_close_matches(value, allowed, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.append(
                f"{where}.{key}: expected one of {', '.join(map(repr, allowed))}, "
                f"found {value!r}{hint}"
            )
            continue
        low, high = bounds.get(key, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                want_range = f">= {low}"
            elif low is None:
                want_range = f"<= {high}"
            else:
                want_range = f"in [{low}, {high}]"
            problems.append(f"{where}.{key}: expected a value {want_range}, found {value!r}")
    return problems


def resolve_augmentations(specs: Sequence[Spec]) -> list[tuple[str, dict[str, Any]]]:
    """Specs -> [(name, params with defaults filled)], e.g. [flip] -> [('flip', {'p': 0.5})].

    Raises ValueError listing every problem. The resolved form is what a trial's config
    (and so its hash) should hold.
    """
    problems = check_augmentations(specs)
    if problems:
        raise ValueError("\n".join(problems))
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


# The 3D ops register themselves on import; last, since they use the names above.
from harness import augment3d  # noqa: E402, F401
