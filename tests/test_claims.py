"""Claim verdicts: Welch's t-test, the bootstrap and the rank test, checked against scipy
written out; `agree:` claims on the rows of a real sweep's trials.csv; equivalence by TOST,
Holm's correction over a file's rows and the effect sizes of every row, against scipy and
statsmodels' definitions written out; `equivalent:` checked strictly."""

import math

import numpy as np
import pytest
from conftest import needs
from scipy import stats

from harness.config.schema import Claim
from harness.verdicts.claims import (
    _ms,
    evaluate_claims,
    higher_is_better,
    judge,
    judge_equivalent,
    matches,
    write_markdown,
)
from harness.verdicts.effects import effect
from harness.verdicts.twosample import evidence


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
    verdict, p, *_ = judge(a, b, 0.0, True, "welch", 0.05)
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
        verdict, *_ = judge(sgd, adam, 0.0, True, test, 0.05)
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
        verdict, p, *_ = judge([0.45, 0.5, 0.4], [0.102] * 3, 0.2, True, "welch", 0.05)
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


# --------------------------------------------- every branch keeps the rules (issue 13, 4)


def test_a_diverged_seed_does_not_skip_the_two_seed_minimum():
    assert judge([0.1], [-math.inf], 0.0, True, "welch", 0.05)[0] == "INCONCLUSIVE"
    assert judge([-math.inf], [0.1, 0.2], 0.0, True, "welch", 0.05)[0] == "INCONCLUSIVE"


def test_a_side_diverged_on_every_seed_loses_whatever_the_margin():
    # -inf stays below any finite value minus d: the margin applies, and cannot save it
    for margin in (0.0, 0.5, 100.0):
        verdict, p, note = judge([0.1] * 3, [-math.inf] * 3, margin, True, "welch", 0.05)[:3]
        assert (verdict, p) == ("PASS", None) and "diverged on every seed" in note
    assert judge([-math.inf] * 2, [-math.inf] * 2, 0.0, True, "welch", 0.05)[0] == "INCONCLUSIVE"


def test_one_diverged_seed_leaves_a_clear_claim_decided_by_ranks():
    a, b = [0.9, 0.91, 0.92], [-math.inf, 0.5, 0.6]
    want = stats.mannwhitneyu(a, [-1e300, 0.5, 0.6], alternative="greater",
                              method="exact").pvalue  # 1/20: perfectly separated, 3 a side
    for test in ("welch", "bootstrap"):
        assert judge(a, b, 0.0, True, test, 0.05)[:2] == ("PASS", pytest.approx(want))
        assert judge(b, a, 0.0, True, test, 0.05)[:2] == ("FAIL", pytest.approx(want))
    assert judge(a, b, 0.3, True, "welch", 0.05)[0] == "PASS"  # 0.6 + 0.3 < 0.9
    assert judge(a, b, 0.5, True, "welch", 0.05)[0] == "INCONCLUSIVE"  # the margin bites
    # a loss: +inf is the diverged value, and lower is better
    assert judge([0.1, 0.11, 0.12], [0.5, math.inf, 0.6], 0.0, False, "welch", 0.05)[0] == "PASS"
    # two seeds a side cannot reach 0.05 by ranks (1/6), and say so rather than guess
    assert judge([0.9, 0.91], [-math.inf, 0.6], 0.0, True, "welch", 0.05)[0] == "INCONCLUSIVE"


# ---------------------------------------- ties at the margin are not rounding's (issue 13, 5)


def test_no_spread_and_a_tie_at_the_margin_is_inconclusive():
    for test in ("welch", "bootstrap"):
        assert judge([0.9, 0.9], [0.8, 0.8], 0.1, True, test, 0.05)[0] == "INCONCLUSIVE"
        verdict, p, note = judge([0.3] * 3, [0.1] * 3, 0.2, True, test, 0.05)[:3]
        assert (verdict, p) == ("INCONCLUSIVE", None) and "tie" in note  # np.std: 5.6e-17
    assert judge([0.3] * 3, [0.1] * 3, 0.19, True, "welch", 0.05)[0] == "PASS"
    assert judge([0.3] * 3, [0.1] * 3, 0.21, True, "welch", 0.05)[0] == "FAIL"


def test_an_exact_side_is_tested_with_the_one_sample_t_test():
    a = np.array([0.1, 0.12, 0.11])
    want = stats.ttest_1samp(a, 0.3, alternative="less").pvalue  # np.std([0.3] * 3) > 0
    assert judge(list(a), [0.3] * 3, 0.0, True, "welch", 0.05)[:2] == ("FAIL",
                                                                        pytest.approx(want))
    want = stats.ttest_1samp(a, 0.3 - 0.1, alternative="less").pvalue
    assert judge([0.3] * 3, list(a), 0.1, True, "welch", 0.05)[:2] == ("PASS",
                                                                        pytest.approx(want))


def test_the_p_value_names_its_alternative():
    sgd, adam = [0.70, 0.72, 0.69], [0.95, 0.96, 0.94]
    j = judge(sgd, adam, 0.0, True, "welch", 0.05)
    want = stats.ttest_ind(sgd, adam, equal_var=False, alternative="less").pvalue
    assert (j.verdict, j.alternative) == ("FAIL", "worse") and j.p == pytest.approx(want)
    j = judge(sgd, adam, 0.0, True, "bootstrap", 0.05)
    assert (j.verdict, j.alternative) == ("FAIL", "worse") and j.p < 0.05  # not 1 - p
    j = judge([0.80, 0.90], [0.84, 0.86], 0.0, True, "welch", 0.05)
    assert (j.verdict, j.alternative) == ("INCONCLUSIVE", "better")


def test_the_claims_table_says_which_p_it_shows(tmp_path):
    data = rows({"adam": [0.95, 0.96, 0.94], "sgd": [0.80, 0.82, 0.79]})
    data += rows({"adam": [0.70, 0.71, 0.69], "sgd": [0.90, 0.92, 0.91]}, backend="torch")
    claim = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"})
    text = write_markdown(evaluate_claims([claim], data), tmp_path / "claims.md")
    header, _, numpy_row, torch_row = text.splitlines()[:4]
    assert "| p (H1) |" in header and "worse" in text.split("\n\n")[1]  # the legend
    cells = dict(zip(header.split("|"), numpy_row.split("|")))
    assert cells[" p (H1) "].endswith("(better) ") and cells[" verdict "] == " **PASS** "
    cells = dict(zip(header.split("|"), torch_row.split("|")))
    assert cells[" p (H1) "].endswith("(worse) ") and cells[" verdict "] == " **FAIL** "


# ------------------------------- agree: on a real sweep's trials.csv (issue 13, item 3)

SWEEP = """\
name: agree
task: {name: mario, n_train: 256, n_val: 128, n_test: 128}
model: {arch: mlp, depth: 1, width: 16, activation: relu, init: he}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 3, batch_size: 64}
backends: [numpy, torch]
seeds: [0, 1, 2, 3]
"""
STEPS_PER_EPOCH = 256 // 64


@pytest.fixture(scope="session")
def sweep(tmp_path_factory, _empty_store) -> list[dict]:
    """trials.csv of a real `harness run`: numpy and torch agree on seeds 0 and 1; torch's
    loss becomes NaN in epoch 1 of 3 on seed 2 (diverged) and it raises in epoch 2 on seed
    3 (failed), so that each status has the columns the runner writes for it."""
    import csv
    import shutil

    import backends.torch.trainer as torch_trainer
    from harness.cli import main

    tmp = tmp_path_factory.mktemp("agree")
    shutil.copy(_empty_store, tmp / "mlflow.db")
    (tmp / "agree.yaml").write_text(SWEEP)
    real, steps = torch_trainer.TorchTrainer.train_step, {}

    def planted(self, x, y, masks=None):
        steps[id(self)] = step = steps.get(id(self), 0) + 1
        if self.seed == 2 and step == 2:
            return float("nan")
        if self.seed == 3 and step > STEPS_PER_EPOCH:
            raise RuntimeError("planted fault")
        return real(self, x, y, masks)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch_trainer.TorchTrainer, "train_step", planted)
        main(["run", str(tmp / "agree.yaml"), "--results", str(tmp / "results"),
              "--tracking-uri", f"sqlite:///{tmp}/mlflow.db", "--quiet"])
    with open(tmp / "results" / "agree" / "trials.csv") as f:
        return list(csv.DictReader(f))


def seeds(sweep: list[dict], *wanted: int) -> list[dict]:
    return [dict(r) for r in sweep if int(r["seed"]) in wanted]


AGREE = Claim(agree="backend", within=1e-4, metric="val/mae")


@needs("torch")
def test_the_sweep_wrote_what_the_runner_writes(sweep):
    status = {(r["backend"], r["seed"]): r for r in sweep}
    assert [status["torch", s]["status"] for s in "0123"] == [
        "finished", "finished", "diverged", "failed"]
    diverged, failed = status["torch", "2"], status["torch", "3"]
    assert diverged["epoch"] == "1.0" and diverged["val/mae"] == ""  # no final metric
    assert failed["epoch"] == "1.0" and failed["val/mae"] != ""  # epoch 1's, then it raised
    assert status["numpy", "2"]["epoch"] == "3.0"


@needs("torch")
def test_agree_passes_when_the_backends_agree(sweep):
    (v,) = evaluate_claims([AGREE], seeds(sweep, 0, 1))
    assert v.verdict == "PASS" and "over 2 configurations" in v.note


@needs("torch")
def test_agree_fails_when_a_backend_diverged(sweep):
    (v,) = evaluate_claims([AGREE], seeds(sweep, 0, 1, 2))  # torch diverged at epoch 1
    assert v.verdict == "FAIL" and "in 1 of 3 configurations" in v.note
    rows = seeds(sweep, 0, 1, 2)
    template = next(r for r in rows if r["status"] == "diverged")
    for r in rows:  # torch diverged on every seed, as the runner writes it
        if r["backend"] == "torch":
            r.update({k: v for k, v in template.items() if k not in ("seed", "hash", "run_id",
                                                                     "index")})
    (v,) = evaluate_claims([AGREE], rows)
    assert v.verdict == "FAIL" and "in 3 of 3 configurations" in v.note


@needs("torch")
def test_agree_is_inconclusive_with_a_failed_missing_or_absent_sibling(sweep):
    (v,) = evaluate_claims([AGREE], seeds(sweep, 0, 1, 3))  # torch raised in epoch 2
    assert v.verdict == "INCONCLUSIVE" and "1 with a failed or missing trial" in v.note
    rows = seeds(sweep, 0, 1)
    (torch1,) = [r for r in rows if r["backend"] == "torch" and r["seed"] == "1"]
    for k in [k for k in torch1 if "/" in k or k == "epoch"]:  # as `report` writes a trial
        del torch1[k]                                           # the store lacks
    torch1.update(status="missing", error="no run in the store", run_id="")
    (v,) = evaluate_claims([AGREE], rows)
    assert v.verdict == "INCONCLUSIVE" and "failed or missing" in v.note
    rows.remove(torch1)  # or the row is not there at all
    (v,) = evaluate_claims([AGREE], rows)
    assert v.verdict == "INCONCLUSIVE" and "failed or missing" in v.note


# ------------------------------------------- equivalence, Holm, effect sizes (issue 15)


def test_equivalence_is_two_one_sided_welch_tests():
    a, b = [0.910, 0.905, 0.912, 0.908], [0.906, 0.909, 0.904, 0.907]
    j = judge_equivalent(a, b, 0.01, True, "welch", 0.05)
    lower = stats.ttest_ind(np.add(a, 0.01), b, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(np.subtract(a, 0.01), b, equal_var=False, alternative="less").pvalue
    assert (j.verdict, j.alternative) == ("PASS", "within")
    assert j.p == pytest.approx(max(lower, upper), rel=1e-9)  # Schuirmann's TOST
    # shown to lie outside +-d: one "outside" test at alpha / 2 (Bonferroni over the two)
    far = [0.95, 0.951, 0.949, 0.952]
    j = judge_equivalent(far, b, 0.01, True, "welch", 0.05)
    above = stats.ttest_ind(np.subtract(far, 0.01), b, equal_var=False,
                            alternative="greater").pvalue
    assert (j.verdict, j.alternative) == ("FAIL", "outside")
    assert j.p == pytest.approx(2 * above, rel=1e-9)
    # noisy seeds can show neither
    assert judge_equivalent([0.8, 0.95, 0.9], [0.85, 0.9, 0.8], 0.01, True, "welch",
                            0.05).verdict == "INCONCLUSIVE"


def test_equivalence_keeps_the_rules_for_seeds_spread_and_divergence():
    eq = lambda a, b, d=0.01, test="welch": judge_equivalent(a, b, d, True, test, 0.05)[:3]  # noqa: E731
    assert eq([0.9], [0.9])[0] == "INCONCLUSIVE"  # two seeds a side, always
    assert eq([0.5] * 3, [0.505] * 3) == ("PASS", None, "no spread over seeds")
    assert eq([0.5] * 3, [0.52] * 3) == ("FAIL", None, "no spread over seeds")
    assert eq([0.5] * 3, [0.51] * 3)[0] == "INCONCLUSIVE" and "tie" in eq([0.5] * 3,
                                                                          [0.51] * 3)[2]
    assert eq([-math.inf] * 2, [0.5, 0.51])[0] == "FAIL"  # diverged on every seed, not equal
    assert eq([-math.inf] * 2, [-math.inf] * 2)[0] == "INCONCLUSIVE"
    verdict, _, note = eq([0.5, 0.51, -math.inf], [0.5, 0.51, 0.505], 0.05)
    assert verdict == "INCONCLUSIVE" and "rank test" in note  # ranks; 3 seeds can't show it
    for test in ("welch", "bootstrap"):
        assert eq([0.910, 0.905, 0.912, 0.908], [0.906, 0.909, 0.904, 0.907], 0.01,
                  test)[0] == "PASS"


def test_the_fast_t_tests_are_scipys():
    rng = np.random.default_rng(3)
    for n, m in ((2, 2), (3, 7), (10, 4)):
        a, b = rng.normal(0.5, 0.1, n), rng.normal(0.45, 0.2, m)
        ev = evidence(a, b, True)
        for alternative in ("greater", "less"):
            want = stats.ttest_ind(a - 0.02, b, equal_var=False, alternative=alternative)
            assert ev.p(0.02, alternative) == pytest.approx(want.pvalue, rel=1e-12)
            want = stats.ttest_1samp(b, 0.7 - 0.02, alternative=alternative)  # b against A
            got = evidence([0.7] * 3, b, True).p(0.02, "less" if alternative == "greater"
                                                 else "greater")
            assert got == pytest.approx(want.pvalue, rel=1e-12)


def test_holm_adjusts_the_files_rows_together():
    claims = [Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": n})
              for n in ("sgd", "momentum", "rmsprop")]
    data = rows({"adam": [0.95, 0.96, 0.94], "sgd": [0.80, 0.82, 0.79],
                 "momentum": [0.93, 0.925, 0.935], "rmsprop": [0.90, 0.96, 0.93]})
    verdicts = evaluate_claims(claims, data)
    raw = [v.p_value for v in verdicts]
    order = np.argsort(raw)
    want = np.maximum.accumulate([min(1, (3 - j) * raw[i]) for j, i in enumerate(order)])
    assert [verdicts[i].p_holm for i in order] == pytest.approx(list(want), rel=1e-12)
    alone = [evaluate_claims([c], data)[0] for c in claims]
    assert [v.p_value for v in alone] == raw and [v.p_holm for v in alone] == raw
    # a row that passes alone and not in the family says why, and keeps its raw p
    (i,) = [i for i, v in enumerate(verdicts) if alone[i].verdict != v.verdict]
    assert (alone[i].verdict, verdicts[i].verdict) == ("PASS", "INCONCLUSIVE")
    assert "Holm over 3 rows" in verdicts[i].note and verdicts[i].p_value <= 0.05


def test_rows_without_a_test_stay_out_of_the_family():
    claim = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"})
    exact = Claim(better={"optimizer.name": "rprop"}, than={"optimizer.name": "lbfgs"})
    data = rows({"adam": [0.95, 0.96, 0.94], "sgd": [0.80, 0.82, 0.79], "lbfgs": [0.1] * 3,
                 "rprop": [0.3] * 3})
    together = evaluate_claims([claim, exact], data)
    assert together[1].verdict == "PASS" and together[1].p_holm is None  # no spread
    assert together[0].p_holm == together[0].p_value  # a family of one


def test_every_row_shows_the_difference_and_the_probability_of_improvement():
    a, b = [0.95, 0.96, 0.94, 0.97], [0.80, 0.95, 0.79]
    e = effect(a, b, True)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert e.diff == pytest.approx(np.mean(a) - np.mean(b), rel=1e-12)
    assert (e.low, e.high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high,
                                                                               rel=1e-9))
    u = stats.mannwhitneyu(a, b).statistic  # U = pairs won + ties / 2
    assert e.poi == pytest.approx(u / (len(a) * len(b)), rel=1e-12) and e.poi_low <= e.poi
    assert effect(a, b, True) == e  # seeded: the same seeds, the same intervals
    # a loss: lower is better, so P(A better) mirrors
    assert effect(a, b, False).poi == pytest.approx(1 - e.poi)
    # a diverged seed has no mean, but ranks worst
    d = effect([0.9, 0.91, math.inf], [0.5, 0.6, 0.55], False)
    assert d.diff is None and d.poi == pytest.approx(0) and d.poi_high is not None
    boot = effect(a, b, True, "bootstrap")
    assert boot.low != e.low and boot.low < boot.diff < boot.high
    assert effect([0.9], [0.8], True)[:3] == (pytest.approx(0.1), None, None)


def test_the_table_shows_effects_and_equivalences(tmp_path, capsys):
    data = rows({"adam": [0.910, 0.905, 0.912, 0.908], "sgd": [0.906, 0.909, 0.904, 0.907]})
    claim = Claim(equivalent=({"optimizer.name": "adam"}, {"optimizer.name": "sgd"}),
                  within=0.01)
    text = write_markdown(evaluate_claims([claim], data), tmp_path / "claims.md")
    header, _, line = text.splitlines()[:3]
    cells = {h.strip(): c.strip() for h, c in zip(header.split("|"), line.split("|"))}
    assert cells["claim"].startswith("optimizer.name=adam matches optimizer.name=sgd")
    assert cells["margin"] == "±0.01" and cells["verdict"] == "**PASS**"
    assert cells["p (H1)"].endswith("(within)") and cells["Holm p"]
    assert cells["A − B (95% CI)"].count("[") == 1 and cells["P(A better) (95% CI)"]


GOOD_EQ = """\
name: eq
task: {name: digits, n_train: 100}
model: {arch: mlp, depth: 1, width: 8}
seeds: [0, 1]
sweep:
  model.init: [he, xavier]
expect:
"""


@pytest.mark.parametrize("claim,path,word", [
    ("  - {equivalent: [{model.init: he}, {model.init: xavier}]}\n", "expect[0].within",
     "required"),
    ("  - {equivalent: [{model.init: he}], within: 0.01}\n", "expect[0].equivalent",
     "two configurations"),
    ("  - {equivalent: [{model.init: he}, {model.int: x}], within: 0.01}\n",
     "expect[0].equivalent[1].model.int", "init"),
    ("  - {equivalent: [{model.init: he}, he], within: 0.01}\n", "expect[0].equivalent[1]",
     "a mapping"),
    ("  - {equivalent: [{model.init: he}, {}], within: 0.01}\n", "expect[0].equivalent[1]",
     "found nothing"),
    ("  - {equivalent: [{model.init: he}, {model.init: he}], within: 0.01}\n",
     "expect[0].equivalent", "twice"),
    ("  - {equivalent: {model.init: he}, within: 0.01}\n", "expect[0].equivalent", "a list"),
    ("  - {equivalent: [{model.init: he}, {model.init: xavier}], within: -1}\n",
     "expect[0].within", "> 0"),
    ("  - {equivalent: [{model.init: he}, {model.init: xavier}], within: 0.01, "
     "by_at_least: 0.1}\n", "expect[0]", "one form"),
    ("  - {better: {model.init: he}, than: {model.init: xavier}, within: 0.01}\n",
     "expect[0].within", "by_at_least"),
    ("  - {agree: backend, better: {model.init: he}}\n", "expect[0]", "one form"),
    ("  - {equivalent: [{model.init: he}, {model.init: xavier}], withn: 0.01}\n",
     "expect[0].withn", "within"),
])
def test_equivalent_claims_are_checked_strictly(tmp_path, claim, path, word):
    from harness.config import load
    from harness.config.validate import ConfigErrors

    f = tmp_path / "eq.yaml"
    f.write_text(GOOD_EQ + claim)
    with pytest.raises(ConfigErrors) as info:
        load(f)
    messages = [str(e) for e in info.value.errors]
    assert any(f": {path}:" in m and word in m for m in messages), messages


def test_an_equivalent_claim_loads(tmp_path):
    from harness.config import load

    f = tmp_path / "eq.yaml"
    f.write_text(GOOD_EQ + "  - equivalent: [{model.init: he}, {model.init: xavier}]\n"
                           "    metric: val/accuracy\n    within: 0.02\n")
    exp, _ = load(f)
    (claim,) = exp.expect
    assert claim.equivalent == ({"model.init": "he"}, {"model.init": "xavier"})
    assert claim.within == 0.02


def test_a_claim_says_which_axes_it_pools_over():
    # issue 17: n=4 per side from 2 seeds x BatchNorm on/off, and the table did not say so
    rows = []
    for name in ("sgd", "adam"):
        for bn in ("True", "False"):
            for seed in (0, 1):
                rows.append({"optimizer.name": name, "model.batchnorm": bn, "backend": "numpy",
                             "device": "cpu", "seed": str(seed), "status": "finished",
                             "val/accuracy": str(0.5 + 0.1 * (name == "adam") + 0.01 * seed),
                             "hash": f"{name}{bn}{seed}"})
    claim = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"})
    (v,) = evaluate_claims([claim], rows)
    assert "pools over model.batchnorm (2 values)" in v.note and len(v.better) == 4
    fixed = Claim(better={"optimizer.name": "adam"}, than={"optimizer.name": "sgd"},
                  where={"model.batchnorm": True})
    (v,) = evaluate_claims([fixed], rows)
    assert "pools over" not in v.note and len(v.better) == 2
