"""`digits`: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), no download.

Pixels come as integers 0..16; they are scaled to [0, 1] and then standardised with one
mean/std (per channel: there is one) of the training split. Input (1, 8, 8) float32.

The arrays are cached as .npz (keyed by the scikit-learn version) in the cache directory,
so a load after the first does not import scikit-learn.

Splits are stratified and fixed by `SPLIT_SEED`, not by the trial seed: every trial of an
experiment (every configuration, backend and seed) trains and validates on the very same
images, so differences between trials come from the model and its randomness alone, and a
val/accuracy gap is never a lucky split. The trial seed is accepted and ignored.
`n_train` takes a nested, stratified subset of the training split (the 100-image set is
part of the 200-image one), e.g. for the small-training-set augmentation experiment.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.tasks.base import Dataset, cached_npz, register, standardise, stratified_order

SPLIT_SEED = 20240601  # fixed for all trials; changing it changes every digits result
N_VAL = 297  # of 1797: 1200 train / 297 val / 300 test
N_TEST = 300
N_TRAIN = 1797 - N_VAL - N_TEST


@dataclass(frozen=True)
class DigitsOptions:
    n_train: int | None = None  # training subset size (<= 1200); None takes all 1200

    def __post_init__(self) -> None:
        if self.n_train is not None and not 10 <= self.n_train <= N_TRAIN:
            raise ValueError(f"n_train must be in [10, {N_TRAIN}], got {self.n_train}")

    def sizes(self) -> dict[str, int]:
        """The split sizes these options give (n_train None: all of the training split)."""
        return {"n_train": N_TRAIN if self.n_train is None else self.n_train,
                "n_val": N_VAL, "n_test": N_TEST}


def cache_path(cache_dir: Path) -> Path:
    """Where the pixel arrays are cached: scikit-learn itself takes about a second to import."""
    version = importlib.metadata.version("scikit-learn")
    return cache_dir / f"digits-sklearn-{version}.npz"


def read_digits() -> dict[str, np.ndarray]:
    """scikit-learn's arrays: images (1797, 8, 8) float64 in 0..16 and target (1797,) int."""
    from sklearn.datasets import load_digits  # deferred: scikit-learn takes ~1 s to import

    bunch = load_digits()
    return {"images": bunch.images, "target": bunch.target}


def split_indices(y: np.ndarray) -> dict[str, np.ndarray]:
    """Fixed stratified split of y (1797,): {'train', 'val', 'test'} -> indices.

    Val and test indices are sorted; the training indices are in `stratified_order`, so
    every prefix of them is a stratified subset.
    """
    order = stratified_order(y, np.random.default_rng(SPLIT_SEED))  # (1797,) balanced prefixes
    test, val, train = order[:N_TEST], order[N_TEST : N_TEST + N_VAL], order[N_TEST + N_VAL :]
    train = train[stratified_order(y[train], np.random.default_rng(SPLIT_SEED + 1))]
    return {"train": train, "val": np.sort(val), "test": np.sort(test)}


@register(
    "digits",
    kind="classification",
    loss="cross_entropy",
    metrics=("val/accuracy",),
    options=DigitsOptions,
)
def load(options: DigitsOptions, *, seed: int, cache_dir: Path) -> Dataset:
    """scikit-learn's 8x8 digits, fixed stratified split (classification, cross-entropy)."""
    del seed  # the split is fixed (see the module docstring)
    arrays, hit = cached_npz(cache_path(cache_dir), read_digits)
    images = (arrays["images"] / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    labels = arrays["target"].astype(np.int64)  # (1797,)
    idx = split_indices(labels)
    train = idx["train"] if options.n_train is None else idx["train"][: options.n_train]
    mean, std, (x_tr, x_va, x_te) = standardise(
        images[train], images[idx["val"]], images[idx["test"]], axes=(0, 2, 3)
    )  # mean, std: (1, 1, 1), per channel
    return Dataset(
        name="digits",
        kind="classification",
        x_train=x_tr,
        y_train=labels[train],
        x_val=x_va,
        y_val=labels[idx["val"]],
        x_test=x_te,
        y_test=labels[idx["test"]],
        n_outputs=10,
        x_mean=mean,
        x_std=std,
        info={
            "split_seed": SPLIT_SEED,
            "cache_hit": hit,
            "train_indices": train,
            "val_indices": idx["val"],
            "test_indices": idx["test"],
        },
    )
