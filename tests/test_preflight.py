"""A declared package missing from the Python that runs the harness is named, with the fix,
rather than reported as a bare PackageNotFoundError."""

import importlib.metadata
from pathlib import Path

from harness.config import load
from harness.sweep import preflight

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_package_is_named_with_the_fix(monkeypatch):
    def no_sklearn(task, seed):
        raise importlib.metadata.PackageNotFoundError("scikit-learn")

    monkeypatch.setattr(preflight, "dataset", no_sklearn)
    _, trials = load(ROOT / "experiments" / "optimizers.yaml")
    (error,) = preflight._check_model("optimizers.yaml", trials[0])
    assert error.path == "task"
    assert "task digits needs scikit-learn" in error.message
    assert 'pip install -e ".[all]"' in error.message
