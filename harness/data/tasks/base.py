"""The task registry's building blocks: `Dataset`, `TaskInfo`, `register`, and split helpers.

A task is a loader function plus a frozen options dataclass, registered under a name:

    @dataclass(frozen=True)
    class DigitsOptions:
        n_train: int | None = None   # training subset size; None takes the whole split

    @register("digits", kind="classification", loss="cross_entropy",
              metrics=("val/accuracy",), options=DigitsOptions)
    def load(options: DigitsOptions, *, seed: int, cache_dir: Path) -> Dataset: ...

The options dataclass is the single source of truth for option names, defaults and types:
`TaskInfo.options` (name -> default) and `TaskInfo.option_types` (name -> accepted types)
are read from it, so a config validator checks `task: {name: digits, n_train: 200}` without
loading anything. This module never imports a task module, and no task module imports
scikit-learn or mnist1d at the top, so `import harness.data.tasks` stays cheap.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import backends.base
from harness.errors import ConfigError, suggest

KINDS = ("regression", "classification", "dense_regression")
LOSSES = ("mse", "cross_entropy", "l1")


@dataclass(frozen=True, eq=False)
class Dataset:
    """One loaded task: normalised splits as read-only float32/int64 NumPy arrays.

    Shapes (N_* the split sizes):
        x_*: (N, *input_shape) float32, normalised with the training split's statistics.
        y_*: (N,) int64 class labels for classification; (N, *output_shape) float32 for
             (dense) regression, normalised with `y_mean`/`y_std` where those are set.
    `x_mean`/`x_std` broadcast against (N, *input_shape) (e.g. (C, 1, 1) per channel, or
    () for one scalar); the raw input is `x * x_std + x_mean`, and a regression target in
    the task's own units is `y * y_std + y_mean` (an MAE scales by `y_std`).
    """

    name: str
    kind: str  # one of KINDS
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_outputs: int  # classes, regression outputs, or output channels (dense regression)
    x_mean: np.ndarray  # training-split statistics, float32, broadcastable to input_shape
    x_std: np.ndarray
    y_mean: np.ndarray | None = None  # regression targets only; None leaves y as generated
    y_std: np.ndarray | None = None
    x_test: np.ndarray | None = None  # optional held-out split, normalised like the rest
    y_test: np.ndarray | None = None
    info: Mapping[str, Any] = field(default_factory=dict)  # task-specific facts (split seed)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Dataset.kind must be one of {KINDS}, got {self.kind!r}")
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("x_test and y_test must be given together")
        for split, x, y in self._splits():
            if x.dtype != np.float32:
                raise TypeError(f"x_{split} must be float32, got {x.dtype}")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(f"x_{split} has shape {x.shape}, want (N, *{self.input_shape})")
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            if self.kind == "classification":
                if y.dtype != np.int64 or y.ndim != 1:
                    raise TypeError(
                        f"y_{split} must be int64 of shape (N,), got {y.dtype} {y.shape}"
                    )
            elif y.dtype != np.float32 or y.shape[1:] != self.y_train.shape[1:] or y.ndim < 2:
                raise TypeError(
                    f"y_{split} must be float32 (N, *output_shape), got {y.dtype} {y.shape}"
                )
            # Read-only: the same arrays feed every backend and every epoch, so an in-place
            # normalisation or augmentation anywhere would silently change later trials.
            x.flags.writeable = False
            y.flags.writeable = False

    def _splits(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        out = [("train", self.x_train, self.y_train), ("val", self.x_val, self.y_val)]
        if self.x_test is not None:
            out.append(("test", self.x_test, self.y_test))
        return out

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's shape, e.g. (3,) for mario, (1, 8, 8) for digits, (1, 40) for mnist1d."""
        return tuple(self.x_train.shape[1:])

    @property
    def output_shape(self) -> tuple[int, ...]:
        """One target's shape: () for a class label, (n_outputs,) or (C, *spatial) otherwise."""
        return tuple(self.y_train.shape[1:])

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per split, e.g. {'train': 3500, 'val': 500, 'test': 1000}."""
        return {split: len(x) for split, x, _ in self._splits()}


@dataclass(frozen=True)
class TaskInfo:
    """What the rest of the harness may know about a task before loading it.

    Input shape and number of outputs can depend on options (a 16^3 or 32^3 voxel grid), so
    they are read off the loaded `Dataset` (`input_shape`, `n_outputs`), not stored here.
    """

    name: str
    kind: str  # "regression" | "classification" | "dense_regression"
    loss: str  # "mse" | "cross_entropy" | "l1"
    metrics: tuple[str, ...]  # validation metrics logged; the first is the main one
    options_cls: type  # frozen dataclass of options with their defaults
    loader: Callable[..., Dataset]  # loader(options, *, seed, cache_dir) -> Dataset
    description: str = ""  # first line of the loader's docstring
    # extra_metrics(x, outputs, y, prefix) -> {f"{prefix}/name": value}: metrics beyond the
    # loss and accuracy/MAE the runner computes itself (sdf: mae_unknown, iou). x are the
    # inputs (the sdf mask is a channel), outputs the model's, y the targets, all (N, ...).
    extra_metrics: Callable[..., dict[str, float]] | None = None

    @property
    def metric(self) -> str:
        """The main validation metric ("val/accuracy" or "val/mae")."""
        return self.metrics[0]

    @property
    def options(self) -> dict[str, Any]:
        """Option name -> default value, e.g. {'n_train': None} for digits."""
        return {
            f.name: getattr(self.options_cls(), f.name)
            for f in dataclasses.fields(self.options_cls)
        }

    @property
    def option_types(self) -> dict[str, tuple[type, ...]]:
        """Option name -> accepted types, from the annotations (`int | None` -> (int, NoneType))."""
        hints = typing.get_type_hints(self.options_cls)
        return {name: _accepted_types(hints[name]) for name in self.options}

    def check_options(self, options: Mapping[str, Any]) -> list[ConfigError]:
        """Every problem with `options` (unknown names, wrong types, bad values), all at once,
        each with its path ("task.n_train") and no file (the reader's to fill in)."""
        problems = []
        known = self.option_types
        for key, value in options.items():
            path = f"task.{key}"
            if key not in known:
                hint = suggest(key, known) or f"; known: {sorted(known)}"
                problems.append(ConfigError("", path, f"unknown option of task {self.name}"
                                                      f"{hint} (known: name, "
                                                      f"{', '.join(known) or 'none'})"))
            elif not _type_ok(value, known[key]):
                want = " or ".join(t.__name__ for t in known[key])
                problems.append(ConfigError("", path, f"task {self.name!r}: option {key!r} "
                                                      f"expects {want}, found "
                                                      f"{type(value).__name__} {value!r}"))
        if not problems:
            try:  # range checks live in the options dataclass's __post_init__
                self.options_cls(**options)
            except (ValueError, TypeError) as err:
                problems.append(ConfigError("", "task", f"task {self.name!r}: {err}"))
        return problems

    def filled(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every option with its value as the loader takes it: defaults written in, and a
        None that means "all of it" replaced by the size it stands for (the options
        dataclass's `sizes()`, where it has one), for the resolved config and MLflow."""
        opts = self.options_cls(**options)
        sizes = opts.sizes() if hasattr(opts, "sizes") else {}
        return {**dataclasses.asdict(opts), **sizes}

    def coerce(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Checked options as the config holds them: an int given for a float option becomes
        a float (YAML's `noise: 0`), so that `0` and `0.0` make one trial hash."""
        known = self.option_types
        return {k: float(v) if float in known[k] and type(v) is int else v
                for k, v in options.items()}


TASKS: dict[str, TaskInfo] = {}


def register(
    name: str,
    *,
    kind: str,
    loss: str,
    metrics: tuple[str, ...],
    options: type,
    extra_metrics: Callable[..., dict[str, float]] | None = None,
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator that adds a loader to `TASKS` under `name`; see the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"task {name!r}: kind must be one of {KINDS}, got {kind!r}")
    if loss not in LOSSES:
        raise ValueError(f"task {name!r}: loss must be one of {LOSSES}, got {loss!r}")
    if not dataclasses.is_dataclass(options) or not options.__dataclass_params__.frozen:
        raise TypeError(f"task {name!r}: options must be a frozen dataclass")

    def decorate(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in TASKS:
            raise ValueError(f"task {name!r} is registered twice")
        doc = (loader.__doc__ or "").strip().splitlines()
        TASKS[name] = TaskInfo(
            name,
            kind,
            loss,
            tuple(metrics),
            options,
            loader,
            doc[0] if doc else "",
            extra_metrics,
        )
        return loader

    return decorate


def load_task(
    name: str, *, seed: int = 0, cache_dir: str | os.PathLike | None = None, **options: Any
) -> Dataset:
    """Load task `name` with `options` (checked against its options dataclass).

    `seed` is the trial seed; a task decides what it drives (mario: the generated data;
    digits and mnist1d: nothing, their splits are fixed). `cache_dir` defaults to
    `$HARNESS_CACHE`, else `~/.cache/harness`.
    """
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}{suggest(name, TASKS)} (known: {sorted(TASKS)})")
    info = TASKS[name]
    problems = info.check_options(options)
    if problems:
        raise ValueError("\n".join(f"{e.path}: {e.message}" for e in problems))
    return info.loader(
        info.options_cls(**options), seed=seed, cache_dir=default_cache_dir(cache_dir)
    )


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` if given, else `$HARNESS_CACHE`, else `~/.cache/harness` (never the repo)."""
    return Path(cache_dir) if cache_dir is not None else backends.base.cache_dir()


def _accepted_types(hint: Any) -> tuple[type, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _accepted_types(arg))
    if hint is None or hint is type(None):
        return (type(None),)
    origin = typing.get_origin(hint)
    return (origin if origin is not None else hint,)


def _type_ok(value: Any, accepted: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # YAML's `true` is no int, and 1 is no bool
        return bool in accepted
    if isinstance(value, int) and float in accepted:
        return True
    return isinstance(value, accepted)


# ---- helpers shared by the task modules -------------------------------------------------


def standardise(
    train: np.ndarray, *others: np.ndarray, axes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Mean/std over `axes` of the training split, applied to every split.

    train: (N, ...) ; others: arrays of the same trailing shape. Returns (mean, std, [train,
    *others] normalised, float32); mean and std keep the reduced axes dropped from the
    front, e.g. axes=(0, 2, 3) on (N, C, H, W) gives (C, 1, 1).
    """
    mean = train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)  # a constant feature stays constant, not NaN
    mean, std = mean[0].astype(np.float32), std[0].astype(np.float32)  # drop the batch axis
    out = [((a - mean) / std).astype(np.float32) for a in (train, *others)]
    return mean, std, out


def stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation of range(len(y)) whose every prefix is (nearly) class-balanced.

    y: (N,) int labels -> (N,) indices. Each class is shuffled, and its k-th member is
    ranked at (k + u) / n_class with u ~ U(0, 1); sorting by rank interleaves the classes
    in proportion. A subset of the first n indices is stratified and nested: the 100-sample
    training set is part of the 200-sample one.
    """
    rank = np.empty(len(y), dtype=np.float64)
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        rank[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(rank, kind="stable")


def cached_npz(
    path: Path, build: Callable[[], dict[str, np.ndarray]]
) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays stored at `path` (hit: True), or `build()`'s, written there first (False).

    The file is written to a temporary name and renamed into place: parallel workers may
    build at once, and a reader must never see a half-written file.
    """
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}, True
    arrays = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arrays, False
