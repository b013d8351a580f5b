"""`--threads N` pins BLAS and torch per trial under the local executor as the pool does,
so that the same trial gives the same metrics under both (issue 9: determinism when threads
are pinned), and the counts are recorded as tags."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs

from harness.sweep.executors import THREAD_VARS, pinned_threads

ROOT = Path(__file__).resolve().parents[1]

SWEEP = """\
name: thr
task: {name: mario, n_train: 512, n_val: 128, n_test: 128}
model: {arch: mlp, depth: 2, width: 64, activation: relu, init: he}
optimizer: {name: momentum, lr: 0.01}
train: {epochs: 2, batch_size: 32}
backends: [numpy, torch]
seeds: [0, 1]
"""


def blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info())


def test_pinned_threads_sets_and_restores_blas_and_the_environment(monkeypatch):
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    for k in THREAD_VARS:
        monkeypatch.delenv(k, raising=False)
    before = blas_threads()
    with pinned_threads(1):
        assert blas_threads() == 1
        assert all(os.environ[k] == "1" for k in THREAD_VARS)
    assert blas_threads() == before
    assert not any(k in os.environ for k in THREAD_VARS)
    with pinned_threads(None):  # no --threads: nothing changes
        assert blas_threads() == before and not any(k in os.environ for k in THREAD_VARS)


def run(tmp: Path, name: str, *extra: str) -> dict:
    from mlflow.tracking import MlflowClient

    f = tmp / "thr.yaml"
    f.write_text(SWEEP)
    uri = f"sqlite:///{tmp / name}.db"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(f), "--results",
                           str(tmp / name), "--tracking-uri", uri, "--quiet", *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    c = MlflowClient(tracking_uri=uri)
    runs = c.search_runs([c.get_experiment_by_name("thr").experiment_id])
    return {r.data.tags["harness.trial"]: r for r in runs
            if r.data.tags.get("harness.kind") == "trial"}


@needs("torch")
def test_local_with_threads_matches_the_pool_and_tags_the_counts(tmp_path):
    local = run(tmp_path, "local", "--threads", "1")
    pool = run(tmp_path, "pool", "--executor", "pool", "--workers", "2")
    assert len(local) == len(pool) == 4 and local.keys() == pool.keys()
    for h, r in local.items():
        assert r.data.tags["harness.threads.blas"] == "1"
        assert r.data.tags["harness.threads.OMP_NUM_THREADS"] == "1"
        assert pool[h].data.tags["harness.threads.blas"] == "1"
        assert r.data.metrics["val/loss"] == pool[h].data.metrics["val/loss"]
        assert r.data.metrics["train/loss"] == pool[h].data.metrics["train/loss"]
    torch_runs = [r for r in local.values() if r.data.params["backend"] == "torch"]
    assert {r.data.tags["harness.threads.torch"] for r in torch_runs} == {"1"}


@pytest.mark.parametrize("value", ["0", "-2"])
def test_threads_below_one_is_refused(tmp_path, value):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "x.yaml", "--threads", value],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "--threads: expected an integer >= 1" in proc.stderr


def test_threads_with_ray_is_refused_with_the_reason(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "x.yaml", "--executor",
                           "ray", "--threads", "2"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2 and "applies to --executor local and pool" in proc.stderr
