"""`run FOLDER` and `report FOLDER`: every experiment file of a folder, each into its own
MLflow experiment, checked all before any runs, and one verdict table for all (issue 15)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE = """\
name: {name}
task: {{name: mario, n_train: 256, n_val: 128, n_test: 128}}
model: {{arch: mlp, depth: 1, width: 8}}
optimizer: {{name: sgd, lr: 0.01}}
train: {{epochs: 2, batch_size: 64}}
backends: [numpy]
seeds: [0, 1]
sweep:
  optimizer.lr: [0.01, 0.001]
expect:
  - better: {{optimizer.lr: 0.01}}
    than: {{optimizer.lr: 0.001}}
    metric: val/mae
"""


def _harness(tmp: Path, command: str, folder: Path, *extra: str):
    return subprocess.run(
        [sys.executable, "-m", "harness", command, str(folder), "--results",
         str(tmp / "results"), "--tracking-uri", f"sqlite:///{tmp / 'mlflow.db'}", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_a_folder_runs_every_file_into_its_own_experiment_and_reports_one_table(tmp_path):
    folder = tmp_path / "experiments"
    folder.mkdir()
    for name in ("alpha", "beta"):
        (folder / f"{name}.yaml").write_text(ONE.format(name=name))
    proc = _harness(tmp_path, "run", folder, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "2 experiments in" in proc.stderr
    from mlflow.tracking import MlflowClient

    c = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("alpha", "beta"):
        runs = c.search_runs([c.get_experiment_by_name(name).experiment_id])
        assert sum(r.data.tags.get("harness.kind") == "trial" for r in runs) == 4
    proc = _harness(tmp_path, "report", folder)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "results" / "claims.md").read_text()
    assert "| alpha |" in table and "| beta |" in table and "## alpha" in table
    assert table.count("val/mae") >= 2  # each experiment's claim rows are there


def test_one_bad_file_refuses_the_whole_folder_before_anything_runs(tmp_path):
    folder = tmp_path / "experiments"
    folder.mkdir()
    (folder / "alpha.yaml").write_text(ONE.format(name="alpha"))
    (folder / "beta.yaml").write_text(ONE.format(name="beta").replace("lr: 0.01}", "lr: -1}"))
    proc = _harness(tmp_path, "run", folder)
    assert proc.returncode == 2, proc.stderr
    assert "beta.yaml: optimizer.lr" in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()
