"""Augmentation on the host, from the trial's seeded stream (SPEC 2, 4.2).

    registry.py  the registry, the checks of an `augment:` list, `augment_pair`
    ops2d.py     flip, crop, brightness, noise (any number of spatial axes)
    ops3d.py     rotate, jitter (voxel grids)

Importing the package registers every op.
"""

from harness.data.augment import ops2d, ops3d  # noqa: F401 -- they register on import
from harness.data.augment.registry import (
    AUGMENTATIONS,
    Augmentation,
    Spec,
    apply_augmentations,
    augment_pair,
    augmentation,
    check_augmentations,
    resolve_augmentations,
)

__all__ = ["AUGMENTATIONS", "Augmentation", "Spec", "apply_augmentations", "augment_pair",
           "augmentation", "check_augmentations", "resolve_augmentations"]
