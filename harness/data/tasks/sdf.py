"""`sdf`: complete a truncated signed distance field from what one camera sees.

The setting of 3D-EPN (Dai, Qi and Niessner, "Shape Completion using 3D-Encoder-Predictor
CNNs and Shape Synthesis", CVPR 2017) and SGNN (Dai, Diller, Niessner, Sturm and Niessner,
"SG-NN: Sparse Generative Neural Networks for Self-Supervised Scene Completion of RGB-D
Scans", CVPR 2020), on generated scenes: the network sees a partial TSDF with a
known/unknown mask and regresses the complete TSDF.

Scenes. One to `max_primitives` primitives of `harness.data.tasks.primitives` (kind uniform over
the five, size s ~ U(0.22, 0.32) x S voxels, random rotation and position inside the grid;
overlaps allowed). All units are voxels.

Target y (N, 1, S, S, S) float32: the complete truncated SDF, the union (minimum) of the
primitives' analytic distances at the voxel centres, clipped to [-trunc, trunc]. It is NOT
normalised (`y_mean`/`y_std` are None), so an MAE is in voxels.

Input x (N, 2, S, S, S) float32, as in 3D-EPN and SGNN:
    channel 0  the observed TSDF divided by `trunc` where known (in (0, 1]), 0 where unknown
    channel 1  the mask: 1 known, 0 unknown
(`x_std` is (trunc, 1) per channel and `x_mean` 0, so x * x_std + x_mean is in voxels.)
What is known is what one camera sees. A pinhole at distance 1.2 S from the grid centre,
in a uniformly random direction per scene, casts one ray through every voxel centre; each
ray is sphere-traced against the analytic SDF (Hart, "Sphere tracing", The Visual Computer
1996: step by the distance, which can never cross a surface) to its first surface hit at
depth t_hit. A voxel at depth t_v < t_hit lies in front of the surface the camera sees: it
is known, observed as the projective distance min(t_hit - t_v, trunc) along its ray, as a
depth camera's TSDF fusion records it (Curless and Levoy, SIGGRAPH 1996). That is never
less than the true distance (less HIT_EPS: the hit point is that close to the surface),
and equal where the ray meets the surface head on or both are truncated. Everything at or
behind the first surface, the inside of every primitive included, is unknown: 0 in
channel 0, 0 in the mask.

Trivial baseline (`trivial_baseline`): the input where known, +trunc elsewhere. Its
validation scores are in `Dataset.info["baseline"]`. Metrics: the runner's val/mae (all
voxels) and, from `extra_metrics`, val/mae_unknown (unknown voxels only) and val/iou (IoU
of the surface band |sdf| < 1 voxel, per scene, averaged).

The trial seed drives generation (as in mario), with independent child streams per split.
Ray casting costs seconds (6.7-7.2 s for 1000 scenes of 16^3 on this idle 2-core machine,
`python -m benchmarks.generators`), so a load is cached as .npz in the cache directory,
keyed by VERSION, options and seed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.data.tasks.base import Dataset, cached_npz, register
from harness.data.tasks.primitives import (
    CLASSES,
    Primitives,
    random_shapes,
    ray_sdf,
    scene_sdf,
    voxel_centres,
)

VERSION = 1  # part of the cache key: bump when generation changes
SCALE = (0.22, 0.32)  # primitive size s / S, as in shapes3d
CAMERA_DISTANCE = 1.2  # camera to grid centre, in units of S: outside the grid's circumsphere
HIT_EPS = 1e-2  # sphere tracing stops this close to a surface, voxels
MAX_STEPS = 256  # a ray still unresolved then (it grazes a surface) leaves its voxel unknown
RAY_CHUNK = 2**18  # rays marched at once (bounds memory)
SURFACE = 1.0  # |sdf| below this, in voxels, is the surface band the IoU compares


@dataclass(frozen=True)
class SdfOptions:
    n_train: int = 512  # training scenes
    n_val: int = 128  # validation scenes
    n_test: int = 0  # test scenes; 0 for none
    size: int = 16  # grid side S, voxels (a UNet of depth d needs S divisible by 2^d)
    trunc: float = 3.0  # truncation of the SDF, voxels
    max_primitives: int = 3  # each scene holds 1..max_primitives primitives, uniformly

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_val < 1 or self.n_test < 0:
            raise ValueError("n_train and n_val must be >= 1 and n_test >= 0")
        if not 8 <= self.size <= 64:
            raise ValueError(f"size must be in [8, 64], got {self.size}")
        if self.trunc <= 0:
            raise ValueError(f"trunc must be > 0, got {self.trunc}")
        if self.max_primitives < 1:
            raise ValueError(f"max_primitives must be >= 1, got {self.max_primitives}")


def make_scenes(n: int, size: int, max_primitives: int, rng: np.random.Generator) -> Primitives:
    """n scenes of 1..max_primitives primitives each: Primitives with K = max_primitives."""
    k = max_primitives
    count = rng.integers(1, k + 1, size=n)  # (n,) primitives per scene
    kind = rng.integers(0, len(CLASSES), size=(n, k))  # (n, K)
    dims, rotation, centre = random_shapes(kind.reshape(-1), size, SCALE, rng)  # (n K, ...)
    return Primitives(
        kind=kind,
        centre=centre.reshape(n, k, 3),
        rotation=rotation.reshape(n, k, 3, 3),
        dims=dims.reshape(n, k, 3),
        valid=np.arange(k)[None, :] < count[:, None],  # (n, K)
    )


def camera_origins(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One pinhole per scene, (n, 3): CAMERA_DISTANCE x S from the grid centre, uniform
    direction (normalised Gaussian vectors)."""
    u = rng.standard_normal((n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return (size - 1) / 2.0 + CAMERA_DISTANCE * size * u


def first_hits(prims: Primitives, origin: np.ndarray, size: int, t_stop: float) -> tuple:
    """Sphere-trace a ray from each scene's camera through each of its voxel centres.

    origin (N, 3) -> (t_hit, t_voxel), each (N, S^3) float64: the depth of the first surface
    hit (inf where none before t_voxel + t_stop, which is all a TSDF needs) and of the voxel.
    """
    points = voxel_centres(size)  # (P, 3)
    n, p, k = len(prims), len(points), prims.kind.shape[1]
    t_hit = np.full((n, p), np.inf)
    t_voxel = np.empty((n, p))
    step = max(1, RAY_CHUNK // p)
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        b = rows.stop - rows.start
        ray = points[None] - origin[rows, None]  # (B, P, 3)
        t_voxel[rows] = np.linalg.norm(ray, axis=-1)  # (B, P)
        direction = ray / t_voxel[rows, :, None]  # (B, P, 3) unit
        rot = prims.rotation[rows]  # (B, K, 3, 3)
        # Each primitive's local frame: q(t) = R^T (o + t u - c) = o_loc + t u_loc.
        o_loc = np.einsum("bkj,bkji->bki", origin[rows, None] - prims.centre[rows], rot)
        u_loc = np.einsum("bpj,bkji->bpki", direction, rot)  # (B, P, K, 3)
        o_loc = np.broadcast_to(o_loc[:, None], (b, p, k, 3)).reshape(b * p, k, 3)
        u_loc = u_loc.reshape(b * p, k, 3)  # (R, K, 3), R = B P rays
        kind = np.repeat(prims.kind[rows], p, axis=0)  # (R, K)
        dims = np.repeat(prims.dims[rows], p, axis=0)  # (R, K, 3)
        valid = np.repeat(prims.valid[rows], p, axis=0)  # (R, K)
        t_vox = t_voxel[rows].reshape(-1)  # (R,)
        t_hit[rows] = _march(o_loc, u_loc, kind, dims, valid, t_vox, t_stop).reshape(b, p)
    return t_hit, t_voxel


def _march(o_loc, u_loc, kind, dims, valid, t_voxel, t_stop) -> np.ndarray:
    """Sphere tracing of R rays, compacted to the unfinished ones each step. -> (R,) t_hit.

    A ray stops at a hit (distance < HIT_EPS) or past t_voxel + t_stop (inf: no hit).
    """
    t_hit = np.full(len(t_voxel), np.inf)
    ids = np.arange(len(t_voxel))  # which rays are still marching
    t = np.zeros(len(t_voxel))
    for _ in range(MAX_STEPS):
        d = ray_sdf(o_loc, u_loc, t, kind, dims, valid)  # (active,)
        hit = d < HIT_EPS
        t_hit[ids[hit]] = t[hit]
        t = t + d
        keep = ~hit & (t < t_voxel + t_stop)
        if not keep.any():
            return t_hit
        if not keep.all():
            ids, t, o_loc, u_loc, kind, dims, valid, t_voxel = (
                a[keep] for a in (ids, t, o_loc, u_loc, kind, dims, valid, t_voxel)
            )
    # Out of steps, a ray creeps along a surface it grazes: its voxel is left unknown (a
    # "hit" at the voxel), rather than observed at a distance no surface backs up.
    t_hit[ids] = np.minimum(t, t_voxel)
    return t_hit


def make_split(o: SdfOptions, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One split: {'x': (n, 2, S, S, S), 'y': (n, 1, S, S, S)} float32, see the module doc."""
    s, trunc = o.size, o.trunc
    prims = make_scenes(n, s, o.max_primitives, rng)
    origin = camera_origins(n, s, rng)
    complete = scene_sdf(voxel_centres(s), prims)  # (n, S^3), voxels
    t_hit, t_voxel = first_hits(prims, origin, s, trunc)
    known = t_voxel < t_hit  # (n, S^3): in front of the first surface on the voxel's ray
    observed = np.where(known, np.minimum(t_hit - t_voxel, trunc), 0.0)  # (n, S^3)
    x = np.stack([observed / trunc, known], axis=1)  # (n, 2, S^3)
    y = np.clip(complete, -trunc, trunc)[:, None]  # (n, 1, S^3)
    return {
        "x": x.reshape(n, 2, s, s, s).astype(np.float32),  # (n, 2, S, S, S)
        "y": y.reshape(n, 1, s, s, s).astype(np.float32),  # (n, 1, S, S, S)
    }


def trivial_baseline(x: np.ndarray, trunc: float) -> np.ndarray:
    """The input where known, +trunc elsewhere: x (N, 2, S, S, S) as the task hands it out
    (channel 0 is TSDF / trunc) -> prediction (N, 1, S, S, S) float32 in voxels."""
    known = x[:, 1:2] > 0.5  # (N, 1, S, S, S)
    return np.where(known, x[:, 0:1] * trunc, trunc).astype(np.float32)


def surface_iou(outputs: np.ndarray, y: np.ndarray) -> float:
    """Mean over scenes of the IoU of the surface bands |sdf| < 1 voxel. (N, ...) each.

    A scene where both bands are empty counts as 1 (nothing to find, nothing found).
    """
    a = (np.abs(outputs) < SURFACE).reshape(len(y), -1)  # (N, voxels)
    b = (np.abs(y) < SURFACE).reshape(len(y), -1)
    inter, union = (a & b).sum(axis=1), (a | b).sum(axis=1)  # (N,)
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


def extra_metrics(
    x: np.ndarray, outputs: np.ndarray, y: np.ndarray, prefix: str
) -> dict[str, float]:
    """The sdf task's metrics beyond the runner's loss and MAE, in voxels.

    x (N, 2, S, S, S) inputs (channel 1 the known mask); outputs and y (N, 1, S, S, S) in
    voxels (y is not normalised). -> {prefix/mae_unknown: mean |outputs - y| over unknown
    voxels (nan if none), prefix/iou: `surface_iou`}.
    """
    unknown = x[:, 1:2] < 0.5  # (N, 1, S, S, S)
    err = np.abs(np.asarray(outputs, np.float64) - y)[unknown]  # (unknown voxels,)
    mae_unknown = float(err.mean()) if err.size else float("nan")
    return {f"{prefix}/mae_unknown": mae_unknown, f"{prefix}/iou": surface_iou(outputs, y)}


def cache_path(cache_dir: Path, o: SdfOptions, seed: int) -> Path:
    key = json.dumps({"version": VERSION, "seed": seed, **asdict(o)}, sort_keys=True)
    return cache_dir / f"sdf-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


@register(
    "sdf",
    kind="dense_regression",
    loss="l1",
    metrics=("val/mae", "val/mae_unknown", "val/iou"),
    options=SdfOptions,
    extra_metrics=extra_metrics,
)
def load(options: SdfOptions, *, seed: int, cache_dir: Path) -> Dataset:
    """Complete a truncated SDF from one camera's partial view (dense regression, L1)."""
    o = options
    names = ("train", "val", "test")
    sizes = (o.n_train, o.n_val, o.n_test)

    def build() -> dict[str, np.ndarray]:
        streams = np.random.SeedSequence(seed).spawn(3)
        out = {}
        for name, n, ss in zip(names, sizes, streams):
            if n > 0:
                split = make_split(o, n, np.random.default_rng(ss))
                out |= {f"x_{name}": split["x"], f"y_{name}": split["y"]}
        return out

    arrays, hit = cached_npz(cache_path(cache_dir, o, seed), build)
    x_std = np.array([o.trunc, 1.0], dtype=np.float32).reshape(2, 1, 1, 1)  # raw = x * x_std
    baseline = trivial_baseline(arrays["x_val"], o.trunc)  # (n_val, 1, S, S, S)
    scores = {"val/mae": float(np.mean(np.abs(baseline - arrays["y_val"])))}
    scores |= extra_metrics(arrays["x_val"], baseline, arrays["y_val"], "val")
    return Dataset(
        name="sdf",
        kind="dense_regression",
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_val=arrays["x_val"],
        y_val=arrays["y_val"],
        x_test=arrays.get("x_test"),
        y_test=arrays.get("y_test"),
        n_outputs=1,
        x_mean=np.zeros((2, 1, 1, 1), dtype=np.float32),
        x_std=x_std,
        y_mean=None,  # y stays in voxels: MAE is in voxels
        y_std=None,
        info={
            "seed": seed,
            "size": o.size,
            "trunc": o.trunc,
            "units": "voxels",
            "y_fill": o.trunc,  # what y holds where a translation brings in new space
            "baseline": scores,
            "cache_hit": hit,
        },
    )
