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
The 3D ops live in `ops3d.py`; the registry, the checks of an `augment:` list and
`augment_pair`, the one entry point of the training loop, in `registry.py`.

Adding an op is one decorated function, e.g. (ops3d.py):

    @augmentation("jitter", spatial_dims=(3,), bounds={"shift": (0, None)}, shift=2,
                  border="edge", fill=0.0)
    def jitter(x, rng, *, shift, border, fill): ...
"""

from __future__ import annotations

import numpy as np

from harness.data.augment.registry import augmentation


def _batch(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)  # no copy when x is float32 already
    if x.ndim < 3:
        raise ValueError(f"augmentations take (N, C, *spatial), got shape {x.shape}")
    return x


def _per_sample(values: np.ndarray, ndim: int) -> np.ndarray:
    """(N,) or (N, C) -> broadcastable against an array with `ndim` axes."""
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


@augmentation("flip", geometric=True, bounds={"p": (0.0, 1.0)}, p=0.5)
def flip(x: np.ndarray, rng: np.random.Generator, *, p: float) -> np.ndarray:
    """Mirror the last axis of each sample with probability p. (N, C, *S) -> (N, C, *S)."""
    x = _batch(x)
    mirror = rng.random(len(x)) < p  # (N,)
    return np.where(_per_sample(mirror, x.ndim), x[..., ::-1], x)


@augmentation(
    "crop",
    geometric=True,
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
