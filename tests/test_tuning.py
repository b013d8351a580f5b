"""`tune:`: every arm tuned on validation with its own seeds, the best value chosen by the
rule written out here, the arm then run on the experiment's seeds with it (issue 15)."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import ConfigErrors, load
from harness.config.tuning import values

ROOT = Path(__file__).resolve().parents[1]

TUNED = """\
name: tuned
task: {name: digits, n_train: 256}
model: {arch: mlp, activation: relu, init: he, depth: 1, width: 16}
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 2, batch_size: 32}
backends: [numpy]
seeds: [0, 1]
sweep:
  optimizer.name: [sgd, adam]
tune:
  log_grid: {optimizer.lr: [0.001, 0.1, 3]}
  metric: val/accuracy
  seeds: [100]
"""


def _run(tmp: Path, f: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", str(f), "--results", str(tmp / "results"),
         "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600)


def _rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_log_grid_values_are_log_spaced():
    exp, _ = load_text(TUNED)
    assert values(exp.tune) == {"optimizer.lr": [0.001, 0.01, 0.1]}


def load_text(text: str, tmp=Path("/tmp")):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    return load(f.name)


def test_each_arm_runs_with_the_value_its_tuning_chose(tmp_path, store):
    f = tmp_path / "tuned.yaml"
    f.write_text(TUNED)
    proc = _run(tmp_path, f)
    assert proc.returncode == 0, proc.stderr
    tuning = _rows(tmp_path / "results" / "tuned" / "tuning.csv")
    final = _rows(tmp_path / "results" / "tuned" / "trials.csv")
    assert len(tuning) == 2 * 3 * 1 and {r["seed"] for r in tuning} == {"100"}
    assert len(final) == 2 * 2 and {r["seed"] for r in final} == {"0", "1"}
    for name in ("sgd", "adam"):
        tried = [r for r in tuning if r["optimizer.name"] == name]
        best = max(tried, key=lambda r: float(r["val/accuracy"]))  # first on ties: max's
        chosen = {r["optimizer.lr"] for r in final if r["optimizer.name"] == name}
        assert chosen == {best["optimizer.lr"]}, (name, tried, chosen)
        assert f"tuned optimizer.name={name} on numpy/cpu: optimizer.lr=" \
               f"{float(best['optimizer.lr']):g}" in proc.stderr
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = c.search_runs([c.get_experiment_by_name("tuned").experiment_id])
    phases = [r.data.tags.get("harness.phase") for r in runs
              if r.data.tags.get("harness.kind") == "trial"]
    assert phases.count("tune") == 6 and phases.count(None) == 4
    again = _run(tmp_path, f)  # resumes: every trial, tuning and final, is done
    assert again.returncode == 0 and "10 already finished, 0 to run" in again.stderr


def test_a_tune_block_that_cannot_be_fair_is_refused(tmp_path):
    f = tmp_path / "bad.yaml"
    bad = (TUNED.replace("seeds: [100]", "seeds: [1]")
           .replace("metric: val/accuracy", "metric: test/accuracy")
           .replace("log_grid: {optimizer.lr: [0.001, 0.1, 3]}",
                    "log_grid: {optimizer.lr: [0.1, 0.001, 1]}\n  grid: {optimizer.name: "
                    "[sgd], optimizer.momentm: [0.9]}"))
    f.write_text(bad)
    with pytest.raises(ConfigErrors) as info:
        load(f)
    messages = "\n".join(str(e) for e in info.value.errors)
    assert "tune.seeds: shares seeds [1]" in messages
    assert "tune.metric" in messages  # a test metric never chooses
    assert "tune.log_grid.optimizer.lr: expected 0 < low < high" in messages
    assert "n an integer >= 2" in messages
    assert "tune.grid.optimizer.name: 'optimizer.name' is a sweep axis too" in messages
    assert "tune.grid.optimizer.momentm" in messages and "did you mean 'momentum'" in messages
    proc = _run(tmp_path, f)
    assert proc.returncode == 2 and not (tmp_path / "mlflow.db").exists()


def test_dry_run_lists_the_tuning_trials_first(tmp_path):
    f = tmp_path / "tuned.yaml"
    f.write_text(TUNED)
    proc = _run(tmp_path, f, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "tuning: 6 trials, then the 4 below" in proc.stdout
    assert "optimizer.lr=0.001" in proc.stdout and not (tmp_path / "mlflow.db").exists()


def test_report_rebuilds_the_choice_and_draws_the_sensitivity(tmp_path, store):
    f = tmp_path / "tuned.yaml"
    f.write_text(TUNED + "expect:\n  - better: {optimizer.name: adam}\n    than: "
                 "{optimizer.name: sgd}\n    metric: val/accuracy\n")
    assert _run(tmp_path, f).returncode == 0
    ran = _rows(tmp_path / "results" / "tuned" / "trials.csv")
    (tmp_path / "results" / "tuned" / "trials.csv").unlink()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(f), "--results",
         str(tmp_path / "results"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "results" / "tuned"
    rebuilt = _rows(out / "trials.csv")
    assert {(r["hash"], r["optimizer.lr"]) for r in rebuilt} == \
        {(r["hash"], r["optimizer.lr"]) for r in ran}  # the same final trials, found again
    assert all(r["status"] == "finished" for r in rebuilt)
    claims = (out / "claims.md").read_text()
    assert "## Tuned values" in claims and "| optimizer.name=adam | numpy/cpu |" in claims
    assert (out / "sensitivity.png").stat().st_size > 1000
