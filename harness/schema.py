"""The experiment file's schema: frozen dataclasses with commented defaults (SPEC 4.4).

YAML only fills these in; `harness.validate` checks every key against them. A field's
`metadata` may carry `choices` (the allowed names) and `check` (a range, as a predicate and
the words that describe it), which the validator reports when a value falls outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backends.archs import ARCHS
from backends.init import INITS
from backends.optim import OPTIMIZERS
from backends.spec import ACTIVATIONS

BACKENDS = ("numpy", "torch", "jax")
DEVICES = ("cpu", "gpu", "auto")
METRICS = ("train/loss", "train/loss_epoch", "train/eval_loss", "train/accuracy", "train/mae",
           "val/loss", "val/accuracy", "val/mae", "val/mae_unknown", "val/iou", "gap/accuracy",
           "gap/loss", "perf/samples_per_s", "perf/step_ms")


def _choices(default, choices, doc=""):
    return field(default=default, metadata={"choices": tuple(choices), "doc": doc})


def _check(default, predicate, words):
    return field(default=default, metadata={"check": (predicate, words)})


def positive(x):
    return x > 0


def non_negative(x):
    return x >= 0


def unit_interval(x):  # [0, 1)
    return 0 <= x < 1


def at_least(n):
    return lambda x: x >= n


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    name: str = _choices("digits", (), "a task of harness.tasks")  # choices filled at runtime
    # Any other key is an option of the chosen task (n_train, noise, ...), checked against
    # that task's own defaults: see harness/tasks.
    options: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    arch: str = _choices("mlp", ARCHS)
    activation: str = _choices("relu", ACTIVATIONS)
    slope: float = _check(0.1, unit_interval, "in [0, 1)")  # leaky_relu: max(slope x, x)
    maxout_k: int = _check(2, at_least(2), ">= 2")  # linear pieces per maxout unit
    init: str = _choices("he", INITS)
    init_std: float = _check(0.01, positive, "> 0")  # the gaussian init's std
    batchnorm: bool = False
    dropout: float = _check(0.0, unit_interval, "in [0, 1)")  # drop probability
    depth: int | None = _check(None, at_least(1), ">= 1")  # None: the arch's default
    width: int | None = _check(None, at_least(1), ">= 1")  # None: the arch's default
    skips: bool = True  # resnet shortcuts and unet skip concatenations


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """The canonical optimizers of backends/optim.py, with the same defaults."""

    name: str = _choices("sgd", OPTIMIZERS)
    lr: float = _check(0.01, positive, "> 0")
    momentum: float = _check(0.9, unit_interval, "in [0, 1)")
    nesterov: bool = False
    rho: float = _check(0.9, unit_interval, "in [0, 1)")  # rmsprop's decay
    beta1: float = _check(0.9, unit_interval, "in [0, 1)")
    beta2: float = _check(0.999, unit_interval, "in [0, 1)")
    eps: float = _check(1e-8, positive, "> 0")
    weight_decay: float = _check(0.0, non_negative, ">= 0")  # L2 penalty on the gradient


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = _check(10, at_least(1), ">= 1")
    batch_size: int = _check(64, at_least(1), ">= 1")  # ignored by gd, which takes all
    dtype: str = _choices("float32", ("float32", "float64"))
    rng: str = _choices("canonical", ("canonical", "native"))  # dropout masks: SPEC 4.2
    compile: bool = False  # torch.compile for the torch backend
    log_every: int = _check(1, at_least(1), ">= 1")  # train/loss every n steps
    eval_train: bool = True  # also evaluate the training split each epoch (train/accuracy)
    # per-layer diagnostics (harness/diagnostics.py) every n steps, as diag/<layer>/<quantity>;
    # None: off, and the training loop is exactly what it is without them
    diag_every: int | None = _check(None, at_least(1), ">= 1")


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A textbook claim that `report` judges over seeds (SPEC 4.6)."""

    better: dict = field(default_factory=dict)  # dotted path -> value: this configuration
    than: dict = field(default_factory=dict)  # ... against this one
    where: dict = field(default_factory=dict)  # judge only the trials with these values
    agree: str | None = None  # or: trials differing only in this axis (backend) agree ...
    within: float = _check(1e-4, positive, "> 0")  # ... to this relative tolerance
    metric: str = _choices("val/accuracy", METRICS)  # final value, per seed
    by_at_least: float = _check(0.0, non_negative, ">= 0")  # margin in the metric's units
    higher_is_better: bool | None = None  # None: accuracy and throughput up, losses down
    test: str = _choices("welch", ("welch", "bootstrap"))
    alpha: float = _check(0.05, lambda x: 0 < x < 1, "in (0, 1)")


@dataclass(frozen=True, kw_only=True)
class Experiment:
    name: str = ""  # the MLflow experiment; letters, digits, - _ .
    description: str = ""
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: tuple = ()  # names or {name: ..., param: ...}: see harness/augment.py
    backends: tuple[str, ...] = ("numpy",)
    devices: tuple[str, ...] = ("cpu",)
    seeds: tuple[int, ...] = (0,)
    sweep: dict = field(default_factory=dict)  # dotted path -> list of values: the grid
    expect: tuple[Claim, ...] = ()


# What a trial's identity is made of: everything but these (SPEC 4.4).
NOT_IN_TRIAL = ("description", "backends", "devices", "seeds", "sweep", "expect")
# Sweep axes may point anywhere in the trial's config but at these.
NOT_SWEEPABLE = ("name", *NOT_IN_TRIAL)
