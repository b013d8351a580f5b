"""The experiment file's schema: frozen dataclasses with commented defaults (SPEC 4.4).

YAML only fills these in; `harness.config.validate` checks every key against them. A field's
`metadata` may carry `choices` (the allowed names) and `check` (a range, as a predicate and
the words that describe it), which the validator reports when a value falls outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backends.archs import ARCHS, Knobs
from backends.fields import at_least, checked, choice, non_negative, positive
from backends.init import INITS
from backends.optim import OptimizerSpec
from harness.names import METRICS


@dataclass(frozen=True, kw_only=True)
class TaskConfig:
    name: str = choice("digits", (), "a task of harness.data.tasks")  # choices filled at runtime
    # Any other key is an option of the chosen task (n_train, noise, ...), checked against
    # that task's own defaults: see harness/tasks.
    options: dict = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ModelConfig(Knobs):
    """The model: an arch, its initialisation, and the knobs of backends/archs.py `Knobs`
    (activation, slope, maxout_k, batchnorm, dropout, depth, width, skips), inherited with
    their defaults and ranges, so that each is declared once."""

    arch: str = choice("mlp", ARCHS)
    init: str = choice("he", INITS)
    init_std: float = checked(0.01, positive, "> 0")  # the gaussian init's std


# The optimizer: backends/optim.py's canonical rule, fields, defaults and ranges as they are.
OptimizerConfig = OptimizerSpec


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = checked(10, at_least(1), ">= 1")
    batch_size: int = checked(64, at_least(1), ">= 1")  # ignored by gd, which takes all
    dtype: str = choice("float32", ("float32", "float64"))
    rng: str = choice("canonical", ("canonical", "native"))  # dropout masks: SPEC 4.2
    compile: bool = False  # torch.compile for the torch backend
    log_every: int = checked(1, at_least(1), ">= 1")  # train/loss every n steps
    eval_train: bool = True  # also evaluate the training split each epoch (train/accuracy)
    # per-layer diagnostics (harness/diagnostics.py) every n steps, as diag/<layer>/<quantity>;
    # None: off, and the training loop is exactly what it is without them
    diag_every: int | None = checked(None, at_least(1), ">= 1")


@dataclass(frozen=True, kw_only=True)
class Claim:
    """A textbook claim that `report` judges over seeds (SPEC 4.6)."""

    better: dict = field(default_factory=dict)  # dotted path -> value: this configuration
    than: dict = field(default_factory=dict)  # ... against this one
    where: dict = field(default_factory=dict)  # judge only the trials with these values
    agree: str | None = None  # or: trials differing only in this axis (backend) agree ...
    # or: these two configurations, [{model.init: he}, {model.init: xavier}], give the same
    # metric within +-`within` (two one-sided tests)
    equivalent: tuple[dict, ...] = ()
    # agree: a relative tolerance; equivalent: the margin d in the metric's units (required)
    within: float = checked(1e-4, positive, "> 0")
    metric: str = choice("val/accuracy", METRICS)  # final value, per seed
    by_at_least: float = checked(0.0, non_negative, ">= 0")  # margin in the metric's units
    higher_is_better: bool | None = None  # None: accuracy and throughput up, losses down
    test: str = choice("welch", ("welch", "bootstrap"))
    alpha: float = checked(0.05, lambda x: 0 < x < 1, "in (0, 1)")
    # A's and B's trials matched by seed (and by the value of every key the claim pools
    # over), judged on the per-seed differences: the paired t-test (harness/verdicts/
    # twosample.py). For arms that share per seed what varies most, such as the scenes
    # a 3D task draws from the seed, or the initial weights and the data order.
    paired: bool = False


@dataclass(frozen=True, kw_only=True)
class Target:
    """Time to target: the steps and training seconds until `metric` first reaches `value`
    at an epoch's end (logged as target/steps and target/seconds; inf if it never does)."""

    metric: str = choice("val/accuracy", [m for m in METRICS if m.split("/")[0] in
                                          ("val", "train", "gap")])
    value: float = 0.9  # reached: >= value (<= for a loss or an error)


@dataclass(frozen=True, kw_only=True)
class Tune:
    """Each arm (sweep point) tuned on validation before its claims are judged (issue 15):
    every value of the grid on the tuning seeds, the best by `metric` (the final value, mean
    over the tuning seeds) chosen, then the arm run on the experiment's seeds with it. A
    DeepOBS-style protocol: the learning rate on a log grid, selected on validation, never on
    test, with seeds of its own (Schneider et al. 2019; Choi et al. 2019 on why it matters)."""

    grid: dict = field(default_factory=dict)  # dotted path -> list of values to try
    log_grid: dict = field(default_factory=dict)  # dotted path -> [low, high, n]: n log-spaced
    metric: str = choice("val/accuracy", [m for m in METRICS if m.split("/")[0] in
                                          ("val", "train", "gap", "target")])
    seeds: tuple[int, ...] = (1000,)  # the seeds that select; disjoint from the experiment's


@dataclass(frozen=True, kw_only=True)
class SeedRounds:
    """`seeds: {min: 3, max: 10}`: seeds until decided (issue 15). The arms run `min` seeds,
    the claims are judged, and the arms of undecided claims get `round` more at a time, up to
    `max`, under a group-sequential rule that keeps each claim's error at its alpha
    (harness/verdicts/sequential.py). Seeds are first, first + 1, ... in that order: a
    redesigned experiment starts from seeds no earlier run has looked at."""

    min: int = checked(3, at_least(2), ">= 2")  # a verdict needs two seeds a side
    max: int = checked(10, at_least(2), ">= 2")
    round: int = checked(1, at_least(1), ">= 1")  # seeds added per round
    first: int = checked(0, at_least(0), ">= 0")  # the first seed


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
    target: Target | None = None  # time to target; part of a trial's identity when set
    tune: Tune | None = None  # tune each arm on validation first
    # seeds: {min, max, round} is read into this, and seeds into range(min)
    seed_rounds: SeedRounds | None = None


# What a trial's identity is made of: everything but these (SPEC 4.4).
NOT_IN_TRIAL = ("description", "backends", "devices", "seeds", "sweep", "expect", "tune",
                "seed_rounds")
# Sweep axes may point anywhere in the trial's config but at these.
NOT_SWEEPABLE = ("name", *NOT_IN_TRIAL)
