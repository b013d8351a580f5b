"""`shapes3d`: which primitive fills this voxel grid? Five classes, at random pose and scale.

Each sample is one primitive of `harness.data.tasks.primitives` (sphere, box, cylinder, cone,
torus; the label is its index in `CLASSES`), with random proportions, a uniformly random
rotation (Shoemake's quaternions), a size s ~ U(0.22, 0.32) x S voxels and a random
position that keeps it inside the grid. The occupancy is sdf <= 0 at the voxel centres, the
analytic SDF evaluated for a whole batch of scenes at once by broadcasting (one pass per
class, no loop over voxels or scenes). Input (1, S, S, S) float32, S = `size` (16 or 32;
any size from 8 to 64 works): occupancy 0/1, standardised with the training split's one
mean/std (a zero in the normalised input is the mean occupancy, not empty space: an empty
voxel is -x_mean / x_std). Labels int64, balanced: each split holds n // 5 or n // 5 + 1 of
every class, in random order.

Like mario and unlike digits, the trial seed drives generation: each seed sees fresh scenes,
so error bars over seeds include the data's variation. Train, val and test use independent
child streams of the seed, so changing `n_train` leaves the validation set unchanged.
Generation is fast (1000 scenes: 0.16 s at 16^3, 1.3 s at 32^3 on this idle 2-core machine,
`python -m benchmarks.generators`), so nothing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.tasks.base import Dataset, register, standardise
from harness.data.tasks.primitives import (
    CLASSES,
    Primitives,
    random_shapes,
    scene_sdf,
    voxel_centres,
)

SCALE = (0.22, 0.32)  # primitive size s / S: large enough to tell a torus's hole at 16^3


def make_scenes(n: int, size: int, rng: np.random.Generator) -> Primitives:
    """n one-primitive scenes, labels balanced and shuffled: Primitives with K = 1."""
    kind = rng.permutation(np.arange(n) % len(CLASSES))  # (n,) balanced labels
    dims, rotation, centre = random_shapes(kind, size, SCALE, rng)
    return Primitives(
        kind=kind[:, None],  # (n, 1)
        centre=centre[:, None],  # (n, 1, 3)
        rotation=rotation[:, None],  # (n, 1, 3, 3)
        dims=dims[:, None],  # (n, 1, 3)
        valid=np.ones((n, 1), dtype=bool),
    )


def occupancy(prims: Primitives, size: int) -> np.ndarray:
    """Occupancy sdf <= 0 at the voxel centres: (N, 1, S, S, S) float32 of 0 and 1."""
    sdf = scene_sdf(voxel_centres(size), prims)  # (N, S^3)
    return (sdf <= 0.0).astype(np.float32).reshape(len(prims), 1, size, size, size)


def make_split(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 1, S, S, S) float32 occupancy and y (n,) int64 labels."""
    prims = make_scenes(n, size, rng)
    return occupancy(prims, size), prims.kind[:, 0].astype(np.int64)


@dataclass(frozen=True)
class Shapes3dOptions:
    n_train: int = 2000  # training scenes
    n_val: int = 500  # validation scenes
    n_test: int = 500  # test scenes; 0 for none
    size: int = 16  # grid side S: 16^3 or 32^3 voxels (8 to 64 accepted)

    def __post_init__(self) -> None:
        if self.n_train < 1 or self.n_val < 1 or self.n_test < 0:
            raise ValueError("n_train and n_val must be >= 1 and n_test >= 0")
        if not 8 <= self.size <= 64:
            raise ValueError(f"size must be in [8, 64] (16 or 32 intended), got {self.size}")


@register(
    "shapes3d",
    kind="classification",
    loss="cross_entropy",
    metrics=("val/accuracy",),
    options=Shapes3dOptions,
)
def load(options: Shapes3dOptions, *, seed: int, cache_dir: Path) -> Dataset:
    """Voxel grids of random primitives at random pose and scale (classification, 5 classes)."""
    del cache_dir  # generated in about a second; nothing to cache
    o = options
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    x_tr, y_tr = make_split(o.n_train, o.size, streams[0])
    x_va, y_va = make_split(o.n_val, o.size, streams[1])
    x_te, y_te = make_split(max(o.n_test, 1), o.size, streams[2])
    mean, std, (x_tr, x_va, x_te) = standardise(x_tr, x_va, x_te, axes=(0, 2, 3, 4))
    has_test = o.n_test > 0
    return Dataset(
        name="shapes3d",
        kind="classification",
        x_train=x_tr,
        y_train=y_tr,
        x_val=x_va,
        y_val=y_va,
        x_test=x_te if has_test else None,
        y_test=y_te if has_test else None,
        n_outputs=len(CLASSES),
        x_mean=mean,  # (1, 1, 1, 1): one channel
        x_std=std,
        info={"seed": seed, "classes": CLASSES, "size": o.size, "units": "voxels"},
    )
