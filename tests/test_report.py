"""`harness report` rebuilds results/<name>/ from MLflow alone, and keeps bad trials."""

import csv
import shutil
from pathlib import Path

import pytest

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]

SWEEP = """\
# mario regression: lr 50 diverges, the other two train
name: rep
task: {name: mario, n_train: 512, n_val: 256, n_test: 256}
model: {arch: mlp, depth: 1, width: 16, activation: relu, init: he}
optimizer: {name: sgd, lr: 0.01}
train: {epochs: 2, batch_size: 64}
backends: [numpy]
seeds: [0, 1]
sweep:
  optimizer.lr: [0.01, 0.05, 50.0]
expect:
  - better: {optimizer.lr: 0.05}
    than: {optimizer.lr: 50.0}
    metric: val/mae
"""


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def args(tmp: Path, *extra: str) -> list[str]:
    return ["--results", str(tmp / "results"), "--tracking-uri", f"sqlite:///{tmp}/mlflow.db",
            "--quiet", *extra]


def test_report_rebuilds_from_mlflow_alone_and_shows_bad_trials(tmp_path, store, monkeypatch,
                                                                  capsys):
    import backends.numpy.trainer as trainer

    f = tmp_path / "rep.yaml"
    f.write_text(SWEEP)
    real = trainer.NumpyTrainer.train_step

    first = []

    def flaky(self, x, y, masks=None):  # the first trial with lr 0.01 raises
        if self.optimizer.lr == 0.01 and (not first or first[0] is self):
            first[:] = [self]
            raise RuntimeError("planted fault")
        return real(self, x, y, masks)

    monkeypatch.setattr(trainer.NumpyTrainer, "train_step", flaky)
    assert main(["run", str(f), *args(tmp_path)]) == 1
    written = read(tmp_path / "results" / "rep" / "trials.csv")
    shutil.rmtree(tmp_path / "results")
    assert main(["report", str(f), *args(tmp_path)]) == 0
    out = tmp_path / "results" / "rep"
    rebuilt = read(out / "trials.csv")
    assert [r["hash"] for r in rebuilt] == [r["hash"] for r in written]
    assert [r["status"] for r in rebuilt] == [r["status"] for r in written]
    statuses = sorted(r["status"] for r in rebuilt)
    assert statuses == ["diverged", "diverged", "failed", "finished", "finished", "finished"]
    for r, w in zip(rebuilt, written):
        if r["status"] == "finished":
            assert float(r["val/mae"]) == pytest.approx(float(w["val/mae"]), rel=1e-12)
    summary = {(r["point"]): r for r in read(out / "summary.csv")}
    assert summary["optimizer.lr=50.0"]["n_diverged"] == "2"
    assert summary["optimizer.lr=0.01"]["n_failed"] == "1"
    assert summary["optimizer.lr=0.01"]["n_finished"] == "1"
    for png in ("curves.png", "val_curves.png", "final.png", "throughput.png"):
        assert (out / png).stat().st_size > 5000, png
    claims = (out / "claims.md").read_text()
    assert "PASS" in claims and "diverged" in claims  # lr 50 diverged on every seed
    assert "PASS" in capsys.readouterr().out


def test_report_lists_trials_missing_from_the_store(tmp_path, store):
    f = tmp_path / "rep.yaml"
    f.write_text(SWEEP.replace("[0.01, 0.05, 50.0]", "[0.01]").split("expect:")[0])
    assert main(["run", str(f), *args(tmp_path, "--set", "seeds=[0]")]) == 0
    assert main(["report", str(f), *args(tmp_path, "--set", "seeds=[0, 1]")]) == 0
    rows = read(tmp_path / "results" / "rep" / "trials.csv")
    assert [r["status"] for r in rows] == ["finished", "missing"]


def test_report_with_nothing_in_the_store_writes_nothing(tmp_path, store, capsys):
    # issue 17: it used to overwrite trials.csv with every trial "missing" and exit 0
    f = tmp_path / "rep.yaml"
    f.write_text(SWEEP)
    assert main(["report", str(f), *args(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no run in" in err and "matches any of the 6 trials" in err and "seed=0" in err
    assert not (tmp_path / "results" / "rep").exists()


def test_report_judges_what_the_latest_run_ran(tmp_path, store, capsys):
    # issue 17: the README's smoke test, then `report FILE` with no --set, judged the file's
    # own grid (every claim "no finished trial"); it must judge the smoke test's grid
    f = tmp_path / "rep.yaml"
    f.write_text(SWEEP)
    smoke = ["--set", "train.epochs=1", "--set", "seeds=[0,1]",
             "--set", "sweep={optimizer.lr: [0.01, 0.05]}"]
    assert main(["run", str(f), *args(tmp_path, *smoke)]) == 0
    capsys.readouterr()
    assert main(["report", str(f), *args(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"judging what the latest run of {f} ran (--set train.epochs=1 --set " \
           "'seeds=[0,1]'" in err
    rows = read(tmp_path / "results" / "rep" / "trials.csv")
    assert len(rows) == 4 and all(r["status"] == "finished" for r in rows)
    assert {r["train.epochs"] for r in rows} == {"1"}
    # a re-run that runs nothing leaves no empty parent, and the report still finds the grid
    assert main(["run", str(f), *args(tmp_path, *smoke)]) == 0
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    runs = c.search_runs([c.get_experiment_by_name("rep").experiment_id])
    assert sum(r.data.tags.get("harness.kind") == "parent" for r in runs) == 1
    names = [r.info.run_name for r in runs if r.data.tags.get("harness.kind") == "trial"]
    assert all("numpy seed=" in n and len(n) <= 60 for n in names), names


EXPERIMENTS = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
SHRINK = {  # --set overrides that make each experiment a smoke test of a few seconds
    "mnist1d": ["task.n_train=256", "task.n_val=128"],
    "digits": ["task.n_train=128"],
    "mario": ["task.n_train=256", "task.n_val=128", "task.n_test=128"],
    "shapes3d": ["task.n_train=32", "task.n_val=16", "task.n_test=16"],
    "sdf": ["task.n_train=8", "task.n_val=4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_runs_and_reports_shrunken(tmp_path, store, name):
    from harness import config

    path = ROOT / "experiments" / name
    exp, _ = config.load(path)
    sets = ["train.epochs=1", "seeds=[0, 1]", *SHRINK.get(exp.task.name, [])]
    if exp.backends != ("numpy", "torch", "jax"):
        sets.append("backends=[torch]")
    overrides = [a for s in sets for a in ("--set", s)]
    code = main(["run", str(path), *overrides, *args(tmp_path)])
    assert code in (0, 1)  # a shrunken run may diverge; it must not be refused or crash
    assert main(["report", str(path), *overrides, *args(tmp_path)]) == 0
    out = tmp_path / "results" / exp.name
    rows = read(out / "trials.csv")
    assert rows and all(r["status"] in ("finished", "diverged") for r in rows)
    assert (out / "claims.md").read_text().count("| **") >= len(exp.expect)


def test_loss_axis_limits_ignore_a_diverged_line_and_a_band_through_zero():
    import numpy as np

    from harness.draw.curves import _loss_limits, short

    finished = (np.array([2.3, 0.5, 0.1]), True)
    diverged = (np.array([2.4, 1e6, np.nan]), False)
    bottom, top = _loss_limits([finished, diverged])
    assert top == 3 * 2.3  # not 1e6: the diverged line does not set the top
    assert bottom == 0.5 * 0.1  # the lowest mean, whatever its band reaches
    assert _loss_limits([]) == (None, None)
    assert short("model.init=he optimizer.lr=0.1 task.n_train=100") == "init=he lr=0.1 n_train=100"
