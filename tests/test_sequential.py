"""The stopping rule (harness/verdicts/sequential.py): its boundaries against scipy's
multivariate normal CDF, and its error rate and power by simulation through the real rule.

    python -m pytest -q -s tests/test_sequential.py            # prints the measured rates
    python -m pytest -q -s -m slow tests/test_sequential.py    # 20000 claims a setting

Each simulated claim is "A beats B" (margin 0) on normal final values, one standard deviation
per seed, judged by `decide` after each look of the plan until it is decided. With no effect
a PASS and a FAIL are both errors, each tested at alpha, as one fixed-sample claim is
(harness/verdicts/twosample.py): each must stay under the binomial 95% upper bound for alpha
with that many claims, and naive peeking (the fixed-sample test at every look, the same
data) must not, so that the simulation can fail.
"""

from collections import Counter

import numpy as np
import pytest
from scipy import stats

from harness.config.schema import Claim
from harness.verdicts.claims import judge
from harness.verdicts.sequential import (
    SequentialPlan,
    boundaries,
    decide,
    judge_look,
    pocock_spending,
    replay,
    undecided_arms,
)


def simulate(plan: SequentialPlan, claims: int, effect: float, seed: int,
             naive: bool = False) -> tuple[dict[str, float], float]:
    """(share of each verdict, mean seeds per arm used) over `claims` simulated claims."""
    rng = np.random.default_rng(seed)
    a = rng.normal(effect, 1.0, (claims, plan.max_seeds))  # (claims, max_seeds)
    b = rng.normal(0.0, 1.0, (claims, plan.max_seeds))
    verdicts, used = Counter(), 0
    for i in range(claims):
        for look, n in enumerate(plan.looks):
            if naive:
                verdict = judge(a[i, :n], b[i, :n], 0.0, True, "welch", plan.alpha).verdict
            else:
                verdict = decide(plan, look, a[i, :n], b[i, :n]).verdict
            if verdict != "INCONCLUSIVE":
                break
        verdicts[verdict] += 1
        used += n
    return {v: verdicts[v] / claims for v in ("PASS", "FAIL", "INCONCLUSIVE")}, used / claims


def upper(alpha: float, trials: int) -> float:
    """The binomial 95% upper bound on the share of `trials` at rate alpha."""
    return stats.binom.ppf(0.95, trials, alpha) / trials


# ----------------------------------------------------------------------------- boundaries


def test_the_plan_looks_in_rounds_up_to_max():
    assert SequentialPlan(min_seeds=3, max_seeds=10).looks == (3, 4, 5, 6, 7, 8, 9, 10)
    assert SequentialPlan(min_seeds=3, max_seeds=10, round_size=2).looks == (3, 5, 7, 9, 10)
    assert SequentialPlan(min_seeds=5, max_seeds=5).looks == (5,)
    for bad in ({"min_seeds": 1}, {"max_seeds": 2}, {"round_size": 0}, {"alpha": 0.5}):
        with pytest.raises(ValueError):
            SequentialPlan(**bad)


def test_pocock_spending_spends_alpha_by_the_last_look():
    t = np.linspace(0.1, 1.0, 10)
    spent = pocock_spending(t, 0.05)
    assert spent[-1] == pytest.approx(0.05, rel=1e-12) and np.all(np.diff(spent) > 0)


@pytest.mark.parametrize("looks", [(3, 4, 5, 6, 7, 8, 9, 10), (2, 4, 6), (3, 10)])
def test_boundaries_spend_what_the_spending_function_says(looks):
    """P(Z_1 < c_1, ..., Z_k < c_k) = 1 - alpha(t_k), by scipy's multivariate normal CDF
    (Genz's method) with corr(Z_j, Z_k) = sqrt(t_j / t_k): the trusted reference."""
    t = np.asarray(looks) / looks[-1]
    c = np.asarray(boundaries(tuple(t), 0.05))
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))  # (K, K)
    for k in range(1, len(t) + 1):
        stay = stats.multivariate_normal.cdf(c[:k], np.zeros(k), cov[:k, :k], abseps=1e-6,
                                             releps=1e-6, maxpts=20000 * k,
                                             rng=np.random.default_rng(0))
        assert 1 - stay == pytest.approx(pocock_spending(t[k - 1], 0.05), abs=2e-5), k


def test_a_single_look_is_the_fixed_sample_test():
    plan = SequentialPlan(alpha=0.05, min_seeds=5, max_seeds=5)
    assert plan.level(0) == pytest.approx(0.05, rel=1e-9)
    a, b = [0.95, 0.96, 0.94, 0.95, 0.97], [0.80, 0.82, 0.79, 0.81, 0.80]
    d = decide(plan, 0, a, b)
    assert (d.verdict, d.more) == ("PASS", False)
    assert d.p == pytest.approx(judge(a, b, 0.0, True, "welch", 0.05).p, rel=1e-12)


def test_an_undecided_claim_asks_for_more_seeds_until_the_last_look():
    plan = SequentialPlan(min_seeds=3, max_seeds=5)
    a, b = [0.80, 0.90, 0.85], [0.84, 0.86, 0.85]
    assert decide(plan, 0, a, b).more and not decide(plan, 2, a, b).more
    assert decide(plan, 2, a, b).verdict == "INCONCLUSIVE"
    # no spread: decided at the first look, whatever the level
    assert decide(plan, 0, [0.9] * 3, [0.8] * 3).verdict == "PASS"
    # an equivalence by TOST at the look's level
    d = decide(plan, 0, [0.90, 0.91, 0.90], [0.90, 0.90, 0.91], margin=0.05, equivalent=True)
    assert (d.verdict, d.alternative) == ("PASS", "within") and d.p <= d.level


# ----------------------------------------------------------------------------- simulation


def test_no_effect_is_decided_at_most_alpha_each_way_and_peeking_is_not():
    plan = SequentialPlan(alpha=0.05, min_seeds=3, max_seeds=10, round_size=1)
    claims = 2000
    rule, seeds = simulate(plan, claims, 0.0, seed=1)
    naive, _ = simulate(plan, claims, 0.0, seed=1, naive=True)
    bound = upper(plan.alpha, claims)
    print(f"\nno effect, {claims} claims, looks {plan.looks}: PASS {rule['PASS']:.4f}, "
          f"FAIL {rule['FAIL']:.4f} (bound {bound:.4f} each), mean seeds {seeds:.2f}; "
          f"naive peeking PASS {naive['PASS']:.4f}, FAIL {naive['FAIL']:.4f}")
    assert rule["PASS"] <= bound and rule["FAIL"] <= bound
    assert rule["PASS"] + rule["FAIL"] <= upper(2 * plan.alpha, claims)
    assert naive["PASS"] > bound and naive["FAIL"] > bound  # the simulation can fail


def test_an_effect_of_one_standard_deviation_is_found_with_fewer_seeds():
    plan = SequentialPlan(alpha=0.05, min_seeds=3, max_seeds=10, round_size=1)
    claims = 2000
    rule, seeds = simulate(plan, claims, 1.0, seed=2)
    fixed, _ = simulate(SequentialPlan(alpha=0.05, min_seeds=10, max_seeds=10), claims, 1.0,
                        seed=2)
    print(f"\neffect 1 sd, {claims} claims, looks {plan.looks}: power {rule['PASS']:.3f} "
          f"(FAIL {rule['FAIL']:.4f}), mean seeds {seeds:.2f} per arm; fixed 10 seeds: power "
          f"{fixed['PASS']:.3f}")
    assert rule["PASS"] > 0.5 and rule["FAIL"] < 0.01 and seeds < 9


@pytest.mark.slow
@pytest.mark.parametrize("round_size", [1, 2])
def test_the_error_rate_over_20000_claims(round_size):
    plan = SequentialPlan(alpha=0.05, min_seeds=3, max_seeds=10, round_size=round_size)
    claims = 20000
    rule, seeds = simulate(plan, claims, 0.0, seed=10 + round_size)
    power, used = simulate(plan, claims, 1.0, seed=20 + round_size)
    bound = upper(plan.alpha, claims)
    print(f"\nlooks {plan.looks}, {claims} claims: no effect PASS {rule['PASS']:.4f} FAIL "
          f"{rule['FAIL']:.4f} (bound {bound:.4f}), mean seeds {seeds:.2f}; effect 1 sd "
          f"power {power['PASS']:.3f}, mean seeds {used:.2f}")
    assert rule["PASS"] <= bound and rule["FAIL"] <= bound and power["PASS"] > 0.5


@pytest.mark.slow
def test_an_equivalence_at_its_margin_passes_at_most_alpha():
    """TOST at the looks: a true difference of exactly the margin d (the least favourable
    null) PASSes at most alpha; no difference PASSes often."""
    plan = SequentialPlan(alpha=0.05, min_seeds=3, max_seeds=10, round_size=1)
    claims, d = 5000, 1.0
    rng = np.random.default_rng(5)
    passes = Counter()
    for shift in (d, 0.0):
        a = rng.normal(shift, 0.5, (claims, plan.max_seeds))  # (claims, max_seeds)
        b = rng.normal(0.0, 0.5, (claims, plan.max_seeds))
        for i in range(claims):
            for look, n in enumerate(plan.looks):
                verdict = decide(plan, look, a[i, :n], b[i, :n], d, equivalent=True).verdict
                if verdict != "INCONCLUSIVE":
                    break
            passes[shift] += verdict == "PASS"
    print(f"\nequivalence within {d}: PASS at the margin {passes[d] / claims:.4f}, "
          f"with no difference {passes[0.0] / claims:.3f}")
    assert passes[d] / claims <= upper(plan.alpha, claims) and passes[0.0] / claims > 0.5


# ----------------------------------------------------------------------------- a whole file


def rows(arms: dict[str, list[float]], metric: str = "val/accuracy") -> list[dict]:
    return [{"model.init": name, "backend": "numpy", "device": "cpu", "seed": str(seed),
             "status": "finished", metric: str(v)}
            for name, values in arms.items() for seed, v in enumerate(values)]


HE_GAUSSIAN = Claim(better={"model.init": "he"}, than={"model.init": "gaussian"})
XAVIER_LECUN = Claim(better={"model.init": "xavier"}, than={"model.init": "lecun"})


def test_only_the_arms_of_undecided_claims_get_more_seeds():
    plan = SequentialPlan(min_seeds=3, max_seeds=6)
    data = rows({"he": [0.9, 0.91, 0.92], "gaussian": [0.1, 0.11, 0.1],
                 "xavier": [0.5, 0.6, 0.55], "lecun": [0.52, 0.58, 0.54]})
    verdicts = judge_look(plan, 0, [HE_GAUSSIAN, XAVIER_LECUN], data)
    assert [v.verdict for v in verdicts] == ["PASS", "INCONCLUSIVE"]
    assert "look 1 of 4" in verdicts[0].note and "more seeds" in verdicts[1].note
    arms = undecided_arms(plan, 0, [HE_GAUSSIAN, XAVIER_LECUN], verdicts)
    assert [a.selector for a in arms] == [{"model.init": "xavier"}, {"model.init": "lecun"}]
    assert arms[0].group == ("numpy", "cpu") and arms[0].covers(data[6])
    assert not any(a.covers(data[0]) for a in arms)
    assert undecided_arms(plan, 3, [HE_GAUSSIAN, XAVIER_LECUN], verdicts) == []
    # a decided row keeps its verdict, whatever the seeds another claim's arms go on to get
    data += [dict(r, seed="3", **{"val/accuracy": "0.0"}) for r in data[:1]]
    again = judge_look(plan, 1, [HE_GAUSSIAN, XAVIER_LECUN], data, verdicts)
    assert again[0] is verdicts[0] and again[1].verdict == "INCONCLUSIVE"


def test_holm_shares_alpha_within_a_look_and_hands_it_on():
    """Two claims at one look: the clear one is decided at alpha / 2's boundary, and the
    other is then held to alpha's (Holm's step-down), which it passes but alpha / 2's it
    would not."""
    plan = SequentialPlan(min_seeds=4, max_seeds=4)  # one look: the fixed-sample levels
    b = [0.0, 0.1, -0.1, 0.05]
    for shift in np.linspace(0.05, 0.3, 200):  # p between alpha / 2 and alpha
        a = [x + shift for x in (0.0, 0.12, -0.08, 0.06)]
        if 0.025 < judge(a, b, 0.0, True, "welch", 0.05).p <= 0.05:
            break
    assert 0.025 < judge(a, b, 0.0, True, "welch", 0.05).p <= 0.05
    data = rows({"he": [0.9, 0.91, 0.92, 0.93], "gaussian": [0.1, 0.12, 0.11, 0.1]})
    data += rows({"xavier": a, "lecun": b})
    verdicts = judge_look(plan, 0, [HE_GAUSSIAN, XAVIER_LECUN], data)
    assert [v.verdict for v in verdicts] == ["PASS", "PASS"]
    assert "Holm share 1/2" in verdicts[0].note and "Holm share" not in verdicts[1].note
    twin = Claim(better={"model.init": "xavier"}, than={"model.init": "lecun"},
                 where={"seed": "99"})  # a second family member that cannot be decided
    verdicts = judge_look(plan, 0, [XAVIER_LECUN, twin], data)
    assert verdicts[0].verdict == "INCONCLUSIVE" and "Holm share 1/2" in verdicts[0].note


def test_replay_reaches_the_verdicts_of_the_looks_in_turn():
    plan = SequentialPlan(min_seeds=3, max_seeds=6)
    rng = np.random.default_rng(0)
    data = rows({"he": list(0.9 + 0.01 * rng.normal(size=6)),
                 "gaussian": list(0.1 + 0.01 * rng.normal(size=6)),
                 "xavier": list(0.55 + 0.05 * rng.normal(size=6)),
                 "lecun": list(0.50 + 0.05 * rng.normal(size=6))})
    claims = [HE_GAUSSIAN, XAVIER_LECUN]
    verdicts = None
    for look in range(len(plan.looks)):
        verdicts = judge_look(plan, look, claims, data, verdicts)
        if not undecided_arms(plan, look, claims, verdicts):
            break
    assert [(v.verdict, v.note) for v in replay(plan, claims, data)] == \
        [(v.verdict, v.note) for v in verdicts]
    assert len(verdicts[0].better) == 3  # decided at the first look, on its first 3 seeds


def test_the_adjusted_p_is_at_most_alpha_exactly_where_the_rule_decided():
    """The tables' Holm p for a sequential row: its p over the boundary of its look, times
    alpha. Over random files of two claims at every look, it must sit at or under alpha on
    every PASS and FAIL and above it on every INCONCLUSIVE row; a row decided at Holm's
    share 1/2 has p at or under alpha / 2's boundary, so its adjusted p is not simply p."""
    plan = SequentialPlan(min_seeds=3, max_seeds=6)
    rng = np.random.default_rng(1)
    seen, scaled = Counter(), 0
    for _ in range(60):
        shift = rng.choice([0.0, 0.02, 0.05, 0.2])
        data = rows({"he": list(0.5 + shift + 0.05 * rng.normal(size=6)),
                     "gaussian": list(0.5 + 0.05 * rng.normal(size=6)),
                     "xavier": list(0.5 + 0.05 * rng.normal(size=6)),
                     "lecun": list(0.5 - shift + 0.05 * rng.normal(size=6))})
        verdicts = None
        for look in range(len(plan.looks)):
            verdicts = judge_look(plan, look, [HE_GAUSSIAN, XAVIER_LECUN], data, verdicts)
            for v in verdicts:
                assert v.p_value is not None and v.p_holm is not None
                decided = v.verdict in ("PASS", "FAIL")
                assert (v.p_holm <= 0.05) == decided, (v.verdict, v.p_value, v.p_holm, v.note)
                seen[v.verdict] += 1
                scaled += v.p_holm != pytest.approx(v.p_value, rel=1e-9)
    assert seen["PASS"] and seen["INCONCLUSIVE"] and scaled
