"""`harness run` end to end against a real MLflow SQLite store in a temporary folder."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs

ROOT = Path(__file__).resolve().parents[1]

SMALL = """\
# a small sweep for the tests
name: small
task: {name: digits, n_train: 256}
model: {arch: mlp, activation: relu, init: he, depth: 1, width: 16}
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 2, batch_size: 32}
backends: [numpy]
seeds: [0, 1]
sweep:
  optimizer:
    - {name: sgd, lr: 0.1}
    - {name: adam, lr: 0.01}
"""


def run(tmp: Path, path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--results", str(tmp / "results"),
         "--tracking-uri", uri(tmp), "--quiet", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600)


def uri(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'mlflow.db'}"


def client(tmp: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri(tmp))


def children(tmp: Path, name: str, status: str | None = None):
    c = client(tmp)
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id], max_results=1000)
    runs = [r for r in runs if r.data.tags.get("harness.kind") == "trial"]
    return [r for r in runs if status is None or r.info.status == status]


@pytest.fixture
def small(tmp_path, store):
    f = tmp_path / "small.yaml"
    f.write_text(SMALL)
    return f


def test_run_logs_parent_children_params_metrics_artifacts(tmp_path, small):
    proc = run(tmp_path, small)
    assert proc.returncode == 0, proc.stderr
    c = client(tmp_path)
    exp = c.get_experiment_by_name("small")
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("harness.kind") == "parent"]
    kids = [r for r in runs if r.data.tags.get("harness.kind") == "trial"]
    assert len(parents) == 1 and len(kids) == 4
    assert all(k.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for k in kids)
    assert all(k.info.status == "FINISHED" for k in kids)
    kid = kids[0]
    assert kid.data.params["model.arch"] == "mlp" and kid.data.params["backend"] == "numpy"
    assert {"seed", "device", "optimizer.lr", "train.epochs"} <= set(kid.data.params)
    tags = kid.data.tags
    assert len(tags["harness.trial"]) == 16 and tags["harness.version.numpy"]
    assert tags["harness.host"] and tags["harness.device_name"]
    for key in ("train/loss", "val/loss", "val/accuracy", "perf/samples_per_s", "perf/step_ms"):
        assert key in kid.data.metrics, key
    history = c.get_metric_history(kid.info.run_id, "train/loss")
    assert [m.step for m in history] == list(range(1, 2 * (256 // 32) + 1))
    assert len(c.get_metric_history(kid.info.run_id, "val/accuracy")) == 2
    names = {a.path for a in c.list_artifacts(kid.info.run_id)}
    assert {"config.yaml", "loss_curve.svg", "params.npz"} <= names
    with open(tmp_path / "results" / "small" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and all(r["status"] == "finished" for r in rows)
    assert {r["hash"] for r in rows} == {k.data.tags["harness.trial"] for k in kids}
    assert all(float(r["val/accuracy"]) > 0.3 for r in rows)


def test_rerun_skips_finished_and_fills_exactly_the_gap(tmp_path, small):
    assert run(tmp_path, small).returncode == 0
    first = {r.data.tags["harness.trial"]: r for r in children(tmp_path, "small")}
    proc = run(tmp_path, small)
    assert proc.returncode == 0
    assert len(children(tmp_path, "small")) == 4, "a re-run created runs for finished trials"
    victim = sorted(first)[0]
    client(tmp_path).delete_run(first[victim].info.run_id)
    assert run(tmp_path, small).returncode == 0
    after = children(tmp_path, "small", "FINISHED")
    hashes = [r.data.tags["harness.trial"] for r in after]
    assert sorted(hashes) == sorted(first), "every trial has exactly one FINISHED child"
    rerun = [r for r in after if r.data.tags["harness.trial"] == victim][0]
    assert rerun.info.run_id != first[victim].info.run_id
    again = dict(rerun.data.metrics)
    before = dict(first[victim].data.metrics)
    for key in ("val/loss", "val/accuracy", "train/loss"):  # deterministic on one backend
        assert again[key] == before[key], key


def test_trial_that_raises_is_failed_with_traceback_and_the_sweep_goes_on(tmp_path, small,
                                                                         monkeypatch):
    import backends.numpy.trainer as trainer
    from harness.cli import main

    real = trainer.NumpyTrainer.train_step
    calls = {"n": 0}

    def flaky(self, x, y, masks=None):
        calls["n"] += 1
        if self.optimizer.name == "adam" and calls["n"] > 3:
            raise RuntimeError("planted fault")
        return real(self, x, y, masks)

    monkeypatch.setattr(trainer.NumpyTrainer, "train_step", flaky)
    code = main(["run", str(small), "--results", str(tmp_path / "results"), "--tracking-uri",
                 uri(tmp_path), "--quiet"])
    assert code == 1
    kids = children(tmp_path, "small")
    failed = [k for k in kids if k.info.status == "FAILED"]
    assert len(failed) == 2 and len(kids) == 4
    assert all("planted fault" in k.data.tags["harness.error"] for k in failed)
    tb = client(tmp_path).download_artifacts(failed[0].info.run_id, "traceback.txt",
                                             str(tmp_path))
    assert "RuntimeError: planted fault" in Path(tb).read_text()
    assert all(k.info.status == "FINISHED" for k in kids if k not in failed)
    monkeypatch.setattr(trainer.NumpyTrainer, "train_step", real)
    assert main(["run", str(small), "--results", str(tmp_path / "results"), "--tracking-uri",
                 uri(tmp_path), "--quiet"]) == 0
    finished = children(tmp_path, "small", "FINISHED")
    assert len(finished) == 4 and len({k.data.tags["harness.trial"] for k in finished}) == 4


def test_diverged_trial_stops_early_and_exits_1(tmp_path, small):
    # sgd with lr 1e6 diverges: the trial is marked diverged and stops early, exit code 1
    small.write_text(SMALL.replace("digits, n_train: 256", "mario").replace("lr: 0.1}", "lr: 50}")
                     .replace("seeds: [0, 1]", "seeds: [0]"))
    proc = run(tmp_path, small)
    assert proc.returncode == 1, proc.stderr
    kids = children(tmp_path, "small")
    diverged = [k for k in kids if k.data.tags.get("harness.status") == "diverged"]
    assert len(diverged) == 1
    assert diverged[0].data.metrics["epoch"] == 1, "a diverged trial stops early"


def test_same_trial_on_three_backends_gives_the_same_val_loss(tmp_path, store):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    f = tmp_path / "b.yaml"
    f.write_text(SMALL.replace("backends: [numpy]", "backends: [numpy, torch, jax]")
                 .replace("seeds: [0, 1]", "seeds: [0]")
                 .replace("width: 16}", "width: 16, dropout: 0.2}"))
    proc = run(tmp_path, f)
    assert proc.returncode == 0, proc.stderr
    by = {}
    for r in children(tmp_path, "small"):
        by.setdefault(r.data.params["optimizer.name"], {})[r.data.params["backend"]] = r
    for name, runs in by.items():
        ref = runs["numpy"].data.metrics["val/loss"]
        for backend in ("torch", "jax"):
            got = runs[backend].data.metrics["val/loss"]
            assert got == pytest.approx(ref, rel=1e-4), (name, backend, got, ref)


@needs("torch")
def test_pool_executor_gives_the_same_records(tmp_path, small):
    proc = run(tmp_path, small, "--executor", "pool", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    pooled = {r.data.tags["harness.trial"]: r.data.metrics for r in children(tmp_path, "small")}
    other = tmp_path / "local"
    other.mkdir()
    (other / "mlflow.db").write_bytes((tmp_path / "mlflow.db").read_bytes())
    assert run(other, small).returncode == 0
    local = {r.data.tags["harness.trial"]: r.data.metrics for r in children(other, "small")}
    assert pooled.keys() == local.keys()
    for h in local:
        assert pooled[h]["val/loss"] == local[h]["val/loss"]


def test_dry_run_lists_trials_and_writes_nothing(tmp_path, small):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run(empty, small, "--dry-run")
    assert proc.returncode == 0
    assert proc.stdout.count("backend=numpy") == 4
    assert list(empty.iterdir()) == [], "a dry run wrote something"


def test_help_is_fast_and_imports_no_framework():
    code = ("import sys, time; t = time.perf_counter(); import harness, harness.cli, "
            "harness.config; print(time.perf_counter() - t); "
            "bad = [m for m in ('torch', 'jax', 'mlflow') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--help"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "--set" in proc.stdout


def test_dry_run_imports_no_framework():
    # issue 17: --dry-run took 6 s, importing torch and jax to ask for their devices
    code = ("import sys; from harness.cli import main; code = main(['run', "
            "'experiments/optimizers.yaml', '--dry-run']); "
            "bad = [m for m in ('torch', 'jax', 'mlflow') if m in sys.modules]; "
            "print('imported', bad, file=sys.stderr); sys.exit(code or (3 if bad else 0))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "trials (dry run" in proc.stdout and "tuning:" in proc.stdout


def test_the_test_split_is_evaluated_once_after_training(tmp_path, small):
    # issue 15: test/<metric> is logged once, at the last step, never while training, and
    # equals the final weights evaluated on the task's held-out split
    import numpy as np

    import backends
    from harness.config import load
    from harness.sweep.train import dataset, model_for

    assert run(tmp_path, small).returncode == 0
    c = client(tmp_path)
    trials = {t.hash: t for t in load(small)[1]}
    for kid in children(tmp_path, "small"):
        history = c.get_metric_history(kid.info.run_id, "test/accuracy")
        last = max(m.step for m in c.get_metric_history(kid.info.run_id, "train/loss"))
        assert [m.step for m in history] == [last], "logged once, at the last step"
        assert len(c.get_metric_history(kid.info.run_id, "test/loss")) == 1
        t = trials[kid.data.tags["harness.trial"]]
        data = dataset(t.config["task"], t.seed)
        spec = model_for(t, data)
        arrays = dict(np.load(c.download_artifacts(kid.info.run_id, "params.npz",
                                                   str(tmp_path))))
        shapes, buffers = backends.spec.param_shapes(spec)
        trainer = backends.load("numpy").build(spec, {k: arrays[k] for k in shapes},
                                               {k: arrays[k] for k in buffers}, t.experiment
                                               .optimizer)
        predicted = trainer.forward(data.x_test).argmax(axis=1)
        assert history[0].value == pytest.approx(float(np.mean(predicted == data.y_test)),
                                                 abs=1e-12)


def test_time_to_target_is_the_first_epoch_that_reaches_it(tmp_path, store):
    # issue 15: target/steps and target/seconds at the first epoch whose val/accuracy reaches
    # the value; a trial that never reaches it gets inf (the worst), read back as inf
    import math

    f = tmp_path / "target.yaml"
    f.write_text(SMALL.replace("epochs: 2", "epochs: 4") + "target: {metric: val/accuracy, "
                 "value: 0.5}\n")
    assert run(tmp_path, f).returncode == 0
    c = client(tmp_path)
    for kid in children(tmp_path, "small"):
        accuracy = c.get_metric_history(kid.info.run_id, "val/accuracy")
        first = min((m.step for m in accuracy if m.value >= 0.5), default=None)
        steps = c.get_metric_history(kid.info.run_id, "target/steps")
        assert first is not None and [m.value for m in steps] == [first]
        assert 0 < kid.data.metrics["target/seconds"] < kid.data.metrics["time/train_s"]
    f.write_text(f.read_text().replace("value: 0.5", "value: 1.0").replace("name: small",
                                                                           "name: never"))
    assert run(tmp_path, f).returncode == 0
    for kid in children(tmp_path, "never"):
        assert kid.data.metrics["target/steps"] >= 1e308  # MLflow's inf
    with open(tmp_path / "results" / "never" / "trials.csv") as rows:
        rows = list(csv.DictReader(rows))
    assert all(math.isinf(float(r["target/steps"])) for r in rows)
    # a second invocation reads the finished runs back from MLflow: still inf
    assert run(tmp_path, f).returncode == 0
    with open(tmp_path / "results" / "never" / "trials.csv") as rows:
        assert all(math.isinf(float(r["target/steps"])) for r in csv.DictReader(rows))


def test_a_target_on_a_metric_never_seen_while_training_is_refused(tmp_path, store):
    f = tmp_path / "bad.yaml"
    f.write_text(SMALL + "target: {metric: test/accuracy, value: 0.5}\n")
    proc = run(tmp_path, f)
    assert proc.returncode == 2 and "target.metric" in proc.stderr, proc.stderr
