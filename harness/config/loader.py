"""Reading an experiment file whole: every check at once, then the grid's trials (SPEC 4.4).

    experiment, trials = load("experiments/optimizers.yaml", ["train.epochs=1"])

raises `ConfigErrors` with every error of the file and its overrides at once.
"""

from __future__ import annotations

import dataclasses
import itertools

from harness.config import schema
from harness.config.expand import (
    Trial,
    _check_claims,
    _check_sweep,
    _resolve_auto,
    check_experiment,
    flatten,
    matches,
    resolved,
    trial_hash,
)
from harness.config.tuning import check_tune
from harness.config.validate import Checker, apply_overrides, load_file, set_path
from harness.data.tasks import TASKS
from harness.errors import ConfigErrors


def load(path, overrides: list[str] = ()) -> tuple[schema.Experiment, list[Trial]]:
    """Read, check and expand an experiment file. Raises ConfigErrors with all errors."""
    errors = []
    try:
        raw = load_file(path)
    except ConfigErrors as exc:  # the overrides' own errors still come in the same report
        raw, errors = {}, exc.errors
    try:
        raw, sources = apply_overrides(raw, list(overrides))
    except ConfigErrors as exc:
        errors += exc.errors
    if errors:
        raise ConfigErrors(errors)
    ck = Checker(str(path), sources)
    exp, task, _ = check_experiment(ck, raw)
    task_defaults = dict(TASKS[task["name"]].options) if task else {}
    axes = _check_sweep(ck, raw, raw.get("sweep", {}), task_defaults)
    _check_claims(ck, raw, task_defaults)
    check_tune(ck, raw, axes, task_defaults)
    if ck.errors:
        raise ConfigErrors(ck.errors)

    base = {k: v for k, v in raw.items() if k != "sweep"}
    trials, index = [], 0
    for combo in itertools.product(*axes.values()):
        point = dict(zip(axes, combo))
        point_raw = base
        for key, value in point.items():
            point_raw = set_path(point_raw, key, value)
        sub = Checker(str(path))
        point_exp, _, _ = check_experiment(sub, point_raw)
        if sub.errors:  # axes that are fine alone but clash together
            raise ConfigErrors([dataclasses.replace(e, path=f"sweep point {point}: {e.path}")
                                for e in sub.errors])
        config = resolved(point_exp)
        for backend in exp.backends:
            for device in dict.fromkeys(_resolve_auto(backend, d) for d in exp.devices):
                for seed in exp.seeds:
                    trials.append(Trial(index, point_exp, config, point, backend, device, seed,
                                        trial_hash(config, backend, device, seed)))
                    index += 1
    # a --set that narrows the sweep (a smoke test) may leave claims about arms it dropped:
    # report then says they had no trial; the file's own grid must serve its claims
    narrowed = any(k == "sweep" or k.startswith("sweep.") for k in sources)
    errors = [] if narrowed else claim_values(str(path), sources, exp, trials)
    if errors:
        raise ConfigErrors(errors)
    return exp, trials


def claim_values(source: str, sources: dict, exp, trials: list[Trial]) -> list:
    """A claim side (`better`, `than`, each `equivalent`, with its `where`) that no trial of
    the grid matches: refused with the values the grid has at each of its paths, since
    report would otherwise blame the seeds (issue 17)."""
    rows = [{**flatten(t.config), "backend": t.backend, "device": t.device,
             "seed": str(t.seed)} for t in trials]
    ck = Checker(source, sources)
    for i, claim in enumerate(exp.expect):
        sides = {"better": claim.better, "than": claim.than} if claim.better else {}
        sides.update({f"equivalent[{j}]": s for j, s in enumerate(claim.equivalent)})
        if claim.where and not sides:
            sides = {"where": {}}
        for name, side in sides.items():
            selector = {**claim.where, **side}
            if any(matches(selector, r) for r in rows):
                continue
            grid = "; ".join(f"{k}: {', '.join(sorted({str(r.get(k)) for r in rows}))}"
                             for k in selector)
            ck.error(f"expect[{i}].{name}", f"no trial of the grid has {selector}: the grid "
                                            f"has {grid}")
    return ck.errors


