"""Analytic signed distance functions of five primitives, posed at random in a voxel grid.

Shared by the 3D tasks `shapes3d` (occupancy of one primitive) and `sdf` (the distance field
of one to three). Units are voxels: voxel (i, j, k) has its centre at the point (i, j, k),
so an S^3 grid spans [0, S - 1]^3 and its centre is ((S - 1) / 2,) * 3.

A primitive sits in its own local frame, centred at the origin with its axis along local
axis 2, and is posed by a rotation R (local -> world) and a centre c: a world point p has
local coordinates q = R^T (p - c), written for row vectors as q = (p - c) @ R. Rigid motions
keep distances, so each SDF below is exact in the world frame too.

The distance formulas are Inigo Quilez's, "distance functions" (iquilezles.org/articles/
distfunctions), all of them the exact Euclidean distance, negative inside:
    sphere    |q| - r                                                    dims (r, -, -)
    box       |max(w, 0)| + min(max_i w_i, 0),  w = |q| - b              dims (bx, by, bz)
    cylinder  capped, radius r, half-height h ("Capped Cylinder - exact") dims (r, h, -)
    cone      base radius r at q_2 = -h, apex at q_2 = +h ("Capped Cone - exact", r2 = 0)
                                                                         dims (r, h, -)
    torus     |(|q_xy| - R, q_2)| - r                                    dims (R, r, -)
The union of several primitives is the minimum of their distances: exact outside, and a
bound (the depth in the deepest primitive) inside where two overlap (Quilez, same page).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

CLASSES = ("sphere", "box", "cylinder", "cone", "torus")  # a primitive's kind is its index

# Each kind's dims in units of its size s: a (low, high) range per component, drawn uniformly.
PROPORTIONS = np.array(
    [
        [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]],  # sphere: radius s
        [[0.5, 0.9], [0.5, 0.9], [0.5, 0.9]],  # box: half-extents
        [[0.5, 0.9], [0.5, 0.9], [0.0, 0.0]],  # cylinder: radius, half-height
        [[0.6, 1.0], [0.6, 1.0], [0.0, 0.0]],  # cone: base radius, half-height
        [[0.65, 0.8], [0.22, 0.32], [0.0, 0.0]],  # torus: major radius, tube radius
    ]
)  # (kinds, 3 dims, low/high)


def _length(*parts: np.ndarray) -> np.ndarray:
    return np.sqrt(sum(p * p for p in parts))


def sd_sphere(q: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """q (..., 3) local points, dims (..., 3) broadcastable -> (...,) signed distance."""
    return _length(q[..., 0], q[..., 1], q[..., 2]) - dims[..., 0]


def sd_box(q: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Box of half-extents dims (bx, by, bz). q (..., 3) -> (...,)."""
    w = np.abs(q) - dims  # (..., 3): how far outside each pair of faces
    outside = _length(*(np.maximum(w[..., i], 0.0) for i in range(3)))
    inside = np.minimum(np.max(w, axis=-1), 0.0)
    return outside + inside


def sd_cylinder(q: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Capped cylinder about local axis 2, radius dims[0], half-height dims[1].

    q (..., 3) -> (...,).
    """
    dx = _length(q[..., 0], q[..., 1]) - dims[..., 0]
    dy = np.abs(q[..., 2]) - dims[..., 1]
    return np.minimum(np.maximum(dx, dy), 0.0) + _length(np.maximum(dx, 0.0), np.maximum(dy, 0.0))


def sd_cone(q: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Cone about local axis 2: base radius dims[0] at q_2 = -h, apex at +h, h = dims[1].

    Quilez's sdCappedCone(p, h, r1, r2) with r1 = dims[0], r2 = 0, in 2D coordinates
    (radial, axial) = (|q_xy|, q_2). (..., 3) -> (...,).
    """
    r1, h = dims[..., 0], dims[..., 1]
    qx, qy = _length(q[..., 0], q[..., 1]), q[..., 2]
    # k1 = (r2, h) = (0, h): the apex; k2 = (r2 - r1, 2h): the slanted side, base to apex.
    k2x, k2y = -r1, 2.0 * h
    cax = qx - np.minimum(qx, np.where(qy < 0.0, r1, 0.0))  # to the base disc (or apex)
    cay = np.abs(qy) - h
    s = np.clip(((0.0 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
    cbx, cby = qx + k2x * s, qy - h + k2y * s  # to the nearest point of the slanted side
    sign = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
    return sign * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))


def sd_torus(q: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Torus about local axis 2, major radius dims[0], minor radius dims[1]. (..., 3) -> (...,)."""
    ring = _length(q[..., 0], q[..., 1]) - dims[..., 0]
    return _length(ring, q[..., 2]) - dims[..., 1]


SDFS: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    sd_sphere,
    sd_box,
    sd_cylinder,
    sd_cone,
    sd_torus,
)


@dataclass(frozen=True)
class Primitives:
    """K primitive slots in each of N scenes; a scene uses the slots where `valid` is set.

    kind (N, K) int64 index into CLASSES; centre (N, K, 3) and dims (N, K, 3) in voxels;
    rotation (N, K, 3, 3) local -> world; valid (N, K) bool.
    """

    kind: np.ndarray
    centre: np.ndarray
    rotation: np.ndarray
    dims: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """n rotation matrices (n, 3, 3), uniform over SO(3): from normalised Gaussian quaternions
    (Shoemake, "Uniform random rotations", Graphics Gems III, 1992)."""
    q = rng.standard_normal((n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T  # each (n,)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )  # (n, 3, 3), rows of R


def random_shapes(
    kind: np.ndarray, size: int, scale: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random dims, rotation and centre for primitives of the given kinds in an S^3 grid.

    kind (M,) int -> dims (M, 3), rotation (M, 3, 3), centre (M, 3). The size s ~ U(scale)
    x S sets the proportions (sphere radius s, box half-extents U(0.5, 0.9) s, ...); it
    shrinks where needed so that the primitive's bounding sphere fits inside the grid with
    one voxel to spare, and the centre moves uniformly while it still fits.
    """
    m = len(kind)
    low, high = PROPORTIONS[kind, :, 0], PROPORTIONS[kind, :, 1]  # (M, 3) each
    unit = low + (high - low) * rng.uniform(size=(m, 3))  # (M, 3) dims in units of s
    bound = np.select(  # radius of the bounding sphere about the centre, in units of s
        [kind == 0, kind == 1, kind == 4],
        [unit[:, 0], np.linalg.norm(unit, axis=1), unit[:, 0] + unit[:, 1]],
        np.hypot(unit[:, 0], unit[:, 1]),  # cylinder and cone: corner of the rim
    )
    half = size / 2.0 - 1.0  # room from the grid centre to one voxel inside the border
    s = np.minimum(rng.uniform(*scale, size=m) * size, half / bound)  # (M,) voxels
    margin = half - s * bound  # (M,) >= 0: how far the centre may move per axis
    centre = (size - 1) / 2.0 + rng.uniform(-1.0, 1.0, size=(m, 3)) * margin[:, None]
    return unit * s[:, None], random_rotations(m, rng), centre


def voxel_centres(size: int) -> np.ndarray:
    """All voxel centres of an S^3 grid, (S^3, 3) float64, in C order of (D, H, W)."""
    axis = np.arange(size, dtype=np.float64)
    return np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)  # (S^3, 3)


def scene_sdf(points: np.ndarray, prims: Primitives, chunk: int = 2**21) -> np.ndarray:
    """Union SDF of every scene's primitives at shared points: (P, 3) -> (N, P) float64.

    Vectorised over scenes with broadcasting; one pass per (slot, kind) and per chunk of
    scenes holding about `chunk` points, so memory stays bounded for 32^3 grids.
    """
    n, k_slots = prims.kind.shape
    out = np.full((n, len(points)), np.inf)
    step = max(1, chunk // len(points))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        for k in range(k_slots):
            for kind, sdf in enumerate(SDFS):
                idx = start + np.flatnonzero(prims.valid[rows, k] & (prims.kind[rows, k] == kind))
                if len(idx) == 0:
                    continue
                offset = points[None] - prims.centre[idx, k, None, :]  # (B, P, 3)
                q = offset @ prims.rotation[idx, k]  # (B, P, 3) local: (p - c) R = R^T (p - c)
                d = sdf(q, prims.dims[idx, k, None, :])  # (B, P)
                out[idx] = np.minimum(out[idx], d)
    return out


def ray_sdf(
    origin: np.ndarray,
    direction: np.ndarray,
    t: np.ndarray,
    kind: np.ndarray,
    dims: np.ndarray,
    valid: np.ndarray,
) -> np.ndarray:
    """Union SDF at points origin + t direction given in each primitive's local frame.

    origin, direction, dims (R, K, 3); t (R,); kind (R, K); valid (R, K) -> (R,). Each ray
    carries its own scene's primitives, so rays of many scenes march together.
    """
    q = origin + t[:, None, None] * direction  # (R, K, 3)
    out = np.full(len(t), np.inf)
    for k in range(kind.shape[1]):
        for kd, sdf in enumerate(SDFS):
            sel = np.flatnonzero(valid[:, k] & (kind[:, k] == kd))
            if len(sel):
                out[sel] = np.minimum(out[sel], sdf(q[sel, k], dims[sel, k]))
    return out
