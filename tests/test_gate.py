"""The CI performance gate (benchmarks/gate.py): it passes on its baseline and fails, naming
the figure, on a planted 2x slowdown -- both in its comparison alone and end to end, where
HARNESS_GATE_SLOWDOWN makes the gate really run one kernel twice per call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gate

ROOT = Path(__file__).resolve().parents[1]
BASE = {
    "kernel/conv2d/numpy/fwd+bwd": {"value": 0.46, "better": "higher", "unit": "fraction"},
    "trial-over-bare/digits-lenet/torch": {"value": 1.04, "better": "lower", "unit": "ratio"},
    "mfu/lenet-digits/jax": {"value": 0.073, "better": "higher", "unit": "fraction"},
}


def values():
    return {k: v["value"] for k, v in BASE.items()}


def verdicts(current):
    return {r.name: r.verdict for r in gate.compare(current, BASE)}


def test_the_baseline_passes_against_itself():
    rows = gate.compare(values(), BASE)
    assert {r.verdict for r in rows} == {"ok"}
    assert "gate: passed" in gate.report(rows)


def test_a_halved_fraction_fails_and_is_named():
    current = values()
    current["kernel/conv2d/numpy/fwd+bwd"] /= 2  # the kernel got 2x slower
    rows = gate.compare(current, BASE)
    assert verdicts(current)["kernel/conv2d/numpy/fwd+bwd"] == "SLOWER"
    message = gate.report(rows)
    assert "gate: FAILED: 1 of 3 figures" in message
    assert "kernel/conv2d/numpy/fwd+bwd (2.00x)" in message.splitlines()[-1]


def test_a_doubled_overhead_ratio_fails():
    current = values()
    current["trial-over-bare/digits-lenet/torch"] *= 2
    assert verdicts(current)["trial-over-bare/digits-lenet/torch"] == "SLOWER"


@pytest.mark.parametrize("factor", [1.4, 0.5, 0.1])  # within the 1.5x, or faster
def test_noise_within_the_factor_and_speedups_pass(factor):
    current = values()
    current["kernel/conv2d/numpy/fwd+bwd"] /= factor
    current["trial-over-bare/digits-lenet/torch"] *= factor
    assert set(verdicts(current).values()) == {"ok"}


def test_missing_and_new_figures_do_not_fail():
    current = values()
    del current["mfu/lenet-digits/jax"]  # a backend not installed on this runner
    current["mfu/new-model/torch"] = 0.2
    v = verdicts(current)
    assert v["mfu/lenet-digits/jax"] == "not measured"
    assert v["mfu/new-model/torch"] == "new"
    assert "gate: passed" in gate.report(gate.compare(current, BASE))


def test_the_committed_baseline_covers_every_figure():
    committed = json.loads(gate.BASELINE.read_text())
    assert set(committed["figures"]) == {f.name for f in gate.figures()}
    for name, fig in committed["figures"].items():
        assert fig["better"] in ("higher", "lower"), name
        assert fig["value"] > 0, name
    assert committed["factor"] == gate.FACTOR == 1.5
    rows = gate.compare({k: v["value"] for k, v in committed["figures"].items()},
                        committed["figures"])
    assert {r.verdict for r in rows} == {"ok"}


def run_gate(*args, slowdown=None):
    env = dict(os.environ, HARNESS_BENCH_THREADS="1")
    env.pop(gate.SLOWDOWN_ENV, None)
    if slowdown:
        env[gate.SLOWDOWN_ENV] = slowdown
    return subprocess.run([sys.executable, "-m", "benchmarks.gate", *map(str, args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_end_to_end_passes_on_its_baseline_and_fails_on_a_planted_slowdown(tmp_path):
    base = tmp_path / "gate.json"
    only = ["--only", "kernel/matmul/numpy/fwd+bwd", "kernel/conv2d/numpy/fwd+bwd",
            "--repeats", "3"]
    made = run_gate("--update", "--baseline", base, *only)
    assert made.returncode == 0, made.stdout + made.stderr
    assert set(json.loads(base.read_text())["figures"]) == {
        "kernel/matmul/numpy/fwd+bwd", "kernel/conv2d/numpy/fwd+bwd"}

    same = run_gate("--baseline", base, *only)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "gate: passed: 2 figures" in same.stdout

    slow = run_gate("--baseline", base, *only, slowdown="kernel/matmul/numpy/fwd+bwd=2")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    verdict = slow.stdout.split("gate: FAILED:")[1].splitlines()[0]
    assert "1 of 2 figures got slower than their baseline by more than 1.5x" in verdict
    assert "kernel/matmul/numpy/fwd+bwd" in verdict
    assert "conv2d" not in verdict
    assert "| kernel/matmul/numpy/fwd+bwd | higher |" in slow.stdout
