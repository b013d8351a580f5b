"""`harness check FILE`: "overfit first", before any sweep. For each sweep point of the file
(its first seed, unless --all-seeds) and each backend, on one batch of the trial's own data,
from the trial's own initial weights:

  gradient  central differences of the mean loss in float64 (float32, with looser tolerances,
            on a backend without it) at `samples` random entries of every parameter tensor and
            of the input, against the backend's `loss_and_grads` and `probe`. Training mode,
            with the dropout masks fixed; BatchNorm uses batch statistics, so the loss is a
            function of the parameters alone (the running statistics never enter it), and every
            evaluation builds a fresh trainer, `forward`, which changes no state. The point is
            made generic first: biases (zero at initialisation) are jittered by N(0, 1e-3^2)
            and the input by 1e-3 of its std, since a zero bias behind an all-zero input patch
            sits exactly on the ReLU's kink, and a constant region ties every max-pool window.
            An entry fails only if it fails at three step sizes, h, h / 10 and h / 100 (its
            error is the least of them; one within 10x of the tolerance at h is retried too):
            in a big ReLU net (a 3D UNet) some of its many units sit within h of their kink,
            and the smaller the step, the fewer it crosses.
  overfit   the configured optimizer on that one batch, masks fixed: the loss must fall below
            `fraction` of its start within `steps` steps.
  parity    against the NumPy backend from the same state, in float64 (the math, not the
            rounding): loss and gradients, the update rule on the same gradients, and the
            losses and BatchNorm statistics of two fused train_steps (`parity_check`).

The error shown: gradient, the worst over tensors of max |analytic - numeric| / max(max
|analytic|, max |numeric|, floor) over the sampled entries, floor = 1e-3 max(1, |loss|) (below
it rounding rules: eps |loss| / h); overfit, the lowest loss over the start; parity, the worst
max |a - b| / max |b| over the tensors (`_errors`). A failed gradient check names the tensors
that fail and the layers whose backward to suspect: a tensor's gradient is computed from the
gradient that arrives at its layer's output, so the bug sits between the last failing tensor
(in forward order) and the next layer with parameters, whose input gradient starts the wrong
signal.

Exit codes: 0 every check passed, 1 some check failed, 2 a bad config or option,
130 interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

import backends
from backends.spec import ModelSpec, dropout_masks, param_shapes
from harness.config import load
from harness.errors import ConfigError, ConfigErrors, refuse
from harness.names import streams
from harness.sweep.preflight import preflight
from harness.sweep.train import start

# dtype -> central-difference step h, pass tolerance on the error, and the error's floor
GRAD_TOL = {"float64": {"h": 1e-6, "tol": 1e-5, "floor": 1e-3},
            "float32": {"h": 1e-3, "tol": 3e-2, "floor": 1e-1}}
PARITY_TOL = {"float64": 1e-8, "float32": 1e-4}  # on _errors' relative error
CHECKS = ("gradient", "overfit", "parity")


@dataclass
class Result:
    check: str
    passed: bool | None  # None: not applicable (parity of the reference itself)
    error: float | None
    detail: str
    lines: list[str] = field(default_factory=list)  # more, printed below a failure


@dataclass
class Case:
    """One trial's model, initial state and one batch: what every check starts from."""

    trial: object
    spec: ModelSpec
    params: dict
    buffers: dict
    optimizer: object  # backends.optim.OptimizerSpec
    x: np.ndarray
    y: np.ndarray
    masks: dict

    def build(self, backend: str | None = None, dtype: str | None = None, params=None,
              optimizer=None, compile: bool = False):
        """A fresh trainer from this state on the trial's device (the trial's dtype unless
        another is asked for); dropout masks always come from `masks`."""
        t = self.trial
        return backends.load(backend or t.backend).build(
            self.spec, self.params if params is None else params, self.buffers,
            optimizer or self.optimizer, device=t.device,
            dtype=dtype or t.experiment.train.dtype, seed=t.seed, compile=compile)


def case(trial, batch: int) -> Case:
    """The trial's spec, initial weights (harness.sweep.train.start: the same streams as a run)
    and a batch."""
    s = start(trial)
    idx = s.order_rng.permutation(len(s.data.x_train))[:batch]
    masks = dropout_masks(s.spec, len(idx), s.drop_rng)
    return Case(trial, s.spec, s.params, s.buffers, trial.experiment.optimizer,
                s.data.x_train[idx], s.data.y_train[idx], masks)


def mean_loss(name: str, out: np.ndarray, y: np.ndarray) -> float:
    """The canonical losses in float64: mse, l1 (mean over elements), cross_entropy."""
    out = np.asarray(out, np.float64)
    if name == "mse":
        return float(np.mean(np.square(out - y)))
    if name == "l1":
        return float(np.mean(np.abs(out - y)))
    shifted = out - out.max(axis=1, keepdims=True)  # (N, K)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), np.asarray(y, np.int64)]))


def _leaf_of(spec: ModelSpec) -> dict[str, str]:
    """parameter name -> the path of its leaf (names are `<path>.weight`, `<path>.bias`)."""
    names = param_shapes(spec)[0]
    return {n: path for path, _ in spec.layers() for n in (f"{path}.weight", f"{path}.bias")
            if n in names}


def suspects(spec: ModelSpec, failing: list[str]) -> list[str]:
    """The leaves whose backward may hold the bug that makes `failing` tensors wrong."""
    leaves = [path for path, _ in spec.layers()]
    owner = _leaf_of(spec)
    order = ["input", *owner]  # forward order, the input first
    last = max(failing, key=order.index)
    start = 0 if last == "input" else leaves.index(owner[last])
    end = len(leaves) - 1
    with_params = set(owner.values())
    for i in range(start + (last != "input"), len(leaves)):
        if leaves[i] in with_params:
            end = i
            break
    return leaves[start:end + 1]


# ----------------------------------------------------------------------------- gradient


def gradient_check(c: Case, samples: int = 5, seed: int = 0) -> Result:
    caps = backends.load(c.trial.backend).CAPABILITIES
    dtype = "float64" if caps.float64 else "float32"
    h, tol, floor = (GRAD_TOL[dtype][k] for k in ("h", "tol", "floor"))
    rng = streams(seed)["gradient_check"]
    params = {k: v.astype(dtype) for k, v in c.params.items()}
    owner = _leaf_of(c.spec)
    for name in params:
        if name == f"{owner[name]}.bias":  # off the kinks: see the docstring
            params[name] = params[name] + rng.normal(0, 1e-3, params[name].shape).astype(dtype)
    x = np.asarray(c.x, dtype)
    x = x + rng.normal(0, 1e-3 * max(float(x.std()), 1e-3), x.shape).astype(dtype)
    sgd = dataclasses.replace(c.optimizer, name="sgd")  # gradients only: no optimizer state

    def loss_at(p, xx):
        out = c.build(dtype=dtype, params=p, optimizer=sgd).forward(xx, train=True,
                                                                     masks=c.masks)
        return mean_loss(c.spec.loss, out, c.y)

    trainer = c.build(dtype=dtype, params=params, optimizer=sgd)
    loss, grads = trainer.loss_and_grads(x, c.y, c.masks)
    _, dx = trainer.probe(x, c.y, train=True, masks=c.masks)
    forward_loss = loss_at(params, x)
    scale = floor * max(1.0, abs(forward_loss))
    tensors = {**{k: (params[k], grads[k]) for k in params}, "input": (x, dx)}

    def numeric(name, idx, step):
        value, _ = tensors[name]
        sides = []
        for sign in (1, -1):
            bumped = value.copy()
            bumped[idx] += sign * step
            if name == "input":
                sides.append(loss_at(params, bumped))
            else:
                sides.append(loss_at({**params, name: bumped}, x))
        return (sides[0] - sides[1]) / (2 * step)

    errors, lines = {}, []
    for name, (value, grad) in tensors.items():
        picks = rng.choice(value.size, size=min(samples, value.size), replace=False)
        idxs = [np.unravel_index(i, value.shape) for i in picks]
        a = np.array([grad[i] for i in idxs], np.float64)
        n = np.array([numeric(name, i, h) for i in idxs])
        denom = max(np.abs(a).max(), np.abs(n).max(), scale)
        err = np.abs(a - n) / denom
        for j in np.flatnonzero(err > tol / 10):  # smaller steps cross fewer kinks
            for step in (h / 10, h / 100):
                n2 = numeric(name, idxs[j], step)
                err[j] = min(err[j], abs(a[j] - n2) / max(denom, abs(n2)))
        errors[name] = float(err.max())
        if errors[name] > tol:
            j = int(err.argmax())
            lines.append(f"{name}: error {errors[name]:.1e} at {list(map(int, idxs[j]))}: "
                         f"analytic {a[j]:.6e}, numeric {n[j]:.6e}")
    loss_err = abs(loss - forward_loss) / max(abs(forward_loss), 1e-12)
    failing = [k for k, e in errors.items() if e > tol]
    worst = max(errors, key=errors.get)
    what = f"{len(params)} tensors + input, {samples} entries each, {dtype}"
    if loss_err > tol:
        lines.append(f"loss_and_grads gives loss {loss:.10g}, forward {forward_loss:.10g}")
    if failing or loss_err > tol:
        detail = f"worst {worst}; {what}"
        if failing:
            detail += f"; suspect the backward of: {', '.join(suspects(c.spec, failing))}"
        return Result("gradient", False, max(errors[worst], loss_err), detail, lines)
    return Result("gradient", True, errors[worst], f"worst {worst}; {what}")


# ----------------------------------------------------------------------------- overfit


def overfit_check(c: Case, steps: int = 200, fraction: float = 0.1) -> Result:
    trainer = c.build(compile=c.trial.experiment.train.compile)  # the step training runs
    start = best = None
    for step in range(1, steps + 2):  # the loss before update s; s = steps + 1 is the last
        loss = trainer.train_step(c.x, c.y, c.masks)
        if not math.isfinite(loss):
            return Result("overfit", False, math.inf, f"loss {loss} after {step - 1} steps")
        if start is None:
            start = best = loss
        best = min(best, loss)
        if start > 0 and loss < fraction * start:
            return Result("overfit", True, loss / start, f"{start:.4g} -> {loss:.4g} in "
                          f"{step - 1} steps (< {fraction:g} x start within {steps})")
    ratio = best / start if start > 0 else 1.0
    return Result("overfit", False, ratio, f"{start:.4g} -> best {best:.4g} in {steps} steps: "
                  f"not below {fraction:g} x start")


# ----------------------------------------------------------------------------- parity


def _errors(got: dict, ref: dict, what: str) -> dict[str, float]:
    """what + name -> max |a - b| / max(max |b|, 1e-4 x the largest |b| of the group): a tensor
    whose true value is zero (a BatchNorm offset's gradient before another BatchNorm) holds
    only rounding, which the group's scale measures."""
    ref = {k: np.asarray(v, np.float64) for k, v in ref.items()}
    scale = 1e-4 * max((np.abs(v).max(initial=0.0) for v in ref.values()), default=0.0)
    return {f"{what} {k}": float(np.abs(np.asarray(got[k], np.float64) - b).max(initial=0.0)
                                 / max(np.abs(b).max(initial=0.0), scale, 1e-300))
            for k, b in ref.items()}


def parity_check(c: Case) -> Result:
    """The backend against numpy from the same state, on the same batch and masks:

    grad     loss_and_grads: the loss and every gradient
    update   apply_gradients with numpy's gradients on both: the parameters after the rule
             (the same gradients: a fused step's Adam would turn gradients that are zero up to
             rounding into steps of lr x rounding / eps, of either sign)
    fused    two train_steps: the BatchNorm statistics after the first, and both losses (the
             second one sees the fused update; the rounding-sized steps of zero gradients
             move it only to second order, not so the statistics of the second step)
    """
    backend = c.trial.backend
    if backend == "numpy":
        return Result("parity", None, None, "numpy is the reference")
    both = backends.load(backend).CAPABILITIES.float64
    dtype = "float64" if both else "float32"
    tol = PARITY_TOL[dtype]
    ref, got = (c.build("numpy", dtype), c.build(backend, dtype))
    ref_loss, ref_grads = ref.loss_and_grads(c.x, c.y, c.masks)
    got_loss, got_grads = got.loss_and_grads(c.x, c.y, c.masks)
    errors = {**_errors({"loss": got_loss}, {"loss": ref_loss}, "grad"),
              **_errors(got_grads, ref_grads, "grad")}
    ref, got = (c.build("numpy", dtype), c.build(backend, dtype))  # fresh: BN stats moved
    ref.apply_gradients(ref_grads)
    got.apply_gradients(ref_grads)
    errors.update(_errors(got.params(), ref.params(), "update"))
    ref, got = (c.build("numpy", dtype), c.build(backend, dtype))
    losses = {"loss 1": (got.train_step(c.x, c.y, c.masks), ref.train_step(c.x, c.y, c.masks))}
    errors.update(_errors(got.buffers(), ref.buffers(), "fused"))  # the first step's statistics
    losses["loss 2"] = (got.train_step(c.x, c.y, c.masks), ref.train_step(c.x, c.y, c.masks))
    errors.update(_errors({k: a for k, (a, _) in losses.items()},
                          {k: b for k, (_, b) in losses.items()}, "fused"))
    bad = [k for k, e in errors.items() if e > tol]
    worst = max(errors, key=errors.get)
    detail = f"worst {worst}; gradients, update, two fused steps, {dtype}"
    lines = [f"{k}: error {errors[k]:.1e}" for k in bad]
    return Result("parity", not bad, errors[worst], detail, lines)


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class CheckOptions:
    """What `harness check` runs; the CLI's flags, with its defaults."""

    only: tuple[str, ...] = CHECKS  # which checks
    batch: int = 8  # samples in the one batch
    samples: int = 5  # gradient: entries per tensor
    steps: int = 200  # overfit: the steps allowed
    fraction: float = 0.1  # overfit: the loss must fall below fraction x its start
    limit: int | None = None  # only the first N sweep points
    backends: tuple[str, ...] = ()  # only these of the file's backends (empty: all)
    all_seeds: bool = False  # every seed of each sweep point (default: its first)


def _select(trials, options: CheckOptions) -> list:
    """One trial per (sweep point, backend, device): the first seed, unless all seeds."""
    points = list(dict.fromkeys(t.point_label for t in trials))
    if options.limit is not None:
        points = points[:options.limit]
    chosen, seen = [], set()
    for t in trials:
        k = (t.point_label, t.backend, t.device) + ((t.seed,) if options.all_seeds else ())
        if t.point_label in points and (not options.backends or t.backend in options.backends) \
                and k not in seen:
            seen.add(k)
            chosen.append(t)
    return chosen


def run_checks(trial, options: CheckOptions = CheckOptions(),
               done: dict | None = None) -> list[Result]:
    """The checks of one trial. `done` memoises gradient checks: they depend on the model and
    the batch only (not on the optimizer or the training dtype), so sweep points that share
    those share one."""
    out = []
    try:
        c = case(trial, options.batch)
    except Exception as exc:  # noqa: BLE001 -- every check of this trial has failed
        return [Result(name, False, None, f"raised {type(exc).__name__}: {exc}")
                for name in options.only]
    same = json.dumps([trial.backend, trial.device, trial.seed, trial.config["task"],
                       trial.config["model"]], sort_keys=True)
    done = {} if done is None else done
    for name in options.only:
        try:
            if name == "gradient" and same in done:
                first, r = done[same]
                out.append(dataclasses.replace(r, detail=f"{r.detail} (as {first}: same "
                                                         "model and batch)"))
            elif name == "gradient":
                out.append(gradient_check(c, options.samples, trial.seed))
                done[same] = (trial.point_label, out[-1])
            elif name == "overfit":
                out.append(overfit_check(c, options.steps, options.fraction))
            else:
                out.append(parity_check(c))
        except Exception as exc:  # noqa: BLE001 -- a check that raises has failed
            out.append(Result(name, False, None, f"raised {type(exc).__name__}: {exc}"))
    return out


@contextlib.contextmanager
def _single_threaded():
    """One BLAS and one torch thread while checking: a batch of 8 has nothing to split, and
    on a loaded 2-core machine torch's two threads made a LeNet forward 50x slower."""
    torch = sys.modules.get("torch")  # imported by the preflight if a trial needs it
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=1, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def check(file, overrides=(), options: CheckOptions = CheckOptions()) -> int:
    """`harness check FILE`: print one row per check; the exit code (module docstring)."""
    try:
        exp, trials = load(file, list(overrides))
    except ConfigErrors as exc:
        return refuse(exc.errors)
    unknown = [b for b in options.backends if b not in exp.backends]
    if unknown:
        return refuse([ConfigError("--backend", "backends", f"{', '.join(unknown)} is not "
                                   f"among the file's backends ({', '.join(exp.backends)})")])
    trials = _select(trials, options)
    errors = preflight(str(file), trials, exp.sweep)
    if errors:
        return refuse(errors)

    o = options
    label = max([len(t.point_label) for t in trials] + [6])
    print(f"check {file}: {len(trials)} trials, one batch of {o.batch}\n"
          f"  gradient: central differences at {o.samples} entries of every tensor and the "
          f"input\n  overfit: the loss below {o.fraction:g} x its start within {o.steps} "
          "steps\n  parity: gradients, the update rule and two fused steps against numpy")
    print(f"{'config':<{label}}  {'backend':<9} {'check':<9} {'result':<6} {'error':>8}  detail")
    failed, done = 0, {}
    t0 = time.perf_counter()
    try:
        with _single_threaded():
            rows = ((trial, r) for trial in trials for r in run_checks(trial, o, done))
            for t, r in rows:  # printed as they come: a check can take a while
                backend = t.backend if t.device == "cpu" else f"{t.backend}/{t.device}"
                verdict = {True: "PASS", False: "FAIL", None: "-"}[r.passed]
                err = "-" if r.error is None else f"{r.error:.1e}"
                print(f"{t.point_label:<{label}}  {backend:<9} {r.check:<9} {verdict:<6} "
                      f"{err:>8}  {r.detail}", flush=True)
                for line in r.lines if r.passed is False else []:
                    print(f"{'':<{label}}    {line}")
                failed += r.passed is False
    except KeyboardInterrupt:
        print(f"{exp.name}: interrupted", file=sys.stderr)
        return 130
    sys.stdout.flush()
    print(f"{exp.name}: {'all checks passed' if not failed else f'{failed} checks failed'} "
          f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 1 if failed else 0
