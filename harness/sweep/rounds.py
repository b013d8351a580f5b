"""Seeds until decided (`seeds: {min, max, round}`, issue 15): which trials the next round
adds, by the group-sequential rule of harness/verdicts/sequential.py.

After each look the runner judges the claims on what ran; the arms of the claims still
undecided get the next `round` seeds (the seeds are first, first + 1, ... in order), until
every claim is decided or `max` is reached. `report` replays the same looks from the store.
"""

from __future__ import annotations

from harness.config import Trial
from harness.config.tuning import derive
from harness.sweep.results import base_row
from harness.verdicts.sequential import SequentialPlan, judge_look, undecided_arms


def plan(exp) -> SequentialPlan:
    r = exp.seed_rounds
    return SequentialPlan(min_seeds=r.min, max_seeds=r.max, round_size=r.round)


def templates(trials: list[Trial]) -> list[Trial]:
    """One trial per arm (sweep point, backend, device): its first seed's."""
    first = min(t.seed for t in trials)
    return [t for t in trials if t.seed == first]


def next_round(p: SequentialPlan, look: int, exp, trials: list[Trial], rows: list[dict],
               verdicts) -> tuple[list, list[Trial]]:
    """(this look's verdicts, the trials of the next round): the next seeds of every arm that
    an undecided claim needs; none after the last look or when every claim is decided."""
    verdicts = judge_look(p, look, exp.expect, rows, verdicts)
    arms = undecided_arms(p, look, exp.expect, verdicts)
    if not arms:
        return verdicts, []
    first = min(t.seed for t in trials)  # `seeds: {first: ...}`
    seeds = range(first + p.looks[look], first + p.looks[look + 1])
    new = [derive(t, {}, seed=s) for t in templates(trials)
           if any(a.covers(base_row(t)) for a in arms) for s in seeds]
    return verdicts, new


def all_seeds(trials: list[Trial], p: SequentialPlan) -> list[Trial]:
    """Every trial the rule could run: each arm on every seed up to the plan's max (what
    `report` looks for in the store; only those that ran are there)."""
    first = min(t.seed for t in trials)
    extra = [derive(t, {}, seed=s) for t in templates(trials)
             for s in range(first + p.looks[0], first + p.max_seeds)]
    return [*trials, *extra]
