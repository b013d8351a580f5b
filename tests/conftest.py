"""Shared test helpers: frameworks are optional, and tests that need one skip without it."""

import importlib.util

import pytest


def needs(module: str):
    """A skip marker for a test that needs `module` installed (CI installs them all)."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{module} is not installed")


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory):
    """An MLflow SQLite store with its tables made: creating them takes MLflow ~10 s."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, _empty_store):
    """A fresh, real MLflow SQLite store in this test's folder: tmp_path/mlflow.db."""
    import shutil

    shutil.copy(_empty_store, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
