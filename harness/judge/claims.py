"""Verdicts on an experiment's textbook claims, from a test over seeds (SPEC 4.6).

A claim `better: A, than: B, metric: M, by_at_least: d` says that the final value of M is
better under configuration A than under B by at least d. Better means higher for accuracy
and throughput and lower for losses, errors and step times, unless `higher_is_better` says.
Values are signed so that higher is better; a diverged seed is then -inf, the worst value.
Every verdict needs at least 2 seeds on each side, and tests A - d against B, one-sided both
ways: PASS if p(H1 better: A - d > B) <= alpha, FAIL if p(H1 worse: A - d < B) <= alpha,
INCONCLUSIVE otherwise (a level-alpha test rejects at p <= alpha: Lehmann & Romano,
Testing Statistical Hypotheses, 3rd ed., 3.3). The test, by what the seeds gave:

    exact      both sides the same on every seed (to a relative 1e-12, or diverged on every
               seed): no spread to test, the difference against d decides; a tie with d
               (0.9 - 0.8 against 0.1, to a relative 1e-12) is INCONCLUSIVE, not rounding's.
               A side diverged on every seed against one diverged on none is decided alike:
               -inf stays below any finite value minus d, whatever d (with 2 seeds a side).
    ranks      some seeds diverged, not all on one side: a one-sided Mann-Whitney U test of
               A - d against B (scipy.stats.mannwhitneyu with a scipy.stats.PermutationMethod:
               the exact permutation distribution, ties included, when small), which ranks
               -inf as the worst value. Three seeds a side, perfectly separated, give
               p = 1/20; two give 1/6, never a verdict at alpha 0.05.
    welch      otherwise, Welch's t-test (scipy.stats.ttest_ind, equal_var=False); against an
               exact side, the one-sample t-test of the other side (scipy.stats.ttest_1samp),
               which is what Welch's test becomes when one variance is 0.
    bootstrap  or, if the claim asks, a percentile bootstrap interval (1 - alpha) of the
               difference of means (scipy.stats.bootstrap): PASS if it lies above d, FAIL if
               below, INCONCLUSIVE if it straddles d; p is the share of resampled
               differences on the wrong side of d.

The p-value shown is one-sided, and the table names its alternative: "better" on PASS and
INCONCLUSIVE, "worse" on FAIL.

A claim `agree: backend, within: r` says that trials which differ only in that axis give
the same final metric to relative tolerance r, per configuration (the trial's config
columns, never its final metrics, timings or status) and seed. A configuration whose trial
diverged on some values of the axis only FAILs; one whose sibling failed, was killed or is
missing makes the claim INCONCLUSIVE.

Claims are judged separately for each backend and device (unless the claim itself names
them), so that one trial seen through three identical backends never counts thrice.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from harness.config.schema import NOT_IN_TRIAL, Experiment

LOWER_IS_BETTER = ("loss", "mae", "step_ms", "gap")
USABLE = ("finished", "diverged")  # the statuses whose metrics a claim is judged on
EXACT = 1e-12  # relative spread under which a side's values are one exact value
# A trial's configuration, as trials.csv writes it (harness/results.py base_row): where it
# ran, its seed, and its config's dotted keys. Not its final metrics ("epoch", "val/mae"),
# timings, status, hash or run.
COORDINATES = ("backend", "device", "seed")
SECTIONS = {f.name for f in dataclasses.fields(Experiment)} - set(NOT_IN_TRIAL)


def higher_is_better(metric: str, override: bool | None) -> bool:
    if override is not None:
        return override
    return not any(word in metric for word in LOWER_IS_BETTER)


@dataclass
class Verdict:
    claim: str  # the claim in words
    group: str  # which backend and device it was judged on
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    better: list  # the metric's final values, per seed
    than: list
    margin: float
    p_value: float | None  # one-sided, of the alternative below
    note: str = ""
    alternative: str | None = None  # "better" or "worse": H1 of p_value

    def row(self) -> str:
        p = "" if self.p_value is None else f"{self.p_value:.3g} ({self.alternative})"
        return (f"| {self.claim} | {self.group} | {_ms(self.better)} | {_ms(self.than)} | "
                f"{self.margin:g} | {p} | **{self.verdict}** | {self.note} |")


class Judgement(NamedTuple):
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    p: float | None  # one-sided p-value, or None where no test was run
    note: str = ""
    alternative: str | None = None  # "better" or "worse": H1 of p


def _ms(values) -> str:
    """'mean ± std (n=k)' over the seeds with a finite value; diverged (inf) and missing
    (NaN) seeds are counted: '0.55 ± 0.071 (n=3, 1 diverged)', 'diverged (n=3)'."""
    if not values:
        return "none"
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    counts = {"diverged": int(np.isinf(v).sum()), "missing": int(np.isnan(v).sum())}
    bad = [f"{n} {what}" for what, n in counts.items() if n]
    if not len(finite):
        return f"{' and '.join(what for what, n in counts.items() if n)} (n={len(v)})"
    std = finite.std(ddof=1) if len(finite) > 1 else 0.0
    return f"{finite.mean():.4g} ± {std:.2g} (n={', '.join([str(len(v)), *bad])})"


def judge(better: list[float], than: list[float], margin: float, higher: bool, test: str,
          alpha: float, rng_seed: int = 0) -> Judgement:
    """(verdict, one-sided p or None, note, alternative of p) for one claim on one group,
    by the rules of the module's docstring. A diverged seed is an infinite value."""
    a = np.asarray(better, float) * (1 if higher else -1)
    b = np.asarray(than, float) * (1 if higher else -1)
    if np.isnan(a).any() or np.isnan(b).any():
        return Judgement("INCONCLUSIVE", None, "a metric is missing")
    if len(a) < 2 or len(b) < 2:
        return Judgement("INCONCLUSIVE", None, "needs at least 2 seeds on each side")
    down_a, down_b = np.isinf(a), np.isinf(b)
    a[down_a], b[down_b] = -math.inf, -math.inf  # signed: diverged is the worst value
    exact_a, exact_b = _exact(a), _exact(b)
    ordered = (down_a.all() and not down_b.any()) or (down_b.all() and not down_a.any())
    if (exact_a and exact_b) or ordered:  # every pair of seeds ordered alike
        return _exact_verdict(a.mean(), b.mean(), margin)
    if down_a.any() or down_b.any():
        return _ranks(a - margin, b, alpha, rng_seed, int(down_a.sum() + down_b.sum()))
    if test == "welch":
        return _welch(a, b, margin, exact_a, exact_b, alpha)
    return _bootstrap(a, b, margin, alpha, rng_seed)


def _exact(v: np.ndarray) -> bool:
    """One value on every seed: diverged on all, or a spread within a relative 1e-12 (np.std
    of three equal 0.3s is 5.6e-17, not 0, and a t-test would run on that rounding)."""
    if np.isinf(v).all():
        return True
    return bool(np.isfinite(v).all() and np.ptp(v) <= EXACT * np.abs(v).max())


def _exact_verdict(a: float, b: float, margin: float) -> Judgement:
    """A against B with no spread to test: their difference against the margin decides.
    A side diverged on every seed (-inf) loses to any finite one, whatever the margin."""
    if math.isinf(a) or math.isinf(b):
        if math.isinf(a) and math.isinf(b):
            return Judgement("INCONCLUSIVE", None, "both sides diverged on every seed")
        if math.isinf(b):
            return Judgement("PASS", None, "the other side diverged on every seed")
        return Judgement("FAIL", None, "this side diverged on every seed")
    diff = a - b - margin
    if abs(diff) <= EXACT * max(abs(a), abs(b), margin):
        return Judgement("INCONCLUSIVE", None, "no spread over seeds; a tie at the margin")
    return Judgement("PASS" if diff > 0 else "FAIL", None, "no spread over seeds")


def _decide(p_up: float, p_down: float, alpha: float, note: str = "") -> Judgement:
    """PASS, FAIL or INCONCLUSIVE from the two one-sided p-values of A - d against B. An
    exact permutation p is a ratio of counts: compared with alpha to a relative 1e-9, so
    that 1/20 is 0.05 however it was summed."""
    level = alpha * (1 + 1e-9)
    if p_up <= level:
        return Judgement("PASS", float(p_up), note, "better")
    if p_down <= level:
        return Judgement("FAIL", float(p_down), note, "worse")
    return Judgement("INCONCLUSIVE", float(p_up), note, "better")


def _ranks(a: np.ndarray, b: np.ndarray, alpha: float, rng_seed: int, diverged: int):
    """Mann-Whitney U of a (margin already subtracted) against b, one-sided both ways, with
    its permutation distribution (exact while C(n + m, n) <= 9999, else 9999 seeded draws)."""
    from scipy import stats  # deferred: ~0.3 s, only judging needs it

    def p(alternative: str) -> float:
        method = stats.PermutationMethod(rng=np.random.default_rng(rng_seed))
        return stats.mannwhitneyu(a, b, alternative=alternative, method=method).pvalue

    return _decide(p("greater"), p("less"), alpha,
                   f"rank test (Mann-Whitney U), {diverged} diverged seed{'s' * (diverged > 1)} "
                   "ranked worst")


def _welch(a, b, margin: float, exact_a: bool, exact_b: bool, alpha: float) -> Judgement:
    """Welch's t-test of a - margin against b; against an exact side (a net at chance level
    on every seed), the one-sample t-test of the other side against its value."""
    from scipy import stats  # deferred: ~0.3 s, only judging needs it

    if exact_b:
        up, down = [stats.ttest_1samp(a - margin, b.mean(), alternative=h).pvalue
                    for h in ("greater", "less")]
        return _decide(up, down, alpha, "the other side is exact: one-sample t-test")
    if exact_a:
        up, down = [stats.ttest_1samp(b, a.mean() - margin, alternative=h).pvalue
                    for h in ("less", "greater")]
        return _decide(up, down, alpha, "this side is exact: one-sample t-test")
    up, down = [stats.ttest_ind(a - margin, b, equal_var=False, alternative=h).pvalue
                for h in ("greater", "less")]
    return _decide(up, down, alpha)


def _bootstrap(a, b, margin: float, alpha: float, rng_seed: int) -> Judgement:
    """The percentile bootstrap interval of mean(a) - mean(b), against the margin."""
    from scipy import stats  # deferred: ~0.3 s, only judging needs it

    res = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                          confidence_level=1 - alpha, method="percentile", n_resamples=4999,
                          rng=np.random.default_rng(rng_seed))
    low, high = res.confidence_interval
    note = f"interval [{low:.3g}, {high:.3g}]"
    dist = res.bootstrap_distribution
    p_up, p_down = float(np.mean(dist <= margin)), float(np.mean(dist >= margin))
    if low > margin:
        return Judgement("PASS", p_up, note, "better")
    if high < margin:
        return Judgement("FAIL", p_down, note, "worse")
    return Judgement("INCONCLUSIVE", p_up, note, "better")


def matches(selector: dict, row: dict) -> bool:
    """Whether a trial row (flat, dotted keys, strings) has every value of the selector."""
    for key, want in selector.items():
        got = row.get(key)
        if got is None or not _same(got, want):
            return False
    return True


def _same(got, want) -> bool:
    if isinstance(want, list):  # an augment list, as trials.csv writes it: "crop,noise"
        names = [w.get("name", str(w)) if isinstance(w, dict) else str(w) for w in want]
        want = ",".join(names) or "none"
    if isinstance(want, bool):
        return str(got).lower() == str(want).lower()
    if isinstance(want, (int, float)):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-12)
        except ValueError:
            return False
    return str(got) == str(want)


def describe(claim) -> str:
    sel = lambda s: ", ".join(f"{k}={v}" for k, v in s.items())  # noqa: E731
    where = f" (where {sel(claim.where)})" if claim.where else ""
    if claim.agree:
        return f"{claim.metric} agrees over {claim.agree} within {claim.within:g}{where}"
    return f"{sel(claim.better)} beats {sel(claim.than)} on {claim.metric}{where}"


def evaluate_claims(claims, rows: list[dict]) -> list[Verdict]:
    """Judge every claim on the trials' rows (dicts as in trials.csv). Finished and diverged
    trials are judged; a failed, killed or missing one counts as a missing value, so that a
    backend whose trials all failed still gets its (INCONCLUSIVE) line."""
    verdicts = []
    for claim in claims:
        scope = [r for r in rows if matches(claim.where, r)]
        verdicts += [_agree(claim, scope)] if claim.agree else _compare(claim, scope)
    return verdicts


def _compare(claim, rows: list[dict]) -> list[Verdict]:
    """A better/than claim, judged on each backend and device unless it names them."""
    named = any(k in ("backend", "device") for k in (*claim.better, *claim.than))
    groups = [None] if named else sorted({(r["backend"], r["device"]) for r in rows})
    higher = higher_is_better(claim.metric, claim.higher_is_better)
    verdicts = []
    for group in groups or [None]:
        scope = [r for r in rows if (group is None or (r["backend"], r["device"]) == group)
                 and r.get("status") in USABLE]
        a = [_value(r, claim.metric, higher) for r in scope if matches(claim.better, r)]
        b = [_value(r, claim.metric, higher) for r in scope if matches(claim.than, r)]
        if not scope:  # every trial here missing, failed or killed: nothing to judge
            j = Judgement("INCONCLUSIVE", None, "no finished or diverged trial")
        else:
            j = judge(a, b, claim.by_at_least, higher, claim.test, claim.alpha)
        verdicts.append(Verdict(describe(claim), "/".join(group) if group else "all",
                                j.verdict, a, b, claim.by_at_least, j.p, j.note,
                                j.alternative))
    return verdicts


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
    groups: dict = {}
    for r in rows:
        groups.setdefault(configuration(r, axis), []).append(r)
    worst, values, missing, split, paired = 0.0, [], 0, 0, 0
    for group in groups.values():
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
                       f"no configuration ran on two values of {axis}")
    note = f"largest relative spread {worst:.2g} over {len(values)} configurations"
    if split:
        verdict, note = "FAIL", f"diverged on some values of {axis} only, in {split} of " \
                                f"{len(values)} configurations"
    elif missing:
        verdict, note = "INCONCLUSIVE", f"{note}; {missing} with a failed or missing trial"
    else:
        verdict = "PASS" if worst <= claim.within else "FAIL"
    flat = [x for v in values for x in v]
    return Verdict(describe(claim), "all", verdict, flat, [], claim.within, None, note)


HEADER = ("| claim | judged on | better: mean ± std | than: mean ± std | margin | p (H1) | "
          "verdict | note |\n|---|---|---|---|---|---|---|---|")
LEGEND = ("p (H1): one-sided, with its alternative in brackets: better, the claim holds by "
          "its margin (shown on PASS and INCONCLUSIVE); worse, it falls short of its margin "
          "(on FAIL). Empty where no test was needed: no spread over seeds, or a side "
          "diverged on every seed.")


def write_markdown(verdicts: list[Verdict], path) -> str:
    text = "\n".join([HEADER, *(v.row() for v in verdicts)]) + f"\n\n{LEGEND}\n"
    path.write_text(f"# Claims\n\n{text}")
    return text
