"""Tuning each arm on validation before its verdict (`tune:`, issue 15).

An arm is a sweep point on one backend and device. For every arm, every combination of the
values to try (harness/config/tuning.py) runs on each tuning seed; the combination with the
best mean final `tune.metric` over those seeds is chosen (a diverged trial counts as the
worst value, a failed one is left out; ties go to the first in the grid's order), and the
arm's trials on the experiment's seeds run with it. What was chosen, and each combination's
score, is what `report` shows; the runner and the report choose by this same function, from
the same rows, so they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.config import Trial
from harness.config.tuning import combinations, derive, describe
from harness.names import lower_is_better


def arm(trial: Trial) -> tuple[str, str, str]:
    """The arm a trial belongs to: (sweep point, backend, device), before tuning."""
    return trial.point_label, trial.backend, trial.device


@dataclass
class Choice:
    """What an arm's tuning found."""

    values: dict | None  # the chosen {path: value}; None if every combination failed
    scores: list = field(default_factory=list)  # [(values, mean score, n seeds)], grid order

    def describe(self) -> str:
        return "none (every tuning trial failed)" if self.values is None else \
            describe(self.values)


def tuning_trials(trials: list[Trial]) -> tuple[list[Trial], dict[str, tuple]]:
    """Every arm's tuning trials, and for each (by hash) its (arm, combination index)."""
    out, where, seen = [], {}, set()
    for t in trials:
        if arm(t) in seen:
            continue
        seen.add(arm(t))
        tune = t.experiment.tune
        for i, changes in enumerate(combinations(tune)):
            for seed in tune.seeds:
                derived = derive(t, changes, seed=seed, phase="tune")
                out.append(derived)
                where[derived.hash] = (arm(t), i)
    return out, where


def choose(trials: list[Trial], where: dict[str, tuple], rows: dict[str, dict]
           ) -> dict[tuple, Choice]:
    """arm -> its Choice, from the tuning trials' rows (trials.csv form: status and final
    metrics by hash); an arm none of whose rows has finished or diverged chooses nothing."""
    if not trials:
        return {}
    tune = trials[0].experiment.tune
    lower = lower_is_better(tune.metric)
    combos = combinations(tune)
    scores: dict[tuple, dict[int, list[float]]] = {}
    for t in trials:
        a, i = where[t.hash]
        per_combo = scores.setdefault(a, {})
        row = rows.get(t.hash)
        if row is None or row.get("status") not in ("finished", "diverged"):
            continue
        value = float(row.get(tune.metric, math.nan))
        if row["status"] == "diverged" or not math.isfinite(value):
            value = math.inf if lower else -math.inf  # the worst
        per_combo.setdefault(i, []).append(value)
    out = {}
    for a, per_combo in scores.items():
        table = [(combos[i], sum(v) / len(v), len(v)) for i, v in sorted(per_combo.items())]
        if not table:
            out[a] = Choice(None)
            continue
        best = min(table, key=lambda r: r[1]) if lower else max(table, key=lambda r: r[1])
        out[a] = Choice(best[0], table)
    return out


def tuned(trials: list[Trial], choices: dict[tuple, Choice]) -> list[Trial]:
    """The experiment's trials with their arm's choice applied; an arm without a choice keeps
    none of its trials (the runner reports them as not run)."""
    return [derive(t, choices[arm(t)].values) for t in trials
            if arm(t) in choices and choices[arm(t)].values is not None]
