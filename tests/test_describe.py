"""`harness describe` and its JSON Schema, generated from the schema the validator uses."""

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from backends.archs import ARCH_DEFAULTS, ARCHS, build_model
from harness.config.describe import describe, json_schema
from harness.config.validate import load_file
from harness.data.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


def test_archs_lists_every_arch_with_the_defaults_its_builder_uses():
    text = describe("archs")
    for name, (depth, width) in ARCH_DEFAULTS.items():
        assert f"  {name:<10} depth {depth!s:<5} width {width!s:<4}" in text
    assert set(ARCH_DEFAULTS) == set(ARCHS)
    # the builders use these very values: null knobs build the same model as explicit ones
    for name, (depth, width) in ARCH_DEFAULTS.items():
        shape = (1, 16, 16) if name in ("unet", "encdec") else (1, 8, 8)
        loss = "mse" if name in ("unet", "encdec") else "cross_entropy"
        explicit = build_model(name, shape, 2, loss, depth=depth, width=width)
        assert build_model(name, shape, 2, loss).body == explicit.body, name


def test_tasks_and_keys_are_described_from_the_schema():
    text = describe("tasks")
    for name, info in TASKS.items():
        assert f"  {name:<9} {info.kind}" in text
        assert all(f"{k}={v!r}" in text for k, v in info.options.items())
    assert "None: the builder's default" in describe("model.width")
    assert "one of gd, sgd, momentum" in describe("optimizer")
    with pytest.raises(KeyError, match="no key 'modle.width'"):
        describe("modle.width")


def test_the_cli_answers_fast_and_refuses_an_unknown_key():
    proc = subprocess.run([sys.executable, "-m", "harness", "describe", "archs"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "resnet" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "harness", "describe", "modle"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "near: model" in proc.stderr


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_the_json_schema_takes_every_shipped_experiment(path):
    jsonschema.validate(load_file(path), json_schema())


def test_the_json_schema_refuses_a_typo():
    raw = load_file(ROOT / "experiments" / "optimizers.yaml")
    raw["optimzer"] = raw.pop("optimizer")
    with pytest.raises(jsonschema.ValidationError, match="optimzer"):
        jsonschema.validate(raw, json_schema())
    raw = load_file(ROOT / "experiments" / "init.yaml")
    raw["model"]["activaton"] = "relu"
    with pytest.raises(jsonschema.ValidationError, match="activaton"):
        jsonschema.validate(raw, json_schema())
