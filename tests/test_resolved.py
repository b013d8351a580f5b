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
