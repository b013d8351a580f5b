"""benchmarks/power.py, the design tool the redesigned headers cite: its simulated files go
through the real stopping rule, so a clear effect is decided early and the right way, and a
claim with no effect is decided rarely."""

from scipy import stats

from benchmarks.power import simulate
from harness.verdicts.sequential import SequentialPlan


def test_a_clear_effect_is_decided_early_and_the_right_way():
    plan = SequentialPlan(min_seeds=3, max_seeds=9, round_size=2)
    shares, seeds = simulate(plan, [3.0], [1.0], files=40, by_at_least=0.0)
    assert shares["PASS"] >= 0.95 and seeds < 5
    shares, _ = simulate(plan, [-3.0], [1.0], files=40, by_at_least=0.0)
    assert shares["FAIL"] >= 0.95
    shares, _ = simulate(plan, [3.0], [1.0], files=40, by_at_least=0.0, higher=False)
    assert shares["FAIL"] >= 0.95  # lower is better: A's higher values lose


def test_equivalence_passes_well_inside_the_margin_and_fails_far_outside():
    plan = SequentialPlan(min_seeds=3, max_seeds=9, round_size=2)
    shares, _ = simulate(plan, [0.0, 0.0], [0.1, 0.1], files=40, within=1.0)
    assert shares["PASS"] >= 0.95
    shares, _ = simulate(plan, [3.0], [0.1], files=40, within=1.0)
    assert shares["FAIL"] >= 0.95


def test_no_effect_is_rarely_decided():
    plan = SequentialPlan(min_seeds=3, max_seeds=7, round_size=2)
    shares, seeds = simulate(plan, [0.0], [1.0], files=1000, by_at_least=0.0)
    bound = stats.binom.ppf(0.95, 1000, 0.05) / 1000  # each of PASS and FAIL: alpha 0.05
    assert shares["PASS"] <= bound and shares["FAIL"] <= bound and seeds > 6
