"""Verdicts on an experiment's textbook claims, from a test over seeds (SPEC 4.6).

A claim `better: A, than: B, metric: M, by_at_least: d` says that the final value of M is
better under configuration A than under B by at least d. Better means higher for accuracy
and throughput and lower for losses, errors and step times, unless `higher_is_better` says.
With signed differences D = better - than (sign flipped when lower is better) over seeds:

    welch      Welch's t-test of mean(A) - mean(B) against d, one-sided both ways:
               PASS if p(H1: diff > d) < alpha; FAIL if p(H1: diff < d) < alpha;
               INCONCLUSIVE otherwise, and whenever a side has fewer than 2 seeds.
    bootstrap  a percentile bootstrap interval (1 - alpha) of the difference of means:
               PASS if it lies above d, FAIL if below, INCONCLUSIVE if it straddles d.

A claim `agree: backend, within: r` says that trials which differ only in that axis give
the same final metric to relative tolerance r: PASS or FAIL, per configuration and seed.

Claims are judged separately for each backend and device (unless the claim itself names
them), so that one trial seen through three identical backends never counts thrice.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

LOWER_IS_BETTER = ("loss", "mae", "step_ms", "gap")
USABLE = ("finished", "diverged")  # the statuses whose metrics a claim is judged on


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
    p_value: float | None
    note: str = ""

    def row(self) -> str:
        p = "" if self.p_value is None else f"{self.p_value:.3g}"
        return (f"| {self.claim} | {self.group} | {_ms(self.better)} | {_ms(self.than)} | "
                f"{self.margin:g} | {p} | **{self.verdict}** | {self.note} |")


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
          alpha: float, rng_seed: int = 0) -> tuple[str, float | None, str]:
    """(verdict, p-value or None, note) for one claim on one group."""
    from scipy import stats

    a = np.asarray(better, float) * (1 if higher else -1)
    b = np.asarray(than, float) * (1 if higher else -1)
    if np.isnan(a).any() or np.isnan(b).any():
        return "INCONCLUSIVE", None, "a metric is missing"
    if np.isinf(a).any() or np.isinf(b).any():  # -inf: a diverged trial, the worst value
        if np.isinf(b).all() and np.isfinite(a).all():
            return "PASS", None, "the other side diverged on every seed"
        if np.isinf(a).all() and np.isfinite(b).all():
            return "FAIL", None, "this side diverged on every seed"
        return "INCONCLUSIVE", None, "some seeds diverged"
    if len(a) < 2 or len(b) < 2:
        return "INCONCLUSIVE", None, "needs at least 2 seeds on each side"
    if a.std() == 0 and b.std() == 0:  # deterministic: no spread to test against
        diff = a.mean() - b.mean() - margin
        verdict = "PASS" if diff > 0 else "FAIL" if diff < 0 else "INCONCLUSIVE"
        return verdict, None, "no spread over seeds"
    if test == "welch":
        # One side constant (a net at chance level on every seed): scipy warns of precision
        # loss, but Welch's test is then the one-sample t-test of the other side, and sound.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            p_up = stats.ttest_ind(a - margin, b, equal_var=False, alternative="greater").pvalue
            p_down = stats.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
        if p_up < alpha:
            return "PASS", float(p_up), ""
        if p_down < alpha:
            return "FAIL", float(p_down), ""
        return "INCONCLUSIVE", float(p_up), ""
    res = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                          confidence_level=1 - alpha, method="percentile", n_resamples=4999,
                          rng=np.random.default_rng(rng_seed))
    low, high = res.confidence_interval
    note = f"interval [{low:.3g}, {high:.3g}]"
    dist = res.bootstrap_distribution
    p = float(np.mean(dist <= margin))
    if low > margin:
        return "PASS", p, note
    if high < margin:
        return "FAIL", p, note
    return "INCONCLUSIVE", p, note


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
            verdict, p, note = "INCONCLUSIVE", None, "no finished or diverged trial"
        else:
            verdict, p, note = judge(a, b, claim.by_at_least, higher, claim.test, claim.alpha)
        verdicts.append(Verdict(describe(claim), "/".join(group) if group else "all", verdict,
                                a, b, claim.by_at_least, p, note))
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


def _agree(claim, rows: list[dict]) -> Verdict:
    axis = claim.agree
    key = lambda r: tuple(sorted((k, v) for k, v in r.items()  # noqa: E731
                                 if k not in (axis, "hash", "run_id", "index", "status",
                                              "error") and "/" not in k))
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(_value(r, claim.metric))
    worst, values, missing, split = 0.0, [], 0, 0
    for vals in groups.values():
        v = np.asarray(vals, dtype=float)
        if len(v) < 2:
            continue
        values.append(v.tolist())
        if np.isnan(v).any():  # a failed, killed or missing sibling: cannot say
            missing += 1
        elif np.isinf(v).any():  # diverged on some values of the axis and not on others
            split += not np.isinf(v).all()
        else:
            ref = np.abs(v).max() or 1.0
            worst = max(worst, float((v.max() - v.min()) / ref))
    if not values:
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


def write_markdown(verdicts: list[Verdict], path) -> str:
    lines = ["| claim | judged on | better: mean ± std | than: mean ± std | margin | p | "
             "verdict | note |", "|---|---|---|---|---|---|---|---|"]
    lines += [v.row() for v in verdicts]
    text = "\n".join(lines) + "\n"
    path.write_text(f"# Claims\n\n{text}")
    return text
