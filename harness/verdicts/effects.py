"""How large the difference is, on every verdict row (SPEC 4.6): a p-value says whether the
seeds can tell, not by how much.

    difference   mean(A) - mean(B) in the metric's own units, with its 95% interval:
                 Welch's (the t interval with Welch-Satterthwaite degrees of freedom), the
                 paired t interval of the differences for a `paired` claim, or the
                 percentile bootstrap's for a claim judged by the bootstrap (pairs resampled
                 together when paired). None where a seed diverged (no mean) or a metric is
                 missing.
    P(A better)  the probability of improvement, P(X > Y) + P(X = Y) / 2 for a seed X of A
                 and a seed Y of B: the Mann-Whitney U statistic over n m (rliable's
                 `probability_of_improvement`, Agarwal et al. 2021; Bouthillier et al. 2021),
                 "better" in the metric's sense (lower for losses), a diverged seed ranked
                 worst. Its 95% interval is a stratified percentile bootstrap: each arm
                 resampled on its own, as rliable resamples runs within each task
                 (scipy.stats.bootstrap, 2000 resamples, seeded: the same seeds give the same
                 interval).

Both intervals need 2 seeds a side; with fewer, the point alone is given.

References: Agarwal et al., Deep Reinforcement Learning at the Edge of the Statistical
Precipice, NeurIPS 2021; Bouthillier et al., Accounting for Variance in Machine Learning
Benchmarks, MLSys 2021; Welch, Biometrika 34 (1947).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from harness.verdicts.twosample import signed

LEVEL = 0.95
RESAMPLES = 2000


class Effect(NamedTuple):
    diff: float | None  # mean(A) - mean(B), in the metric's units
    low: float | None  # its 95% interval
    high: float | None
    poi: float | None  # P(A better than B)
    poi_low: float | None  # its 95% interval
    poi_high: float | None


NONE = Effect(None, None, None, None, None, None)


def effect(better, than, higher: bool, test: str = "welch", rng_seed: int = 0,
           paired: bool = False) -> Effect:
    """The difference of means and the probability of improvement of A over B, each with
    its 95% interval, from the final values per seed (a diverged seed is +-inf; `paired`:
    A[i] and B[i] ran on one seed)."""
    a, b = np.asarray(better, float), np.asarray(than, float)
    if not len(a) or not len(b) or np.isnan(a).any() or np.isnan(b).any():
        return NONE
    poi, poi_low, poi_high = _improvement(signed(a, higher), signed(b, higher), rng_seed)
    if np.isinf(a).any() or np.isinf(b).any():
        return Effect(None, None, None, poi, poi_low, poi_high)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Effect(diff, None, None, poi, poi_low, poi_high)
    if test == "bootstrap":
        low, high = _bootstrap_interval(a, b, rng_seed, paired)
    else:
        low, high = paired_interval(a, b) if paired else welch_interval(a, b)
    return Effect(diff, low, high, poi, poi_low, poi_high)


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """mean(a) - mean(b) +- t_{df, (1 + level)/2} se, se^2 = s_a^2/n + s_b^2/m, with Welch-
    Satterthwaite's df; an exact side (no spread) leaves the other side's t interval, and
    two of them the point itself."""
    from scipy import special  # deferred: ~0.3 s, only judging needs it

    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    if va + vb == 0:
        return diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(special.stdtrit(df, (1 + level) / 2) * np.sqrt(va + vb))  # t quantile
    return diff - half, diff + half


def paired_interval(a: np.ndarray, b: np.ndarray, level: float = LEVEL
                    ) -> tuple[float, float]:
    """mean(a - b) +- t_{n-1, (1 + level)/2} sd(a - b) / sqrt(n): a[i] and b[i] on one
    seed (the interval of scipy.stats.ttest_rel)."""
    from scipy import special  # deferred: ~0.3 s, only judging needs it

    d = a - b
    diff = float(d.mean())
    se = float(np.sqrt(d.var(ddof=1) / len(d)))
    half = float(special.stdtrit(len(d) - 1, (1 + level) / 2)) * se
    return diff - half, diff + half


def _bootstrap_interval(a, b, rng_seed: int, paired: bool = False) -> tuple[float, float]:
    from scipy import stats  # deferred: ~0.3 s, only judging needs it

    res = stats.bootstrap((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                          confidence_level=LEVEL, method="percentile", n_resamples=RESAMPLES,
                          paired=paired, rng=np.random.default_rng(rng_seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def probability_of_improvement(x, y, axis: int = -1):
    """U / (n m): the share of pairs (x_i, y_j) with x_i > y_j, ties counted half.
    x (..., n), y (..., m) -> (...)."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    wins = (x[..., :, None] > y[..., None, :]) + 0.5 * (x[..., :, None] == y[..., None, :])
    return wins.mean(axis=(-2, -1))  # (..., n, m) -> (...)


def _improvement(a: np.ndarray, b: np.ndarray, rng_seed: int):
    """P(A better than B) on signed values (higher better, diverged -inf), with its
    stratified percentile bootstrap interval where each side has 2 seeds or more."""
    poi = float(probability_of_improvement(a, b))
    if len(a) < 2 or len(b) < 2:
        return poi, None, None
    from scipy import stats  # deferred: ~0.3 s, only judging needs it

    res = stats.bootstrap((a, b), probability_of_improvement, vectorized=True,
                          confidence_level=LEVEL, method="percentile", n_resamples=RESAMPLES,
                          rng=np.random.default_rng(rng_seed))
    return poi, float(res.confidence_interval.low), float(res.confidence_interval.high)
