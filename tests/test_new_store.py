"""A new SQLite store (issue 16): the driver does not open it before the first trial (the
writer creates it meanwhile), and it is a copy of the machine's empty template rather than
MLflow's migrations run again."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SMALL = """\
name: fresh
task: {name: mario, n_train: 128, n_val: 64, n_test: 64}
model: {arch: mlp, depth: 1, width: 8}
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 1, batch_size: 32}
backends: [numpy]
seeds: [0, 1]
"""


def test_a_new_store_is_the_template_copied_and_keeps_nothing_of_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    from harness.sweep import tracking

    first = tracking.Tracker(f"sqlite:///{tmp_path / 'a' / 'm.db'}", "one")
    template = tracking._template()
    assert template.exists(), "the first new store left no template"
    first.start_parent("a parent", {})
    second = tracking.Tracker(f"sqlite:///{tmp_path / 'b' / 'm.db'}", "two")
    names = [e.name for e in second.client.search_experiments()]
    assert sorted(names) == ["Default", "two"], "the template carried the first store's data"
    run = second.start_parent("p", {"k": "v"})
    assert second.client.get_run(run).data.tags["k"] == "v"


def test_a_run_into_a_new_store_has_its_parent_and_children(tmp_path):
    f = tmp_path / "fresh.yaml"
    f.write_text(SMALL)
    for executor in ("local", "pool"):
        db = tmp_path / executor / "m.db"
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "run", str(f), "--results", str(tmp_path / "r"),
             "--tracking-uri", f"sqlite:///{db}", "--quiet", "--executor", executor,
             "--set", f"name=fresh_{executor}"],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
            env={**os.environ, "HARNESS_CACHE": str(tmp_path / "cache")})
        assert proc.returncode == 0, proc.stderr
    from mlflow.tracking import MlflowClient

    for executor in ("local", "pool"):
        c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / executor / 'm.db'}")
        exp = c.get_experiment_by_name(f"fresh_{executor}")
        runs = c.search_runs([exp.experiment_id])
        parents = [r for r in runs if r.data.tags.get("harness.kind") == "parent"]
        kids = [r for r in runs if r.data.tags.get("harness.kind") == "trial"]
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert len(kids) == 2 and all(k.info.status == "FINISHED" for k in kids)
        assert {k.data.tags["mlflow.parentRunId"] for k in kids} == {parents[0].info.run_id}
        assert parents[0].data.tags["harness.executor"] == executor
