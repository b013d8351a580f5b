"""Seeds until decided: a group-sequential stopping rule for claims (SPEC 4.6, issue 15).

An experiment with `seeds: {min: 3, max: 10}` runs its arms in rounds: `min` seeds each,
then `round_size` more at a time up to `max`. After each round (a look) every claim still
undecided is judged; a decided one keeps its verdict, and only the arms of the undecided
get more seeds. Judging the fixed-sample test at every look would spend alpha again at
each one: with looks at 3, 4, ..., 10 seeds a claim with no effect PASSes about 13% of the
time at alpha 0.05, not 5% (tests/test_sequential.py measures it).

The rule: error spending (Lan & DeMets 1983). A claim's two one-sided tests (PASS, FAIL;
for an equivalence its TOST and its "outside" test) each spend their alpha over the planned
looks by Pocock's spending function alpha(t) = alpha ln(1 + (e - 1) t), t = n_k / max the
information fraction at look k (information grows with the seeds per arm). The boundary
c_k on the canonical scale, a standard normal Z_k with corr(Z_j, Z_k) = sqrt(t_j / t_k),
solves

    P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = alpha(t_k) - alpha(t_{k-1}),

computed by numerical integration of the process look by look (Armitage, McPherson & Rowe
1969; Jennison & Turnbull 2000, ch. 19), and checked in the tests against scipy's
multivariate normal CDF. At look k the claim is judged by its usual test
(harness/verdicts/twosample.py: Welch, ranks, bootstrap, or the rule for no spread) at the
nominal level 1 - Phi(c_k) instead of alpha: the "significance level approach" to group-
sequential t-tests (Jennison & Turnbull 2000, ch. 3 and 7), which carries the boundaries to
a statistic whose variance is estimated from the seeds.

Why Pocock's spending and not O'Brien & Fleming's: with 3 to 20 seeds the t statistics at
successive looks are less correlated than the normal theory assumes, since each look
estimates its own variance from a few seeds. O'Brien-Fleming-type spending keeps most of its
alpha for the last looks, where that shows: simulated with Welch's test on normal data
(200000 claims a setting, looks from 3 to 10 or 20 seeds, alpha 0.01 to 0.1) it spent 1.01 to
1.05 alpha. Pocock-type spending spent 0.69 to 0.99 alpha in every one of those settings, and
stops earlier when there is an effect (Pocock 1977).

Many claims: the claims of one file form one family, and the rule is Holm's step-down
carried over to group-sequential tests (Ye et al. 2013; Maurer & Bretz 2013): at each look
the undecided rows are tested with the boundaries for alpha / (m - r), m the rows of the
family and r those decided so far, repeated until no more is decided. A claim decided with
no test (no spread over seeds) counts as decided; one that cannot be tested yet (a missing
metric, too few seeds) stays in the family, since a later look may test it.

What it guarantees, as one fixed-sample claim does (harness/verdicts/twosample.py): with no
effect, a PASS and a FAIL each happen with probability at most alpha. Measured through
`decide` (tests/test_sequential.py, 20000 claims, looks at 3, 4, ..., 10 seeds, alpha 0.05):
PASS 0.046 and FAIL 0.047, against 0.13 each way for the fixed-sample test at every look;
with an effect of one standard deviation, PASS 0.57 with 7.9 seeds a side on average.

A row's adjusted p (`adjusted`, the tables' "Holm p" column) is its p divided by the
boundary it was held to at its look, times alpha: at most alpha exactly where the rule
decided it.

Every function here is pure: the runner keeps the verdicts between looks.

    plan = SequentialPlan(alpha=0.05, min_seeds=3, max_seeds=10, round_size=1)
    d = decide(plan, look, a, b, margin=0.0, higher=True)       # one claim, one group
    verdicts = judge_look(plan, look, claims, rows, before)      # every claim of a file
    arms = undecided_arms(plan, look, claims, verdicts)          # what needs more seeds
    verdicts = replay(plan, claims, rows)                        # all looks, from trials.csv

References: Lan & DeMets, Discrete sequential boundaries for clinical trials, Biometrika 70
(1983); Pocock, Group sequential methods in the design and analysis of clinical trials,
Biometrika 64 (1977); Jennison & Turnbull, Group Sequential Methods with Applications to
Clinical Trials (Chapman & Hall, 2000); Armitage, McPherson & Rowe, J. R. Statist. Soc. A 132
(1969); Ye, Li, Liu & Yao, A group sequential Holm procedure with multiple primary endpoints,
Stat. Med. 32 (2013); Maurer & Bretz, Multiple testing in group sequential trials using
graphical approaches, Stat. Biopharm. Res. 5 (2013).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from harness.verdicts import claims as C
from harness.verdicts.effects import effect
from harness.verdicts.twosample import better_than, equivalence, evidence

GRID = 801  # points of the integration grid on (-10, c_k); Simpson's rule


@dataclass(frozen=True)
class SequentialPlan:
    """When the seeds are judged: looks at min_seeds, min_seeds + round_size, ..., max_seeds
    seeds per arm, each one-sided test spending `alpha` over them."""

    alpha: float = 0.05  # per one-sided test, as a claim's alpha; judge_look uses the claims'
    min_seeds: int = 3  # the first look; 2 is the least any verdict takes
    max_seeds: int = 10  # the last look: an undecided claim is then INCONCLUSIVE
    round_size: int = 1  # seeds added to an undecided arm per round

    def __post_init__(self):
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), found {self.alpha}")
        if self.min_seeds < 2:
            raise ValueError(f"min_seeds must be >= 2 (a verdict needs 2 seeds a side), "
                             f"found {self.min_seeds}")
        if self.max_seeds < self.min_seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) is below min_seeds "
                             f"({self.min_seeds})")
        if self.round_size < 1:
            raise ValueError(f"round_size must be >= 1, found {self.round_size}")

    @property
    def looks(self) -> tuple[int, ...]:
        """Seeds per arm at each look: (3, 4, ..., 10), or (3, 5, 7, 9, 10) in rounds of 2."""
        n = list(range(self.min_seeds, self.max_seeds, self.round_size))
        return (*n, self.max_seeds)

    def level(self, look: int, alpha: float | None = None, paired: bool = False) -> float:
        """The nominal one-sided level at look `look` (0-based) for `alpha` (the plan's);
        `paired`: of the one-sample t-test of the differences (`paired_levels`)."""
        if not 0 <= look < len(self.looks):
            raise ValueError(f"look {look} is not one of the plan's 0..{len(self.looks) - 1}")
        alpha = self.alpha if alpha is None else alpha
        if paired:
            return paired_levels(self.looks, alpha)[look]
        fractions = tuple(n / self.max_seeds for n in self.looks)
        return nominal_levels(fractions, alpha)[look]

    def last(self, look: int) -> bool:
        return look >= len(self.looks) - 1


def pocock_spending(t, alpha: float):
    """Lan & DeMets' Pocock-type spending function: the alpha spent by information t."""
    return alpha * np.log1p((math.e - 1) * np.asarray(t, float))


def _simpson(z: np.ndarray) -> np.ndarray:
    """Simpson weights on an evenly spaced grid of odd length."""
    w = np.ones(len(z))
    w[1:-1:2], w[2:-1:2] = 4, 2
    return w * (z[1] - z[0]) / 3


@functools.lru_cache(maxsize=64)
def boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """The one-sided boundaries c_k on the Z scale for Pocock-type spending at the given
    information fractions (increasing, the last 1): the module's docstring's equation,
    solved look by look with the sub-density of Z_k on the continuation region Z_k < c_k
    carried on a grid. Z_k = r Z_{k-1} + s e, r = sqrt(t_{k-1} / t_k), s = sqrt(1 - r^2)."""
    from scipy import optimize, stats  # deferred: ~0.3 s, only judging needs it

    spent = np.diff(pocock_spending(np.asarray(fractions), alpha), prepend=0.0)
    c = [float(stats.norm.isf(spent[0]))]
    z = np.linspace(-10, c[0], GRID)
    f = stats.norm.pdf(z)  # (GRID,) density of Z_1 below c_1
    for k in range(1, len(fractions)):
        r = math.sqrt(fractions[k - 1] / fractions[k])
        s = math.sqrt(1 - r * r)
        g = _simpson(z) * f  # (GRID,) probability mass per grid point

        def crossing(ck, g=g, z=z, r=r, s=s, k=k):
            return float(g @ stats.norm.sf((ck - r * z) / s)) - spent[k]

        c.append(float(optimize.brentq(crossing, -10, 40, xtol=1e-12)))
        z_next = np.linspace(-10, c[-1], GRID)
        kernel = stats.norm.pdf((z_next[:, None] - r * z[None, :]) / s) / s  # (GRID, GRID)
        z, f = z_next, kernel @ g
    return tuple(c)


@functools.lru_cache(maxsize=64)
def nominal_levels(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """1 - Phi(c_k): the level each look's own one-sided test is held to."""
    from scipy import stats  # deferred: ~0.3 s, only judging needs it

    return tuple(float(stats.norm.sf(c)) for c in boundaries(fractions, alpha))


PATHS = 400_000  # simulated sequences of differences per paired plan


@functools.lru_cache(maxsize=64)
def paired_levels(looks: tuple[int, ...], alpha: float) -> tuple[float, ...]:
    """The nominal levels of a paired claim's one-sample t-test at each look, calibrated
    for the t statistic itself. With n - 1 degrees of freedom (2 at 3 seeds) the t
    statistics of successive looks are far from the normal theory of `boundaries`, and the
    levels of `nominal_levels` spend about 1.1 to 1.25 alpha (tests/test_paired.py). Here
    the boundary c_k is the one that PATHS simulated sequences of normal differences
    (seeded: the same plan, the same levels) cross at look k, not before, with the Pocock-
    type spending's share alpha(t_k) - alpha(t_{k-1}): exact for normal differences up to
    the simulation's error (at 0.0006 of spending, about 8% of it), as Jennison & Turnbull
    (2000, 3.x) compute t boundaries for small samples. Level_k = P(T_{n_k - 1} > c_k)."""
    from scipy import special  # deferred: ~0.3 s, only judging needs it

    rng = np.random.default_rng(20261203)
    spent = np.diff(pocock_spending(np.asarray(looks) / looks[-1], alpha), prepend=0.0)
    total, squares, n = np.zeros(PATHS), np.zeros(PATHS), 0
    alive = np.ones(PATHS, bool)
    levels = []
    for k, upto in enumerate(looks):
        while n < upto:
            d = rng.standard_normal(PATHS)
            total += d
            squares += d * d
            n += 1
        var = (squares - total * total / n) / (n - 1)
        t = total / n / np.sqrt(var / n)
        cross = int(round(spent[k] * PATHS))
        live = np.sort(t[alive])[::-1]
        c = live[cross - 1] if cross >= 1 else live[0] + 1.0  # the cross-th largest
        alive &= t < c
        levels.append(float(special.stdtr(n - 1, -c)))
    return tuple(levels)


class Decision(NamedTuple):
    verdict: str  # PASS, FAIL or INCONCLUSIVE
    p: float | None  # the look's one-sided p, or None where no test ran
    level: float  # the nominal level it was held to at this look
    note: str = ""
    alternative: str | None = None  # H1 of p: better, worse, within or outside
    more: bool = False  # undecided with looks left: its arms need more seeds


def decide(plan: SequentialPlan, look: int, a, b, margin: float = 0.0, higher: bool = True,
           test: str = "welch", equivalent: bool = False, alpha: float | None = None,
           rng_seed: int = 0, paired: bool = False) -> Decision:
    """One claim on one group at look `look` (0-based): A's and B's final values per seed
    (the first plan.looks[look] seeds of each; fewer where trials failed), judged as
    harness.verdicts.twosample does at the look's nominal level for `alpha` (the plan's by
    default; judge_look passes Holm's share). `margin` is by_at_least, or an equivalence's
    within."""
    level = plan.level(look, alpha, paired)
    ev = evidence(a, b, higher, test, rng_seed, paired)
    j = equivalence(ev, margin, level) if equivalent else better_than(ev, margin, level)
    more = j.verdict == "INCONCLUSIVE" and not plan.last(look)
    return Decision(j.verdict, j.p, level, j.note, j.alternative, more)


# ----------------------------------------------------------------------------- a whole file


def _first_seeds(rows: list[dict], n: int) -> list[dict]:
    """The rows of the first n seeds seen in them (by seed number), every status kept: the
    rows a look at n seeds per arm judges."""
    seeds = sorted({int(r["seed"]) for r in rows})[:n]
    return [r for r in rows if int(r["seed"]) in seeds]


def judge_look(plan: SequentialPlan, look: int, claims, rows: list[dict],
               before: list | None = None) -> list:
    """Every claim of a file after look `look`, as claims.Verdict rows (the order of
    claims.evaluate_claims). `rows` are the trials so far (trials.csv's dicts); each arm is
    judged on its first plan.looks[look] seeds. `before` are the previous look's verdicts:
    a row decided there keeps its verdict. Each claim uses its own alpha; the family's Holm
    share is recomputed after each decision (module docstring)."""
    done = {(v.index, v.group): v for v in before or [] if v.verdict in ("PASS", "FAIL")}
    out, order, pending = {}, [], []  # pending: (key, claim, evidence, margin, a, b, pool)
    for i, claim in enumerate(claims):
        scope = [r for r in rows if C.matches(claim.where, r)]
        if claim.agree:  # no seeds to add: judged on what ran
            out[i, "all"] = dataclasses.replace(C._agree(claim, scope), index=i)
            order.append((i, "all"))
            continue
        higher = C.higher_is_better(claim.metric, claim.higher_is_better)
        margin = claim.within if claim.equivalent else claim.by_at_least
        for label, group in C.groups(claim, scope):
            order.append((i, label))
            if (i, label) in done:
                out[i, label] = done[i, label]
                continue
            a, b = C.arm_values(claim, _first_seeds(group, plan.looks[look]))
            pending.append(((i, label), claim, evidence(a, b, higher, claim.test,
                                                        paired=claim.paired), margin,
                            a, b, C.pooled(claim, group)))
    m = sum(1 for key in order if out.get(key) is None or out[key].kind != "agree")
    while True:  # Holm's step-down within the look: decide, widen the others' share, again
        r = sum(1 for v in out.values() if v.kind != "agree" and v.verdict in ("PASS", "FAIL"))
        decided = []
        for item in pending:
            key, claim, ev, margin, a, b, pool = item
            level = plan.level(look, claim.alpha / max(m - r, 1), claim.paired)
            j = (equivalence(ev, margin, level) if claim.equivalent
                 else better_than(ev, margin, level))
            out[key] = _verdict(plan, look, claim, key, j, a, b, margin, level, m - r, pool)
            if j.verdict in ("PASS", "FAIL"):
                decided.append(item)
        if not decided:
            break
        pending = [item for item in pending if not any(item is d for d in decided)]
    return [out[key] for key in order]


def _verdict(plan, look, claim, key, j, a, b, margin, level, share, pool="") -> object:
    higher = C.higher_is_better(claim.metric, claim.higher_is_better)
    where = f"look {look + 1} of {len(plan.looks)} ({plan.looks[look]} seeds a side)"
    if j.p is not None:
        where += f": p against the boundary {level:.3g} (alpha {claim.alpha:g}"
        where += f", Holm share 1/{share})" if share > 1 else ")"
    more = j.verdict == "INCONCLUSIVE" and not plan.last(look)
    note = "; ".join(filter(None, [j.note, where, "more seeds" if more else "", pool]))
    return C.Verdict(C.describe(claim), key[1], j.verdict, a, b, margin, j.p, note,
                     j.alternative, effect=effect(a, b, higher, claim.test,
                                                  paired=claim.paired),
                     kind=C.kind(claim), index=key[0],
                     p_holm=adjusted(j.p, level, claim.alpha))


def adjusted(p: float | None, level: float, alpha: float) -> float | None:
    """A sequential row's adjusted p: its look's p on the scale of the claim's alpha,
    alpha p / level, where `level` is the boundary the rule held it to at that look (the
    spending for the look, at Holm's share alpha / (m - r) of the family). It is at most
    alpha exactly where the rule decided the row, as a fixed-sample file's Holm p is at
    most alpha exactly where Holm's procedure decides it; capped at 1."""
    return None if p is None else min(1.0, alpha * p / level)


def replay(plan: SequentialPlan, claims, rows: list[dict]) -> list:
    """The verdicts the stopping rule reached, from the final trials: every look in turn on
    the first seeds of each arm, until every row is decided or the looks run out."""
    verdicts = None
    for look in range(len(plan.looks)):
        verdicts = judge_look(plan, look, claims, rows, verdicts)
        if not undecided_arms(plan, look, claims, verdicts):
            break
    return verdicts


class Arm(NamedTuple):
    """The trials of one side of an undecided claim: every row that matches `selector`
    (the claim's configuration and its `where`) on `group` ((backend, device), or None for
    any)."""

    selector: dict
    group: tuple[str, str] | None

    def covers(self, row: dict) -> bool:
        """Whether a trial (a trials.csv row, or a dict of its config's dotted keys with
        backend and device) belongs to this arm."""
        on = self.group is None or (row.get("backend"), row.get("device")) == self.group
        return on and C.matches(self.selector, row)


def undecided_arms(plan: SequentialPlan, look: int, claims, verdicts) -> list[Arm]:
    """The arms that need the next round of seeds after look `look`: both sides of every
    better/than or equivalent row still INCONCLUSIVE, once each; none after the last look."""
    if plan.last(look):
        return []
    arms: list[Arm] = []
    for v in verdicts:
        if v.kind == "agree" or v.verdict != "INCONCLUSIVE":
            continue
        claim = claims[v.index]
        group = None if v.group == "all" else tuple(v.group.split("/", 1))
        for side in C.sides(claim):
            arm = Arm({**claim.where, **side}, group)
            if arm not in arms:
                arms.append(arm)
    return arms
