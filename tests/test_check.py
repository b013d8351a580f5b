"""`harness check`: it passes on correct backends and catches planted bugs, naming the layer.

The bugs are planted in the NumPy backend's hand-written backward passes
(backends/numpy/layers.py) with monkeypatch, so every test leaves the backend as it found it.
"""

import dataclasses

import numpy as np
import pytest
from conftest import needs

from backends.numpy import layers as np_layers
from harness.cli import main

SMALL = """\
name: checked
task: {name: digits, n_train: 128}
model: {arch: mlp, activation: relu, init: he, depth: 2, width: 16, batchnorm: true,
        dropout: 0.2}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 1, batch_size: 16}
backends: [numpy]
seeds: [0, 1]
sweep:
  optimizer:
    - {name: sgd, lr: 0.1}
    - {name: adam, lr: 0.01}
"""


@pytest.fixture
def small(tmp_path):
    f = tmp_path / "small.yaml"
    f.write_text(SMALL)
    return f


def rows(out: str, check: str) -> list[str]:
    return [line for line in out.splitlines() if f" {check} " in line]


def test_check_passes_and_prints_one_row_per_check(small, capsys):
    code = main(["check", str(small)])
    out = capsys.readouterr().out
    assert code == 0, out
    # one configuration per sweep point (the first seed), three checks each
    assert len(rows(out, "gradient")) == 2 and len(rows(out, "overfit")) == 2
    assert all("PASS" in r for r in rows(out, "gradient") + rows(out, "overfit"))
    assert all("numpy is the reference" in r for r in rows(out, "parity"))
    errors = [float(r.split()[4]) for r in rows(out, "gradient")]
    assert max(errors) < 1e-6, errors  # float64 central differences, BN and dropout included


@needs("torch")
@needs("jax")
def test_check_on_three_backends_with_parity(small, capsys):
    small.write_text(SMALL.replace("backends: [numpy]", "backends: [numpy, torch, jax]"))
    code = main(["check", str(small), "--limit", "1", "--steps", "50"])
    out = capsys.readouterr().out
    assert code == 0, out
    parity = rows(out, "parity")
    assert len(parity) == 3 and sum("PASS" in r for r in parity) == 2, out
    assert all(float(r.split()[4]) < 1e-10 for r in parity if "PASS" in r)


def test_planted_relu_backward_bug_fails_and_names_the_layer(small, capsys, monkeypatch):
    forward, _ = np_layers.ACTIVATIONS["relu"]

    def leaky_backward(dout, cache):  # lets 1% of the gradient through where x <= 0
        return np.where(cache, dout, 0.01 * dout), ()

    # the trainer looks its activations up in this table, so the bug goes there
    monkeypatch.setitem(np_layers.ACTIVATIONS, "relu", (forward, leaky_backward))
    code = main(["check", str(small), "--limit", "1", "--only", "gradient"])
    out = capsys.readouterr().out
    assert code == 1, out
    (row,) = rows(out, "gradient")
    assert "FAIL" in row
    # the head's gradient is right, the layer before it is not: the relu between them
    suspects = row.split("suspect the backward of: ")[1].split(", ")
    assert "layer2.act" in suspects and "layer1.fc" not in suspects, row
    assert "layer2.fc.weight: error" in out and "head.weight: error" not in out


def test_planted_linear_backward_bug_fails_and_names_the_layer(small, capsys, monkeypatch):
    real = np_layers.linear_backward

    def off_by_one_percent(dout, cache):
        dx, (dw, db) = real(dout, cache)
        return dx, (1.01 * dw, db)

    monkeypatch.setattr(np_layers, "linear_backward", off_by_one_percent)
    code = main(["check", str(small), "--limit", "1", "--only", "gradient"])
    out = capsys.readouterr().out
    assert code == 1, out
    (row,) = rows(out, "gradient")
    assert "FAIL" in row and row.endswith("suspect the backward of: head"), row
    for name in ("layer1.fc.weight", "layer2.fc.weight", "head.weight"):
        assert f"{name}: error" in out
    assert "head.bias: error" not in out


def test_zero_learning_rate_fails_overfit(small, capsys):
    from harness.config import load
    from harness.debug import check

    _, trials = load(small)
    c = check.case(trials[0], 8)
    frozen = dataclasses.replace(c, optimizer=dataclasses.replace(c.optimizer, lr=0.0))
    r = check.overfit_check(frozen, steps=30)
    assert r.passed is False and r.error == pytest.approx(1.0), r
    assert check.overfit_check(c, steps=30).passed
    # the file refuses lr: 0 (lr > 0), so through the CLI a vanishing one
    code = main(["check", str(small), "--limit", "1", "--only", "overfit", "--steps", "30",
                 "--set", "optimizer.lr=1e-12", "--set", "sweep={}"])
    out = capsys.readouterr().out
    assert code == 1 and "FAIL" in rows(out, "overfit")[0], out


def test_float32_fallback_has_its_own_tolerance(small, capsys, monkeypatch):
    import backends.numpy as np_backend

    monkeypatch.setattr(np_backend, "CAPABILITIES",
                        dataclasses.replace(np_backend.CAPABILITIES, float64=False))
    small.write_text(SMALL.replace("activation: relu", "activation: tanh"))
    code = main(["check", str(small), "--limit", "1", "--only", "gradient"])
    out = capsys.readouterr().out
    assert code == 0 and "float32" in rows(out, "gradient")[0], out


def test_bad_config_and_bad_options_exit_2(small, capsys):
    small.write_text(SMALL.replace("optimizer: {name: adam", "optimzer: {name: adam"))
    assert main(["check", str(small)]) == 2
    assert "did you mean" in capsys.readouterr().err
    small.write_text(SMALL)
    assert main(["check", str(small), "--backend", "jax"]) == 2
    assert "not among the file's backends" in capsys.readouterr().err
    assert main(["check", str(small), "--fraction", "1.5"]) == 2
