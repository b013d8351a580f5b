"""3D augmentation: rotations and translational jitter of voxel grids. Registered in
registry.py's registry (the package imports this module), so `augment: [rotate, jitter]`
works in any experiment whose input has three spatial axes.

Both ops take x (N, C, D, H, W) float32 and the caller's generator, draw one transform per
sample, and return a new array of the same shape:
    rotate  mode "cube": one of the 24 rotations of the cube, uniformly (index 0 is the
            identity); exact, a composition of np.rot90, so voxel values and counts are
            kept. Needs D == H == W.
            mode "any": about a uniformly random axis by an angle ~ U(-degrees, degrees),
            about the grid centre, resampled trilinearly (scipy.ndimage.map_coordinates,
            order=1). Values are interpolated, so an occupancy or a mask becomes fractional.
    jitter  a random integer translation of -shift..shift voxels along each axis.
Where a transform brings in space from outside the grid, `border: edge` (the default)
repeats the nearest border voxel, and `border: constant` puts `fill`. Edge suits both 3D
tasks: their primitives keep clear of the border, so the border is empty (shapes3d; in the
normalised input "empty" is -x_mean / x_std, not 0) or far, free space (sdf).

Each op's random draws depend on the number of samples only, never on channels or values.
That is what `registry.augment_pair` relies on: it replays the generator's state to apply the very
same transform to a dense target y (N, C', D, H, W) as to x, and leaves a class label (or
any y without x's spatial axes) alone. Photometric ops (brightness, noise) change x only.

    x_aug, y_aug = augment_pair(x, y, [rotate, jitter], rng, y_fill=trunc)

The training loop calls `augment_pair` for every task (for a class label it draws the very
same numbers as `apply_augmentations` on x alone).
"""

from __future__ import annotations

import numpy as np

from harness.data.augment.ops2d import translate
from harness.data.augment.registry import augmentation

BORDERS = {"edge": "nearest", "constant": "constant"}  # ours -> scipy.ndimage's mode name


def _cube_rotations() -> tuple[tuple[tuple[int, tuple[int, int]], ...], ...]:
    """The 24 rotations of the cube as np.rot90 steps (k, (axis, axis)) on the spatial axes.

    Bring each of the six faces to the front of axis 0, then turn 0-3 quarter turns about
    axis 0: 6 x 4 distinct rotations, all of them (the rotation group of the cube).
    """
    faces = [(), ((1, (0, 2)),), ((2, (0, 2)),), ((3, (0, 2)),), ((1, (0, 1)),), ((3, (0, 1)),)]
    spins = [((k, (1, 2)),) if k else () for k in range(4)]
    return tuple(face + spin for face in faces for spin in spins)


CUBE_ROTATIONS = _cube_rotations()  # [0] is the identity, [1] a quarter turn about axis 0


def cube_rotate(x: np.ndarray, index: int) -> np.ndarray:
    """Rotation number `index` of CUBE_ROTATIONS on (N, C, D, D, D) -> (N, C, D, D, D)."""
    for k, (a, b) in CUBE_ROTATIONS[index]:
        x = np.rot90(x, k, axes=(a + 2, b + 2))  # spatial axes start at 2
    return x


def axis_angle_matrices(axis: np.ndarray, degrees: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: unit axes (N, 3), angles (N,) -> rotation matrices (N, 3, 3)."""
    theta = np.deg2rad(degrees)[:, None, None]  # (N, 1, 1)
    a0, a1, a2 = axis.T
    zero = np.zeros_like(a0)
    k = np.stack(
        [
            np.stack([zero, -a2, a1], -1),
            np.stack([a2, zero, -a0], -1),
            np.stack([-a1, a0, zero], -1),
        ],
        axis=1,
    )  # (N, 3, 3) cross-product matrix
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def rotate_volume(
    x: np.ndarray,
    matrices: np.ndarray,
    *,
    order: int = 1,
    border: str = "edge",
    fill: float = 0.0,
) -> np.ndarray:
    """Rotate each sample about the grid centre: out(p) = x(R^T (p - c) + c).

    x (N, C, D, H, W); matrices (N, 3, 3) acting on (d, h, w) coordinates -> (N, C, D, H, W)
    float32, resampled with spline `order` (1: trilinear).
    """
    from scipy.ndimage import map_coordinates  # deferred: ~0.3 s, only rotate mode any

    n, c, *spatial = x.shape
    grid = np.stack(np.meshgrid(*(np.arange(s) for s in spatial), indexing="ij"), -1)
    centre = (np.asarray(spatial) - 1) / 2.0
    u = grid.reshape(-1, 3) - centre  # (P, 3) output points about the centre
    src = np.einsum("pj,nji->npi", u, matrices) + centre  # (N, P, 3): u R = (R^T u)^T
    # A multiple of 90 degrees lands on voxel centres; snapping rounding noise keeps it exact.
    snapped = np.rint(src)
    src = np.where(np.abs(src - snapped) < 1e-9, snapped, src)
    sample = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None], src.shape[:2])  # (N, P)
    coords = np.concatenate([sample[None], np.moveaxis(src, -1, 0)])  # (4, N, P)
    coords = coords.reshape(4, n, *spatial)  # (4, N, D, H, W): sample index, then d, h, w
    out = np.empty(x.shape, dtype=np.float32)
    for ch in range(c):
        out[:, ch] = map_coordinates(
            x[:, ch], coords, order=order, mode=BORDERS[border], cval=fill
        )  # (N, D, H, W)
    return out


def _check(x: np.ndarray, border: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 5:
        raise ValueError(f"3D augmentations take (N, C, D, H, W), got shape {x.shape}")
    if border not in BORDERS:
        raise ValueError(f"border must be one of {sorted(BORDERS)}, got {border!r}")
    return x


@augmentation(
    "rotate",
    geometric=True,
    spatial_dims=(3,),
    bounds={"degrees": (0.0, 180.0)},
    choices={"mode": ("cube", "any"), "border": tuple(BORDERS)},
    mode="cube",
    degrees=180.0,
    border="edge",
    fill=0.0,
)
def rotate(
    x: np.ndarray, rng: np.random.Generator, *, mode: str, degrees: float, border: str, fill: float
) -> np.ndarray:
    """A random rotation per sample (module docstring). (N, C, D, H, W) -> same shape."""
    x = _check(x, border)
    n = len(x)
    if mode == "cube":
        if len(set(x.shape[2:])) != 1:
            raise ValueError(f"rotate mode 'cube' needs a cubic grid, got {x.shape[2:]}")
        index = rng.integers(0, len(CUBE_ROTATIONS), size=n)  # (N,)
        out = np.empty_like(x)
        for r in np.unique(index):
            out[index == r] = cube_rotate(x[index == r], int(r))
        return out
    if mode == "any":
        axis = rng.standard_normal((n, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)  # (N, 3) uniform on the sphere
        angle = rng.uniform(-degrees, degrees, size=n)  # (N,)
        return rotate_volume(x, axis_angle_matrices(axis, angle), border=border, fill=fill)
    raise ValueError(f"rotate mode must be 'cube' or 'any', got {mode!r}")


@augmentation(
    "jitter",
    geometric=True,
    spatial_dims=(3,),
    bounds={"shift": (0, None)},
    choices={"border": tuple(BORDERS)},
    shift=2,
    border="edge",
    fill=0.0,
)
def jitter(
    x: np.ndarray, rng: np.random.Generator, *, shift: int, border: str, fill: float
) -> np.ndarray:
    """Translate each sample by s ~ U{-shift..shift}^3 voxels: out[n, c, i] = x[n, c, i - s],
    with the border repeated or `fill` where i - s falls outside. (N, C, D, H, W) -> same."""
    x = _check(x, border)
    s = rng.integers(-shift, shift + 1, size=(len(x), 3))  # (N, 3)
    return translate(x, -s, shift, border, fill)
