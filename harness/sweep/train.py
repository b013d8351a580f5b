"""One trial: data, model, backend, and the training loop, with nothing in it but the work.

The trial's seed makes one `np.random.SeedSequence`, split into independent streams for the
initial weights, the data order, augmentation and dropout masks, all drawn on the host, so
that one trial on three backends starts from the same weights and sees the same batches and
masks (SPEC 4.2), and changing the augmentation leaves the initial weights alone.

Metrics go to a `sink` a whole epoch at a time, never from inside the step: one MLflow call
on SQLite costs more than a small training step (SPEC 4.5).
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from backends import load as load_backend
from backends.archs import Knobs, build_model
from backends.init import init_params
from backends.spec import dropout_layers, dropout_masks
from harness.config import Trial
from harness.data.augment import augment_pair
from harness.data.tasks import TASKS, load_task
from harness.names import TARGET_METRICS, lower_is_better, streams
from harness.sweep.diagnostics import Diagnostics

EVAL_BATCH = 1000  # evaluation is chunked only to bound memory


@dataclass
class Outcome:
    status: str  # finished, diverged or failed
    final: dict = field(default_factory=dict)  # last value of every metric
    error: str | None = None
    traceback: str | None = None
    steps: int = 0
    epochs: int = 0
    setup_s: float = 0.0  # data, model and backend build
    train_s: float = 0.0  # the training loop, evaluation included
    device_name: str = ""
    params: dict = field(default_factory=dict)  # final canonical params and buffers
    history: dict = field(default_factory=dict)  # key -> [(step, value)] for the plot
    layers: list = field(default_factory=list)  # with diagnostics: the leaves, forward order


class Sink:
    """Where a trial's records go; the runner supplies one that writes to MLflow."""

    def metrics(self, rows: list[tuple[str, float, int, int]]) -> None:
        """rows of (key, value, step, timestamp ms), a whole epoch at a time."""

    def progress(self, epoch: int, epochs: int, loss: float) -> None:
        """The running trial's epoch and training loss, for the progress bar."""


_DATA: dict = {}  # task config -> Dataset, loaded once per process


def dataset(task: dict, seed: int):
    key = (repr(sorted(task.items())), seed)
    if key not in _DATA:
        options = {k: v for k, v in task.items() if k != "name"}
        _DATA[key] = load_task(task["name"], seed=seed, **options)
    return _DATA[key]


def model_for(trial: Trial, data):
    """The trial's model spec, shape-checked against the task's data. The knobs are the
    fields of backends/archs.py `Knobs`, read off the trial's `model:` (which extends it)."""
    m = trial.experiment.model
    knobs = {f.name: getattr(m, f.name) for f in dataclasses.fields(Knobs)}
    loss = TASKS[trial.experiment.task.name].loss
    return build_model(m.arch, data.input_shape, data.n_outputs, loss, **knobs)


def _metrics(kind: str, outputs: np.ndarray, y: np.ndarray, prefix: str, loss: float,
             y_std=None) -> dict[str, float]:
    out = {f"{prefix}/loss": loss}
    if kind == "classification":
        out[f"{prefix}/accuracy"] = float(np.mean(outputs.argmax(axis=1) == y))
    else:  # mean absolute error in the task's own units
        scale = 1.0 if y_std is None else float(np.mean(y_std))
        out[f"{prefix}/mae"] = float(np.mean(np.abs(outputs - y))) * scale
    return out


def evaluate(trainer, x: np.ndarray, y: np.ndarray, kind: str, prefix: str, y_std=None,
             extra=None):
    """Loss and the task's metrics in evaluation mode; `extra` adds a task's own (sdf's
    mae over the unknown voxels and surface IoU)."""
    losses, outs = [], []
    for i in range(0, len(x), EVAL_BATCH):
        loss, out = trainer.evaluate(x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH])
        losses.append(loss * len(out))
        outs.append(out)
    outputs = np.concatenate(outs)
    metrics = _metrics(kind, outputs, y, prefix, float(sum(losses) / len(x)), y_std)
    if extra is not None:
        metrics.update(extra(x, outputs, y, prefix))
    return metrics


@dataclass
class Start:
    """Where a trial begins, the same wherever it is read (run_trial, `harness check`, the
    overhead benchmark): its data, shape-checked spec and initial weights, and a generator
    each for the data order, augmentation and dropout masks (module docstring)."""

    data: object  # harness.data.tasks.base.Dataset
    spec: object  # backends.spec.ModelSpec
    params: dict
    buffers: dict
    order_rng: np.random.Generator
    aug_rng: np.random.Generator
    drop_rng: np.random.Generator


def start(trial: Trial) -> Start:
    """The trial's data, model and weights, and fresh generators on its seed's streams."""
    exp = trial.experiment
    rngs = streams(trial.seed)
    data = dataset(trial.config["task"], trial.seed)
    spec = model_for(trial, data)
    params, buffers = init_params(spec, exp.model.init, rngs["init"], std=exp.model.init_std)
    return Start(data, spec, params, buffers, rngs["order"], rngs["augment"], rngs["dropout"])


def run_trial(trial: Trial, sink: Sink | None = None) -> Outcome:
    """Train one trial to the end, or until its loss is no longer finite. Never raises but
    KeyboardInterrupt: an exception becomes a failed Outcome with its traceback."""
    sink = sink or Sink()
    outcome = Outcome(status="failed")
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is detected, not warned
            _train(trial, sink, outcome)
    except KeyboardInterrupt:
        raise
    except MemoryError as exc:
        outcome.status, outcome.error = "failed", f"out of memory: {exc}"
        outcome.traceback = traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 -- a trial's failure must not end the sweep
        outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        outcome.traceback = traceback.format_exc()
    return outcome


def _train(trial: Trial, sink: Sink, outcome: Outcome) -> None:
    t_setup = time.perf_counter()
    exp = trial.experiment
    tr = exp.train
    s = start(trial)
    data, spec = s.data, s.spec
    trainer = load_backend(trial.backend).build(
        spec, s.params, s.buffers, exp.optimizer, device=trial.device, dtype=tr.dtype,
        rng=tr.rng, seed=trial.seed, compile=tr.compile)
    outcome.device_name = trainer.device_name
    diag = None  # per-layer diagnostics: off unless train.diag_every is set
    if tr.diag_every:
        diag = Diagnostics(spec, tr.diag_every, trial.seed)
        outcome.layers = [path for path, _ in spec.layers()]  # report sorts its legend so
    n = len(data.x_train)
    batch = n if exp.optimizer.name == "gd" else min(tr.batch_size, n)
    outcome.setup_s = time.perf_counter() - t_setup

    t_train = time.perf_counter()
    step = 0
    target = _Target(exp.target)
    for epoch in range(1, tr.epochs + 1):
        rows, times, losses = [], [], []
        for xb, yb, masks in _batches(exp, s, batch):
            t0 = time.perf_counter()
            if diag is not None and step % diag.every == 0:  # the same step, measured
                loss = diag.step(trainer, xb, yb, masks, step + 1, rows)
            else:
                loss = trainer.train_step(xb, yb, masks)
            times.append(time.perf_counter() - t0)
            step += 1
            losses.append(loss)
            if step % tr.log_every == 0 or not math.isfinite(loss):
                rows.append(("train/loss", loss, step))
            if not math.isfinite(loss):
                break
        outcome.steps, outcome.epochs = step, epoch
        diverged = not math.isfinite(losses[-1])
        values = {} if diverged else _evaluation(exp, trainer, data)
        step_s = float(np.median(times))
        values["train/loss_epoch"] = float(np.mean(losses))  # the epoch's mean step loss
        values.update({"perf/step_ms": 1000 * step_s, "perf/samples_per_s": batch / step_s,
                       "epoch": epoch})
        rows += [(k, v, step) for k, v in values.items()]
        rows += target.reached(values, step, time.perf_counter() - t_train)
        _record(rows, sink, outcome)
        sink.progress(epoch, tr.epochs, float(np.mean(losses)))
        if diverged:
            outcome.status = "diverged"
            outcome.error = f"loss became {losses[-1]} at step {step}"
            break
    else:
        outcome.status = "finished"
    outcome.train_s = time.perf_counter() - t_train
    _record(target.never(step), sink, outcome)
    if outcome.status == "finished" and data.x_test is not None:
        _record([(k, v, step) for k, v in _test(exp, trainer, data).items()], sink, outcome)
    outcome.params = {**trainer.params(), **trainer.buffers()}


def _batches(exp, s: Start, batch: int):
    """One epoch's batches (x, y, dropout masks or None), drawn on the host: the order from
    the order stream, augmentation from its own, masks from theirs (SPEC 4.2). The last
    partial batch is dropped: fixed shapes, no re-compiles."""
    x, y = s.data.x_train, s.data.y_train
    n = len(x)
    canonical_masks = exp.train.rng == "canonical" and bool(dropout_layers(s.spec))
    order = s.order_rng.permutation(n) if batch < n else np.arange(n)
    for b in range(n // batch):
        idx = order[b * batch:(b + 1) * batch]
        xb, yb = x[idx], y[idx]
        if exp.augment:
            # a dense target (sdf) moves with its input; a class label stays
            xb, yb = augment_pair(xb, yb, list(exp.augment), s.aug_rng,
                                  y_fill=s.data.info.get("y_fill"))
        masks = dropout_masks(s.spec, len(idx), s.drop_rng) if canonical_masks else None
        yield xb, yb, masks


def _evaluation(exp, trainer, data) -> dict[str, float]:
    """The epoch's evaluation: the validation split, and with `train.eval_train` the training
    split in evaluation mode with the train/val gaps (overfitting: how much better train is)."""
    extra = TASKS[exp.task.name].extra_metrics
    values = evaluate(trainer, data.x_val, data.y_val, data.kind, "val", data.y_std, extra)
    if exp.train.eval_train:
        train_eval = evaluate(trainer, data.x_train, data.y_train, data.kind, "train",
                              data.y_std, extra)
        train_eval["train/eval_loss"] = train_eval.pop("train/loss")
        values.update(train_eval)
        values["gap/loss"] = values["val/loss"] - values["train/eval_loss"]
        if "train/accuracy" in values:
            values["gap/accuracy"] = values["train/accuracy"] - values["val/accuracy"]
    return values


class _Target:
    """Time to target (`target:`): target/steps and target/seconds at the first epoch whose
    evaluation reaches the value; if the trial ends without, both are inf (the worst: MLflow
    stores inf as the largest float, harness.sweep.results reads it back as inf)."""

    def __init__(self, target):
        self.target, self.done = target, target is None

    def reached(self, values: dict, step: int, seconds: float) -> list:
        if self.done or self.target.metric not in values:
            return []
        value, want = values[self.target.metric], self.target.value
        if not (value <= want if lower_is_better(self.target.metric) else value >= want):
            return []
        self.done = True
        return [("target/steps", float(step), step), ("target/seconds", seconds, step)]

    def never(self, step: int) -> list:
        if self.done:
            return []
        self.done = True
        return [(k, math.inf, step) for k in TARGET_METRICS]


def _test(exp, trainer, data) -> dict[str, float]:
    """The held-out split, evaluated once, after training, at the last step: `test/...`. It
    is never seen while training and never used to choose anything (SPEC 4.6); validation
    is for looking and tuning, test for the verdict."""
    extra = TASKS[exp.task.name].extra_metrics
    return evaluate(trainer, data.x_test, data.y_test, data.kind, "test", data.y_std, extra)


def _record(rows: list, sink: Sink, outcome: Outcome) -> None:
    """An epoch's rows (key, value, step) to the sink at once, and into the outcome."""
    stamp = int(time.time() * 1000)
    sink.metrics([(k, float(v), s, stamp) for k, v, s in rows])
    for k, v, s in rows:
        outcome.history.setdefault(k, []).append((s, float(v)))
        outcome.final[k] = float(v)
