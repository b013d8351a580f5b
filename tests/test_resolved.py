"""The resolved config (issue 17): config.yaml and MLflow's params show the model and data
a trial really trained on, while the trial's identity (its hash) stays the config as
written."""

import dataclasses
from pathlib import Path

import pytest

from backends.archs import ARCH_DEFAULTS, Knobs, build_model
from harness.config import filled, load, trial_hash
from harness.data.tasks import TASKS, load_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_filled_sizes_are_the_sizes_the_loader_gives(name, tmp_path):
    options = {"n_train": 64, "n_val": 32, "n_test": 16} if name in ("sdf", "shapes3d") else {}
    if name == "mario":
        options = {"n_train": 200, "n_val": 50, "n_test": 50}
    full = TASKS[name].filled(options)
    data = load_task(name, cache_dir=tmp_path, **options)
    assert None not in full.values(), full
    assert full["n_train"] == len(data.x_train)
    assert full["n_val"] == len(data.x_val)
    assert full.get("n_test", 0) == (0 if data.x_test is None else len(data.x_test))


def test_every_option_and_default_is_written_in():
    full = TASKS["mnist1d"].filled({"n_train": 1000})
    assert full == {"n_val": 500, "n_train": 1000, "n_test": 1000}
    assert TASKS["digits"].filled({}) == {"n_train": 1200, "n_val": 297, "n_test": 300}


def test_arch_defaults_are_filled_and_are_what_the_builder_uses():
    _, trials = load(ROOT / "experiments" / "dropout.yaml",
                     ["model.depth=null", "model.width=null", "seeds=[0]",
                      "sweep={model.dropout: [0.0]}"])
    config = trials[0].config
    assert config["model"]["depth"] is None and config["model"]["width"] is None
    full = filled(config)
    depth, width = ARCH_DEFAULTS["mlp"]
    assert (full["model"]["depth"], full["model"]["width"]) == (depth, width)
    # the defaults are the builder's: an explicit depth/width builds the same model
    k = {f.name: config["model"][f.name] for f in dataclasses.fields(Knobs)}
    implicit = build_model("mlp", (1, 40), 10, "cross_entropy", **k)
    explicit = build_model("mlp", (1, 40), 10, "cross_entropy",
                           **{**k, "depth": depth, "width": width})
    assert implicit == explicit
    assert full["task"]["n_train"] == 1000 and full["task"]["n_test"] == 1000


def test_filling_changes_no_hash():
    _, trials = load(ROOT / "experiments" / "dropout.yaml")
    t = trials[0]
    assert trial_hash(t.config, t.backend, t.device, t.seed) == t.hash
    assert filled(t.config) != t.config  # something was filled (n_val, n_test)


ONE = """\
name: resolved
task: {name: digits}
model: {arch: mlp}
optimizer: {name: sgd, lr: 0.1}
train: {epochs: 1, batch_size: 128}
backends: [numpy]
seeds: [0]
"""


def test_a_run_logs_the_filled_config_as_params_and_config_yaml(tmp_path):
    import subprocess
    import sys

    import mlflow
    import yaml

    f = tmp_path / "resolved.yaml"
    f.write_text(ONE)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(f), "--results",
                           str(tmp_path / "results"), "--tracking-uri", uri, "--quiet"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("resolved")
    (run,) = [r for r in client.search_runs([exp.experiment_id])
              if r.data.tags.get("harness.kind") == "trial"]
    depth, width = ARCH_DEFAULTS["mlp"]
    params = run.data.params
    assert (params["model.depth"], params["model.width"]) == (str(depth), str(width))
    assert (params["task.n_train"], params["task.n_val"], params["task.n_test"]) == \
        ("1200", "297", "300")
    path = client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))
    config = yaml.safe_load(Path(path).read_text())
    assert config["model"]["depth"] == depth and config["task"]["n_train"] == 1200
    _, (trial,) = load(f)
    assert run.data.tags["harness.trial"] == trial.hash  # the identity is the file's config
