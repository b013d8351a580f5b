"""Two arms, A and B, over seeds: the one-sided tests behind a verdict (SPEC 4.6).

Values are signed so that higher is better; a diverged seed is then -inf, the worst value.
`evidence` reads what the seeds gave and picks the test; `Evidence.p(shift, alternative)`
is then the one-sided p-value of H1: mean(A) - mean(B) > shift ("greater") or < shift
("less"). Two claims are made of it, each as two one-sided tests at level alpha (a
level-alpha test rejects at p <= alpha: Lehmann & Romano, Testing Statistical Hypotheses,
3rd ed., 3.3):

    better_than   A beats B by at least d: PASS if p(A - B > d) <= alpha, FAIL if
                  p(A - B < d) <= alpha, INCONCLUSIVE otherwise.
    equivalence   A and B differ by less than d either way, by two one-sided tests (TOST,
                  Schuirmann 1987): PASS if both p(A - B > -d) and p(A - B < d) are <= alpha
                  (an intersection-union test, of level alpha with no correction: Berger
                  1982); FAIL if the difference is shown to lie outside +-d, by one of the two
                  "outside" tests p(A - B < -d), p(A - B > d) at alpha / 2 (Bonferroni over
                  the two, so that a true equivalence FAILs with probability at most alpha
                  however small d is against the noise); INCONCLUSIVE otherwise.

Every verdict needs at least 2 seeds on each side. The test, by what the seeds gave:

    exact      both sides the same on every seed (to a relative 1e-12, or diverged on every
               seed): no spread to test, the difference against d decides; a tie with d
               (0.9 - 0.8 against 0.1, to a relative 1e-12) is INCONCLUSIVE, not rounding's.
               A side diverged on every seed against one diverged on none is decided alike:
               -inf stays below any finite value minus d, whatever d (with 2 seeds a side).
    ranks      some seeds diverged, not all on one side: a one-sided Mann-Whitney U test of
               A - shift against B (scipy.stats.mannwhitneyu with a scipy.stats.
               PermutationMethod: the exact permutation distribution, ties included, when
               small), which ranks -inf as the worst value. Three seeds a side, perfectly
               separated, give p = 1/20; two give 1/6, never a verdict at alpha 0.05.
    welch      otherwise, Welch's t-test (as scipy.stats.ttest_ind, equal_var=False); against
               an exact side, the one-sample t-test of the other side (as scipy.stats.
               ttest_1samp), which is what Welch's test becomes when one variance is 0.
    paired     a claim with `paired: true`, whose A[i] and B[i] ran on one seed: the paired
               t-test, the one-sample t-test of the differences A[i] - B[i] against the shift
               (as scipy.stats.ttest_rel), df n - 1. It removes what the two arms of a seed
               share (its scenes, its data order, its initial weights) from the noise.
               Differences all equal (to a relative 1e-12 of the values) are exact, as
               above; a diverged seed falls back to the unpaired rank test. `test:
               bootstrap` resamples the pairs together.
    bootstrap  or, if the claim asks, the percentile bootstrap distribution of the difference
               of means (scipy.stats.bootstrap, 4999 seeded resamples): p is the share of
               resampled differences on the wrong side of the shift, so that p <= alpha is
               the (1 - 2 alpha) percentile interval lying beyond it.

References: Schuirmann, A comparison of the two one-sided tests procedure and the power
approach for assessing the equivalence of average bioavailability, J. Pharmacokinet.
Biopharm. 15 (1987); Berger, Multiparameter hypothesis testing and acceptance sampling,
Technometrics 24 (1982); Welch, Biometrika 34 (1947).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

EXACT = 1e-12  # relative spread under which a side's values are one exact value
RESAMPLES = 4999


class Judgement(NamedTuple):
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    p: float | None  # one-sided p-value, or None where no test was run
    note: str = ""
    alternative: str | None = None  # H1 of p: better or worse; within or outside (equivalence)


@dataclass
class Evidence:
    """What the seeds of two arms gave, signed (higher is better, diverged -inf), and the
    test that reads them: "exact", "ranks", "welch", "bootstrap", or "" where none can."""

    a: np.ndarray  # (n,)
    b: np.ndarray  # (m,)
    test: str
    note: str = ""
    exact_a: bool = False  # a one-sample t-test against the exact side
    exact_b: bool = False
    rng_seed: int = 0
    paired: bool = False  # a[i] and b[i] ran on one seed: tests read a - b
    _cache: dict = field(default_factory=dict, repr=False)

    def p(self, shift: float, alternative: str) -> float:
        """One-sided p of H1: mean(a) - mean(b) > shift ("greater") or < shift ("less")."""
        if self.test == "ranks":
            return self._ranks(shift, alternative)
        if self.test == "welch":
            from scipy import special  # deferred: ~0.3 s, only judging needs it

            t, df = self._t(shift)  # stdtr(df, x) = P(T_df <= x), as scipy.stats.t.cdf
            return float(special.stdtr(df, -t) if alternative == "greater"
                         else special.stdtr(df, t))
        if self.test == "bootstrap":
            dist = self._bootstrap()
            return float(np.mean(dist <= shift) if alternative == "greater"
                         else np.mean(dist >= shift))
        raise ValueError(f"no test to run on these seeds ({self.test or self.note})")

    def _t(self, shift: float) -> tuple[float, float]:
        """The t statistic of a - shift against b, oriented so that large means a ahead,
        and its degrees of freedom: Welch's, or the one-sample test's n - 1 against an exact
        side. scipy.stats.ttest_ind and ttest_1samp compute the same (the tests hold them
        to it) at a millisecond a call, too slow for a stopping rule's simulation."""
        if shift not in self._cache:
            a, b = self.a - shift, self.b
            if self.paired:  # the differences against 0: scipy.stats.ttest_rel
                self._cache[shift] = _one_sample(a - b, 0.0)
            elif self.exact_b:  # a against b's one value
                self._cache[shift] = _one_sample(a, b.mean())
            elif self.exact_a:  # b against a's one value: b ahead is a behind
                t, df = _one_sample(b, a.mean())
                self._cache[shift] = (-t, df)
            else:
                va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
                df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
                self._cache[shift] = ((a.mean() - b.mean()) / math.sqrt(va + vb), df)
        return self._cache[shift]

    def _ranks(self, shift: float, alternative: str) -> float:
        """Mann-Whitney U of a - shift against b, with its permutation distribution (exact
        while C(n + m, n) <= 9999, else 9999 seeded draws)."""
        from scipy import stats  # deferred: ~0.3 s, only judging needs it

        method = stats.PermutationMethod(rng=np.random.default_rng(self.rng_seed))
        return float(stats.mannwhitneyu(self.a - shift, self.b, alternative=alternative,
                                        method=method).pvalue)

    def _bootstrap(self) -> np.ndarray:
        """(RESAMPLES,) resampled mean(a) - mean(b), each arm resampled on its own."""
        if "bootstrap" not in self._cache:
            from scipy import stats  # deferred: ~0.3 s, only judging needs it

            res = stats.bootstrap((self.a, self.b), _mean_difference, method="percentile",
                                  n_resamples=RESAMPLES, paired=self.paired,
                                  rng=np.random.default_rng(self.rng_seed))
            self._cache["bootstrap"] = res.bootstrap_distribution
        return self._cache["bootstrap"]


def _one_sample(x: np.ndarray, value: float) -> tuple[float, float]:
    """Student's one-sample t statistic of x against value, and its n - 1 df."""
    return (x.mean() - value) / math.sqrt(x.var(ddof=1) / len(x)), len(x) - 1


def _mean_difference(x, y, axis=-1):
    return x.mean(axis) - y.mean(axis)


def signed(values, higher: bool) -> np.ndarray:
    """The values with higher better; a diverged seed (+-inf) becomes -inf, the worst."""
    v = np.asarray(values, float) * (1 if higher else -1)
    v[np.isinf(v)] = -math.inf
    return v


def evidence(better, than, higher: bool, test: str = "welch", rng_seed: int = 0,
             paired: bool = False) -> Evidence:
    """The two arms' final values (per seed; with `paired`, A[i] and B[i] on one seed) and
    the test the module's docstring picks."""
    a, b = signed(better, higher), signed(than, higher)
    if np.isnan(a).any() or np.isnan(b).any():
        return Evidence(a, b, "", "a metric is missing")
    if len(a) < 2 or len(b) < 2:
        return Evidence(a, b, "", "needs at least 2 seeds on each side")
    if paired and len(a) != len(b):
        raise ValueError(f"paired arms differ in length: {len(a)} and {len(b)}")
    if paired and np.isfinite(a).all() and np.isfinite(b).all():
        d = a - b
        if np.ptp(d) <= EXACT * max(np.abs(a).max(), np.abs(b).max()):  # one difference
            return Evidence(a, b, "exact", f"paired over {len(a)} seeds")
        note = f"paired t-test over {len(a)} seeds"
        return Evidence(a, b, "welch" if test == "welch" else "bootstrap", note,
                        rng_seed=rng_seed, paired=True)
    down_a, down_b = np.isinf(a), np.isinf(b)
    exact_a, exact_b = _exact(a), _exact(b)
    ordered = (down_a.all() and not down_b.any()) or (down_b.all() and not down_a.any())
    if (exact_a and exact_b) or ordered:  # every pair of seeds ordered alike
        return Evidence(a, b, "exact")
    if down_a.any() or down_b.any():
        n = int(down_a.sum() + down_b.sum())
        unpaired = "unpaired " if paired else ""
        return Evidence(a, b, "ranks", f"{unpaired}rank test (Mann-Whitney U), {n} diverged "
                                       f"seed{'s' * (n > 1)} ranked worst", rng_seed=rng_seed)
    if test == "welch":
        note = ("the other side is exact: one-sample t-test" if exact_b else
                "this side is exact: one-sample t-test" if exact_a else "")
        return Evidence(a, b, "welch", note, exact_a, exact_b)
    return Evidence(a, b, "bootstrap", rng_seed=rng_seed)


def _exact(v: np.ndarray) -> bool:
    """One value on every seed: diverged on all, or a spread within a relative 1e-12 (np.std
    of three equal 0.3s is 5.6e-17, not 0, and a t-test would run on that rounding)."""
    if np.isinf(v).all():
        return True
    return bool(np.isfinite(v).all() and np.ptp(v) <= EXACT * np.abs(v).max())


# ----------------------------------------------------------------------------- verdicts


def better_than(ev: Evidence, margin: float, level: float) -> Judgement:
    """A beats B by at least `margin`, tested at `level` each way."""
    if not ev.test:
        return Judgement("INCONCLUSIVE", None, ev.note)
    if ev.test == "exact":
        return _with_note(_exact_better(ev.a.mean(), ev.b.mean(), margin), ev.note)
    return _decide(ev.p(margin, "greater"), ev.p(margin, "less"), level, ev.note,
                   ("better", "worse"))


def equivalence(ev: Evidence, within: float, level: float) -> Judgement:
    """A and B within +-`within` of each other (TOST), or shown to lie outside it."""
    if not ev.test:
        return Judgement("INCONCLUSIVE", None, ev.note)
    if ev.test == "exact":
        return _with_note(_exact_equivalence(ev.a.mean(), ev.b.mean(), within), ev.note)
    p_in = max(ev.p(-within, "greater"), ev.p(within, "less"))
    p_out = min(1.0, 2 * min(ev.p(-within, "less"), ev.p(within, "greater")))
    return _decide(p_in, p_out, level, ev.note, ("within", "outside"))


def _with_note(j: Judgement, note: str) -> Judgement:
    return j._replace(note="; ".join(filter(None, [note, j.note])))


def judge(better: list[float], than: list[float], margin: float, higher: bool, test: str,
          alpha: float, rng_seed: int = 0, paired: bool = False) -> Judgement:
    """(verdict, one-sided p or None, note, alternative of p) for one better/than claim on
    one group. A diverged seed is an infinite value."""
    return better_than(evidence(better, than, higher, test, rng_seed, paired), margin, alpha)


def judge_equivalent(a: list[float], b: list[float], within: float, higher: bool, test: str,
                     alpha: float, rng_seed: int = 0, paired: bool = False) -> Judgement:
    """The same for an equivalent claim: PASS if |mean(A) - mean(B)| < within is shown."""
    return equivalence(evidence(a, b, higher, test, rng_seed, paired), within, alpha)


def _exact_better(a: float, b: float, margin: float) -> Judgement:
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


def _exact_equivalence(a: float, b: float, within: float) -> Judgement:
    """|A - B| against the margin with no spread to test; a side diverged on every seed
    against a finite one is as far from it as can be."""
    if math.isinf(a) or math.isinf(b):
        if math.isinf(a) and math.isinf(b):
            return Judgement("INCONCLUSIVE", None, "both sides diverged on every seed")
        return Judgement("FAIL", None, "one side diverged on every seed, the other on none")
    gap = abs(a - b) - within
    if abs(gap) <= EXACT * max(abs(a), abs(b), within):
        return Judgement("INCONCLUSIVE", None, "no spread over seeds; a tie at the margin")
    return Judgement("PASS" if gap < 0 else "FAIL", None, "no spread over seeds")


def _decide(p_pass: float, p_fail: float, level: float, note: str = "",
            alternatives: tuple[str, str] = ("better", "worse")) -> Judgement:
    """PASS, FAIL or INCONCLUSIVE from the p-values of the claim and of its negation. An
    exact permutation p is a ratio of counts: compared with the level to a relative 1e-9,
    so that 1/20 is 0.05 however it was summed. INCONCLUSIVE shows the claim's p."""
    level = level * (1 + 1e-9)
    if p_pass <= level:
        return Judgement("PASS", float(p_pass), note, alternatives[0])
    if p_fail <= level:
        return Judgement("FAIL", float(p_fail), note, alternatives[1])
    return Judgement("INCONCLUSIVE", float(p_pass), note, alternatives[0])
