"""One pool of workers per invocation (issue 16): every sweep of it runs on the same worker
processes, a NumPy sweep's workers never load torch, and a torch trial in a worker runs
on the threads the pool gave it (torch reads OMP_NUM_THREADS at its import)."""

import sys
from pathlib import Path

import pytest
from conftest import needs

from harness.config import load
from harness.sweep import executors
from harness.sweep.threads import cores

SWEEP = """\
name: reuse
task: {name: mario, n_train: 128, n_val: 64, n_test: 64}
model: {arch: mlp, depth: 1, width: 8}
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 1, batch_size: 32}
backends: [BACKENDS]
seeds: [0, 1]
sweep:
  optimizer.lr: [0.05, 0.01]
"""


class _Writer:
    """Keeps the writer's jobs instead of writing them: (job name, args)."""

    def __init__(self):
        self.jobs = []

    def submit(self, fn, *args, then=None):
        self.jobs.append((fn.__name__, args))
        if then is not None:
            then(f"run-{len(self.jobs)}")

    def poll(self, timeout=None):
        pass


class _Tracker:
    uri, experiment = "sqlite:///unused.db", "reuse"


def _trials(tmp_path: Path, backends: str):
    f = tmp_path / "reuse.yaml"
    f.write_text(SWEEP.replace("BACKENDS", backends))
    return load(f)[1]


def _maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _sweep(pool, todo, workers=2):
    writer, done = _Writer(), []
    executors.run_pool(writer, _Tracker(), "parent", todo, done.append, workers, None, pool)
    assert len(done) == len(todo) and {d.outcome.status for d in done} == {"finished"}
    return {args[1].hash: args[5] for name, args in writer.jobs if name == "ended_trial"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps")
def test_every_sweep_of_an_invocation_runs_on_the_same_workers(tmp_path):
    trials = _trials(tmp_path, "numpy")
    pool = executors.Pool()
    try:
        threads = _sweep(pool, trials[:2])
        first = pool.pids()
        assert len(first) == 2
        assert not any(_maps_torch(pid) for pid in first), "a numpy sweep's worker loaded torch"
        assert not any("harness.threads.torch" in t for t in threads.values())
        _sweep(pool, trials[2:])  # the next sweep (a round of seeds, the trials after tuning)
        assert pool.pids() == first
        _sweep(pool, trials[:3], workers=3)  # another size: a pool of that size instead
        assert len(pool.pids()) == 3 and not set(pool.pids()) & set(first)
    finally:
        pool.close()
    assert pool.pids() == []


@needs("torch")
def test_a_torch_trial_in_a_worker_runs_on_the_pools_threads(tmp_path):
    trials = _trials(tmp_path, "torch")
    pool = executors.Pool()
    try:
        threads = _sweep(pool, trials)
    finally:
        pool.close()
    want = str(max(1, cores() // 2))
    for tags in threads.values():
        assert tags["harness.threads.OMP_NUM_THREADS"] == want
        assert tags["harness.threads.torch"] == want, tags


def test_a_discarded_pool_is_replaced_by_a_fresh_one():
    pool = executors.Pool()
    try:
        a = pool.get(2, 1)
        assert pool.get(2, 1) is a
        pool.discard()
        assert pool.get(2, 1) is not a
    finally:
        pool.close()
