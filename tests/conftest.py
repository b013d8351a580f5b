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


def default_sigint() -> None:
    """A Popen preexec_fn: SIGINT back to its default in the child, as a terminal's
    foreground job has it. A test session started as a background job (`pytest &`) inherits
    SIGINT ignored, Python then installs no KeyboardInterrupt handler, and the child would
    never see the Ctrl-C a test sends it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(store_uri: str, timeout_s: float = 90):
    """A real `mlflow server` on 127.0.0.1 over `store_uri`: (process, url). Bounded wait."""
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    port = free_port()
    # the server keeps artifacts in ./mlartifacts of its working folder: a temporary one
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--host",
         "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.mkdtemp())
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).read() == b"OK":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"mlflow server did not answer /health within {timeout_s} s")
