"""Claim verdicts: Welch's t-test and the bootstrap, checked against scipy written out."""

import math

import numpy as np
import pytest
from scipy import stats

from harness.claims import _ms, evaluate_claims, higher_is_better, judge, matches
from harness.schema import Claim


def rows(values: dict[str, list[float]], metric="val/accuracy", backend="numpy"):
    out = []
    for name, vals in values.items():
        for seed, v in enumerate(vals):
            out.append({"optimizer.name": name, "backend": backend, "device": "cpu",
                        "seed": str(seed), "status": "finished", metric: str(v),
                        "hash": f"{name}{seed}{backend}"})
    return out


def test_welch_pass_matches_scipy_one_sided():
    a, b = [0.95, 0.96, 0.94], [0.80, 0.82, 0.79]
    verdict, p, _ = judge(a, b, 0.0, True, "welch", 0.05)
    assert verdict == "PASS"
    want = stats.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue
    assert p == pytest.approx(want, rel=1e-12)


def test_margin_is_subtracted_before_the_test():
    a, b = [0.95, 0.96, 0.94], [0.80, 0.82, 0.79]
    assert judge(a, b, 0.10, True, "welch", 0.05)[0] == "PASS"
    assert judge(a, b, 0.30, True, "welch", 0.05)[0] == "FAIL"  # the gap is ~0.15, not 0.3


def test_planted_false_claim_fails_both_tests():
    sgd, adam = [0.70, 0.72, 0.69], [0.95, 0.96, 0.94]
    for test in ("welch", "bootstrap"):
        verdict, _, _ = judge(sgd, adam, 0.0, True, test, 0.05)
        assert verdict == "FAIL", test


def test_two_overlapping_seeds_are_inconclusive():
    for test in ("welch", "bootstrap"):
        assert judge([0.80, 0.90], [0.84, 0.86], 0.0, True, test, 0.05)[0] == "INCONCLUSIVE"


def test_one_seed_is_inconclusive():
    assert judge([0.9], [0.1], 0.0, True, "welch", 0.05)[0] == "INCONCLUSIVE"


def test_lower_is_better_for_losses():
    assert not higher_is_better("val/loss", None) and higher_is_better("val/accuracy", None)
    assert judge([0.1, 0.12, 0.11], [0.5, 0.52, 0.49], 0.0, False, "welch", 0.05)[0] == "PASS"


def test_diverged_side_is_the_worst():
    assert judge([0.9, 0.91], [-math.inf, -math.inf], 0.0, True, "welch", 0.05)[0] == "PASS"
    assert judge([-math.inf, -math.inf], [0.9, 0.91], 0.0, True, "welch", 0.05)[0] == "FAIL"


def test_claims_are_judged_per_backend_from_rows():
    data = rows({"adam": [0.95, 0.96, 0.94], "sgd": [0.80, 0.82, 0.79]})
    data += rows({"adam": [0.70, 0.71, 0.69], "sgd": [0.90, 0.92, 0.91]}, backend="torch")
    claim = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"})
    verdicts = {v.group: v.verdict for v in evaluate_claims([claim], data)}
    assert verdicts == {"numpy/cpu": "PASS", "torch/cpu": "FAIL"}


def test_agree_claim_over_backends():
    data = rows({"adam": [0.95, 0.96]}) + rows({"adam": [0.95, 0.96]}, backend="torch")
    claim = Claim(agree="backend", within=1e-6, metric="val/accuracy")
    assert evaluate_claims([claim], data)[0].verdict == "PASS"
    data[-1]["val/accuracy"] = "0.97"
    assert evaluate_claims([claim], data)[0].verdict == "FAIL"


def test_selector_matching_reads_strings_as_logged():
    row = {"model.batchnorm": "True", "optimizer.lr": "0.001", "model.init": "he"}
    assert matches({"model.batchnorm": True, "optimizer.lr": 1e-3}, row)
    assert not matches({"model.init": "gaussian"}, row)


def test_bootstrap_is_reproducible():
    a, b = list(np.linspace(0.8, 0.9, 5)), list(np.linspace(0.7, 0.8, 5))
    assert judge(a, b, 0.0, True, "bootstrap", 0.05) == judge(a, b, 0.0, True, "bootstrap",
                                                               0.05)


def test_a_constant_side_is_tested_without_warnings_and_diverged_seeds_are_counted():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # chance level on every seed must not warn
        verdict, p, _ = judge([0.45, 0.5, 0.4], [0.102] * 3, 0.2, True, "welch", 0.05)
    want = stats.ttest_1samp(np.array([0.45, 0.5, 0.4]) - 0.2 - 0.102, 0.0,
                             alternative="greater").pvalue
    assert verdict == "PASS" and p == pytest.approx(want, rel=1e-9)
    assert _ms([0.5, -math.inf, 0.6]) == "0.55 ± 0.071 (n=3, 1 diverged)"
    assert _ms([-math.inf] * 3) == "diverged (n=3)"


def test_a_claim_without_usable_trials_is_inconclusive_and_listed():
    claim = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"},
                  metric="val/accuracy")
    rows = [{"status": "missing", "backend": "torch", "device": "cpu",
             "optimizer.name": name} for name in ("adam", "sgd")]
    (verdict,) = evaluate_claims([claim], rows)
    assert verdict.verdict == "INCONCLUSIVE" and "no finished" in verdict.note
    assert "| none | none |" in verdict.row()


def test_agree_fails_when_one_backend_diverges_and_cannot_pass_a_failed_one():
    claim = Claim(agree="backend", within=1e-6, metric="val/accuracy")
    data = rows({"adam": [0.9, 0.9]}) + rows({"adam": [0.9, 0.9]}, backend="torch")
    data[-1]["status"] = "diverged"  # torch blew up on seed 1, numpy did not
    (verdict,) = evaluate_claims([claim], data)
    assert verdict.verdict == "FAIL" and "diverged on some values of backend" in verdict.note
    data[-1]["status"] = "failed"
    (verdict,) = evaluate_claims([claim], data)
    assert verdict.verdict == "INCONCLUSIVE" and "failed or missing" in verdict.note


def test_a_backend_whose_trials_all_failed_keeps_its_line():
    data = rows({"adam": [0.95, 0.96, 0.94], "sgd": [0.80, 0.82, 0.79]})
    data += rows({"adam": [0.9, 0.9, 0.9], "sgd": [0.8, 0.8, 0.8]}, backend="jax")
    for r in data[6:]:
        r["status"] = "failed"
    claim = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"})
    verdicts = {v.group: (v.verdict, v.note) for v in evaluate_claims([claim], data)}
    assert verdicts["numpy/cpu"][0] == "PASS"
    assert verdicts["jax/cpu"] == ("INCONCLUSIVE", "no finished or diverged trial")
