"""Verdicts on an experiment's textbook claims, from tests over seeds (SPEC 4.6).

A claim takes one of three forms:

    better: A, than: B, metric: M, by_at_least: d
        the final value of M is better under configuration A than under B by at least d.
        Better means higher for accuracy and throughput and lower for losses, errors and
        step times, unless `higher_is_better` says.
    equivalent: [A, B], metric: M, within: d
        A and B give the same M up to d either way: |mean(A) - mean(B)| < d, in M's units.
    agree: axis, within: r
        trials which differ only in that axis (backend) give the same final metric to
        relative tolerance r, per configuration (the trial's config columns, never its final
        metrics, timings or status) and seed. A configuration whose trial diverged on some
        values of the axis only FAILs; one whose sibling failed, was killed or is missing
        makes the claim INCONCLUSIVE.

The first two are tested over seeds by harness/verdicts/twosample.py (better/than: two
one-sided tests of A - d against B; equivalent: TOST), each with its effect sizes
(harness/verdicts/effects.py): the difference of means with its 95% interval and P(A better
than B). Claims are judged separately for each backend and device (unless the claim itself
names them), so that one trial seen through three identical backends never counts thrice.

Many claims at once. Every verdict row of a file that ran a test is one hypothesis of one
family, and Holm's step-down procedure (Holm 1979; statsmodels.stats.multitest.
multipletests, method="holm") adjusts their p-values together; a row stays PASS or FAIL
only if its adjusted p is at most its claim's alpha, and claims.md shows both p-values. A
row tests a claim and its negation (PASS, FAIL), which exclude each other: its hypothesis in
the family is the direction its data favour, the one its p shows (Holm's procedure with
directional decisions, Shaffer 1980). What this bounds: twice a row's p is a p-value for
"the difference is exactly the margin" (Bonferroni over its two directions), and Holm's
procedure on those at 2 alpha rejects the rows this one does; so a file whose rows all sit
at their margins gives any verdict at all with probability at most 2 alpha, alpha for PASS
and alpha for FAIL, as one row alone does, however the rows depend on each other (they share
arms). Away from the margins an error is a verdict in the wrong direction, which Holm's
procedure keeps within the same bound for independent rows (Shaffer 1980). Twenty claims
are then not twenty chances of a false PASS. Rows decided with no test (no spread over
seeds, a side diverged on every seed) and rows that could not be tested (a missing metric,
too few seeds) do not join the family: the first are decided whatever the level, the second
cannot be. `agree` rows compare within a tolerance and have no p-value.

References: Holm, A simple sequentially rejective multiple test procedure, Scand. J.
Statist. 6 (1979); Shaffer, Control of directional errors with stagewise multiple test
procedures, Ann. Statist. 8 (1980).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from harness.config.expand import matches
from harness.config.schema import NOT_IN_TRIAL, Experiment
from harness.names import lower_is_better
from harness.verdicts.effects import Effect, effect
from harness.verdicts.table import HEADER, LEGEND, ms, row, write_markdown
from harness.verdicts.twosample import Judgement, judge, judge_equivalent

USABLE = ("finished", "diverged")  # the statuses whose metrics a claim is judged on
# A trial's configuration, as trials.csv writes it (harness/results.py base_row): where it
# ran, its seed, and its config's dotted keys. Not its final metrics ("epoch", "val/mae"),
# timings, status, hash or run.
COORDINATES = ("backend", "device", "seed")
SECTIONS = {f.name for f in dataclasses.fields(Experiment)} - set(NOT_IN_TRIAL)
_ms = ms  # the name tests and older callers use

__all__ = ["HEADER", "LEGEND", "Judgement", "Verdict", "evaluate_claims", "judge",
           "judge_equivalent", "write_markdown"]


def higher_is_better(metric: str, override: bool | None) -> bool:
    if override is not None:
        return override
    return not lower_is_better(metric)  # losses, errors, step times, gaps, target/steps


@dataclass
class Verdict:
    claim: str  # the claim in words
    group: str  # which backend and device it was judged on ("numpy/cpu"), or "all"
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    better: list  # the metric's final values, per seed: A
    than: list  # B
    margin: float  # by_at_least, or an equivalence's within
    p_value: float | None  # one-sided, of the alternative below
    note: str = ""
    alternative: str | None = None  # H1 of p_value: better, worse, within or outside
    p_holm: float | None = None  # p_value adjusted over the file's rows (Holm)
    effect: Effect | None = None  # difference of means, P(A better), with 95% intervals
    kind: str = "better"  # the claim's form: better, equivalent or agree
    index: int = -1  # the claim's place in the file's `expect:`

    def row(self) -> str:
        return row(self)


def kind(claim) -> str:
    if claim.agree:
        return "agree"
    return "equivalent" if claim.equivalent else "better"


def sides(claim) -> tuple[dict, dict]:
    """The selectors of arm A and arm B."""
    if claim.equivalent:
        return claim.equivalent[0], claim.equivalent[1]
    return claim.better, claim.than


def describe(claim) -> str:
    sel = lambda s: ", ".join(f"{k}={v}" for k, v in s.items())  # noqa: E731
    where = f" (where {sel(claim.where)})" if claim.where else ""
    if claim.agree:
        return f"{claim.metric} agrees over {claim.agree} within {claim.within:g}{where}"
    a, b = sides(claim)
    where += " (paired)" if claim.paired else ""
    if claim.equivalent:
        return f"{sel(a)} matches {sel(b)} on {claim.metric} within ±{claim.within:g}{where}"
    return f"{sel(a)} beats {sel(b)} on {claim.metric}{where}"


def evaluate_claims(claims, rows: list[dict]) -> list[Verdict]:
    """Judge every claim on the trials' rows (dicts as in trials.csv), then correct the
    file's tested rows together (Holm). Finished and diverged trials are judged; a failed,
    killed or missing one counts as a missing value, so that a backend whose trials all
    failed still gets its (INCONCLUSIVE) line."""
    verdicts = []
    for i, claim in enumerate(claims):
        scope = [r for r in rows if matches(claim.where, r)]
        found = [_agree(claim, scope)] if claim.agree else _compare(claim, scope)
        verdicts += [dataclasses.replace(v, index=i) for v in found]
    return holm(verdicts, [claims[v.index].alpha for v in verdicts])


def groups(claim, rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """(label, rows) for each backend and device the claim is judged on, every status
    kept; one group, "all", if the claim names a backend or device itself."""
    named = any(k in ("backend", "device") for side in sides(claim) for k in side)
    keys = [None] if named else sorted({(r["backend"], r["device"]) for r in rows})
    return [("/".join(key) if key else "all",
             [r for r in rows if key is None or (r["backend"], r["device"]) == key])
            for key in keys or [None]]


def arm_values(claim, rows: list[dict]) -> tuple[list[float], list[float]]:
    """The final values of arm A and arm B over the finished and diverged rows; for a
    `paired` claim, A[i] and B[i] are one pair (`pairs`)."""
    higher = higher_is_better(claim.metric, claim.higher_is_better)
    usable = [r for r in rows if r.get("status") in USABLE]
    a, b = sides(claim)
    if claim.paired:
        return pairs(claim, usable, higher)
    return ([_value(r, claim.metric, higher) for r in usable if matches(a, r)],
            [_value(r, claim.metric, higher) for r in usable if matches(b, r)])


def pairs(claim, rows: list[dict], higher: bool) -> tuple[list[float], list[float]]:
    """A's and B's values matched by seed and by the value of every key the claim pools
    over (`varying`), in seed order; a trial whose partner did not finish or diverge is left
    out, as an unpaired claim leaves out a failed trial."""
    keys = sorted(varying(claim, rows))
    key = lambda r: (int(r["seed"]), *(str(r.get(k)) for k in keys))  # noqa: E731
    a_side, b_side = sides(claim)
    a = {key(r): _value(r, claim.metric, higher) for r in rows if matches(a_side, r)}
    b = {key(r): _value(r, claim.metric, higher) for r in rows if matches(b_side, r)}
    both = sorted(set(a) & set(b))
    return [a[k] for k in both], [b[k] for k in both]


def varying(claim, rows: list[dict]) -> dict[str, int]:
    """The config keys that vary within a side of the claim, with how many values: what
    the claim counts together with the seeds."""
    found = {}
    for side in sides(claim):
        mine = [r for r in rows if matches({**claim.where, **side}, r)]
        for key in {k for r in mine for k in r if k.split(".")[0] in SECTIONS}:
            if key in side or key in claim.where:
                continue
            values = {str(r.get(key)) for r in mine}
            if len(values) > 1:
                found[key] = max(found.get(key, 0), len(values))
    return found


def pooled(claim, rows: list[dict]) -> str:
    """'pools over model.batchnorm (2 values)': the config keys that vary within a side of
    the claim, whose trials it counts together with the seeds (say so, or the n per side
    looks like seeds alone)."""
    found = varying(claim, rows)
    return ("pools over " + ", ".join(f"{k} ({n} values)" for k, n in sorted(found.items()))
            if found else "")


def _compare(claim, rows: list[dict]) -> list[Verdict]:
    """A better/than or equivalent claim, judged on each backend and device unless it names
    them."""
    higher = higher_is_better(claim.metric, claim.higher_is_better)
    margin = claim.within if claim.equivalent else claim.by_at_least
    test = judge_equivalent if claim.equivalent else judge
    verdicts = []
    for label, scope in groups(claim, rows):
        a, b = arm_values(claim, scope)
        if not any(r.get("status") in USABLE for r in scope):  # all missing, failed, killed
            j = Judgement("INCONCLUSIVE", None, "no finished or diverged trial")
        else:
            j = test(a, b, margin, higher, claim.test, claim.alpha, paired=claim.paired)
        note = "; ".join(filter(None, [j.note, pooled(claim, scope)]))
        verdicts.append(Verdict(describe(claim), label, j.verdict, a, b, margin, j.p, note,
                                j.alternative, kind=kind(claim),
                                effect=effect(a, b, higher, claim.test, paired=claim.paired)))
    return verdicts


def holm(verdicts: list[Verdict], alphas: list[float]) -> list[Verdict]:
    """The verdicts with Holm-adjusted p-values over the rows that ran a test; a PASS or
    FAIL whose adjusted p exceeds its alpha becomes INCONCLUSIVE (module docstring)."""
    tested = [i for i, v in enumerate(verdicts) if v.p_value is not None]
    if not tested:
        return verdicts
    from statsmodels.stats.multitest import multipletests  # deferred: ~0.5 s, judging only

    adjusted = multipletests([verdicts[i].p_value for i in tested], method="holm")[1]
    out = list(verdicts)
    for i, p in zip(tested, adjusted):
        v = dataclasses.replace(verdicts[i], p_holm=float(p))
        if v.verdict in ("PASS", "FAIL") and p > alphas[i] * (1 + 1e-9):  # as twosample
            note = f"Holm over {len(tested)} rows: adjusted p {p:.3g} > alpha {alphas[i]:g}"
            v = dataclasses.replace(v, verdict="INCONCLUSIVE",
                                    note="; ".join(filter(None, [v.note, note])))
        out[i] = v
    return out


def _value(row: dict, metric: str, higher: bool = True) -> float:
    """The final value. A diverged trial counts as the worst possible value, whatever it
    logged before its loss blew up."""
    if row.get("status") == "diverged":
        return -math.inf if higher else math.inf
    if row.get("status") not in USABLE:
        return float("nan")
    value = row.get(metric, "")
    return float("nan") if value in ("", None) else float(value)


def configuration(row: dict, axis: str) -> tuple:
    """The trial's configuration but `axis`: its config columns, never what it measured."""
    return tuple(sorted((k, str(v)) for k, v in row.items() if k != axis
                        and (k in COORDINATES or k.split(".")[0] in SECTIONS)))


def _agree(claim, rows: list[dict]) -> Verdict:
    """Per configuration, the trials on every value of the axis seen in the claim's scope;
    one lacking a value (its trial failed, was killed or never ran) counts as missing."""
    axis = claim.agree
    levels = {r.get(axis) for r in rows}
    by_config: dict = {}
    for r in rows:
        by_config.setdefault(configuration(r, axis), []).append(r)
    worst, values, missing, split, paired = 0.0, [], 0, 0, 0
    for group in by_config.values():
        v = np.asarray([_value(r, claim.metric) for r in group], dtype=float)
        values.append(v.tolist())
        seen = {r.get(axis) for r in group}
        paired += len(seen) > 1
        if np.isnan(v).any() or seen != levels:
            missing += 1  # a failed, killed or missing sibling: cannot say
        elif np.isinf(v).any():  # diverged on some values of the axis and not on others
            split += not np.isinf(v).all()
        else:
            ref = np.abs(v).max() or 1.0
            worst = max(worst, float((v.max() - v.min()) / ref))
    if not paired:
        return Verdict(describe(claim), "all", "INCONCLUSIVE", [], [], claim.within, None,
                       f"no configuration ran on two values of {axis}", kind="agree")
    note = f"largest relative spread {worst:.2g} over {len(values)} configurations"
    if split:
        verdict, note = "FAIL", f"diverged on some values of {axis} only, in {split} of " \
                                f"{len(values)} configurations"
    elif missing:
        verdict, note = "INCONCLUSIVE", f"{note}; {missing} with a failed or missing trial"
    else:
        verdict = "PASS" if worst <= claim.within else "FAIL"
    flat = [x for v in values for x in v]
    return Verdict(describe(claim), "all", verdict, flat, [], claim.within, None, note,
                   kind="agree")
