"""Tuning each arm before its claims are judged (`tune:`, issue 15): the values to try, their
checks, and trials derived from others with some values changed.

    tune:
      grid: {optimizer.momentum: [0.5, 0.9]}        # values to try, as a sweep's
      log_grid: {optimizer.lr: [0.001, 1.0, 7]}     # 7 values from 1e-3 to 1, log-spaced
      metric: val/accuracy                          # the selection metric (final value)
      seeds: [1000, 1001]                           # the seeds that select

An arm is one sweep point on one backend and device. Its tuning trials are every combination
of the values on every tuning seed; harness/sweep/tuning.py runs them, chooses, and runs the
arm on the experiment's seeds with the choice. A tuned knob cannot also be a sweep axis, and
the tuning seeds are not the experiment's: selection and verdict never share a trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from harness.config import schema
from harness.config.expand import (
    Trial,
    _short,
    check_experiment,
    path_exists,
    resolved,
    trial_hash,
)
from harness.config.validate import Checker, set_path
from harness.errors import ConfigErrors


def values(tune: schema.Tune) -> dict[str, list]:
    """Dotted path -> the values to try: the grid's as given, each log grid's n values from
    low to high, log-spaced and rounded to 4 significant digits (0.001, 0.003162, ...)."""
    out = {path: list(vals) for path, vals in tune.grid.items()}
    for path, (low, high, n) in tune.log_grid.items():
        out[path] = [float(f"{v:.4g}") for v in np.geomspace(low, high, int(n))]
    return out


def combinations(tune: schema.Tune) -> list[dict]:
    """Every combination of the values to try, as {path: value}."""
    grid = values(tune)
    return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def check_tune(ck: Checker, raw: dict, axes: dict, task_defaults: dict) -> None:
    """The tune: block's paths, values and seeds, read from the raw mapping so that they are
    checked even when another key is wrong (its types are the dataclass's to report)."""
    tune = raw.get("tune")
    if not isinstance(tune, dict):
        return
    grids = {s: tune.get(s) if isinstance(tune.get(s), dict) else {}
             for s in ("grid", "log_grid")}
    if not grids["grid"] and not grids["log_grid"]:
        ck.error("tune", "expected a grid or a log_grid of values to try, e.g. log_grid: "
                         "{optimizer.lr: [0.001, 1.0, 7]}")
    base = {k: v for k, v in raw.items() if k not in ("sweep", "tune")}
    for section in ("grid", "log_grid"):
        for path, vals in grids[section].items():
            where = f"tune.{section}.{path}"
            why = path_exists(raw, str(path), task_defaults)
            if why:
                ck.error(where, why)
                continue
            if _swept(path, axes):
                ck.error(where, f"{path!r} is a sweep axis too: an arm is a sweep point, "
                                "and what is tuned within it cannot also vary between arms")
                continue
            if section == "log_grid":
                _check_log_grid(ck, where, vals)
                continue
            if not isinstance(vals, list) or not vals:
                ck.wrong(where, "a non-empty list of values", vals)
                continue
            for i, value in enumerate(vals):
                sub = Checker(ck.source)
                check_experiment(sub, set_path(base, path, value))
                for err in sub.errors:
                    if err.path == path or err.path.startswith((f"{path}.", f"{path}[")):
                        ck.error(f"{where}[{i}]{err.path[len(path):]}", err.message)
    seeds, tuning_seeds = raw.get("seeds", [0]), tune.get("seeds", [])
    if isinstance(seeds, dict):  # seeds until decided: every seed the rule may run
        first, most = seeds.get("first", 0), seeds.get("max", 10)
        seeds = list(range(first, first + most)) if isinstance(first, int) and \
            isinstance(most, int) else []
    if isinstance(seeds, list) and isinstance(tuning_seeds, list):
        shared = sorted(set(map(str, seeds)) & set(map(str, tuning_seeds)), key=str)
        if shared:
            ck.error("tune.seeds", f"shares seeds [{', '.join(shared)}] with the experiment's "
                                   "seeds: the trials that choose must not be the judged ones")


def _swept(path: str, axes: dict) -> bool:
    """Whether the sweep sets `path`: as an axis, inside one (model.width under a `model:`
    axis whose values give width), or above one."""
    for axis, vals in axes.items():
        if path == axis or axis.startswith(f"{path}."):
            return True
        if path.startswith(f"{axis}."):
            key = path[len(axis) + 1:].split(".")[0]
            if any(not isinstance(v, dict) or key in v for v in vals):
                return True
    return False


def _check_log_grid(ck: Checker, where: str, vals) -> None:
    ok = (isinstance(vals, list) and len(vals) == 3
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals))
    if not ok:
        ck.wrong(where, "[low, high, n], e.g. [0.001, 1.0, 7]", vals)
        return
    low, high, n = vals
    if not (0 < low < high and math.isfinite(high)):
        ck.error(where, f"expected 0 < low < high, found low {low}, high {high}")
    if not (isinstance(n, int) and n >= 2):
        ck.error(where, f"expected n an integer >= 2, found {n!r}")


def derive(trial: Trial, changes: dict, seed: int | None = None,
           phase: str | None = None) -> Trial:
    """The trial with `changes` ({dotted path: value}) applied, checked like the file, on
    `seed` if given: a tuning trial, or a final one with its arm's choice. Its point shows
    the changes, so its label and run name say what was tried."""
    raw = set_path(trial.config, "name", trial.experiment.name)
    for path, value in changes.items():
        raw = set_path(raw, path, value)
    ck = Checker(trial.experiment.name)
    exp, _, _ = check_experiment(ck, raw)
    if ck.errors:
        raise ConfigErrors(ck.errors)
    exp = dataclasses.replace(exp, tune=trial.experiment.tune, expect=trial.experiment.expect)
    config = resolved(exp)
    seed = trial.seed if seed is None else seed
    return Trial(trial.index, exp, config, {**trial.point, **changes}, trial.backend,
                 trial.device, seed, trial_hash(config, trial.backend, trial.device, seed),
                 phase or trial.phase)


def describe(changes: dict) -> str:
    """'optimizer.lr=0.01 optimizer.momentum=0.9'."""
    return " ".join(f"{k}={_short(v)}" for k, v in changes.items())
