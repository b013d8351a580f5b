"""Per-layer diagnostics: their definitions, their agreement across backends, a trajectory
they leave alone, their MLflow keys and plots, and what they cost."""

import dataclasses
import math

import numpy as np
import pytest
from conftest import needs

import backends
from backends.archs import build_model
from backends.init import init_params
from backends.optim import OptimizerSpec
from backends.spec import (
    Activation,
    BatchNorm,
    Conv,
    Dropout,
    Flatten,
    Linear,
    ModelSpec,
    Parallel,
    Pool,
    Sequential,
    dropout_masks,
)
from benchmarks import diagnostics as overhead
from harness import names
from harness.config import load
from harness.sweep import diagnostics as D
from harness.sweep.train import Sink, run_trial

SMALL = """\
name: diag
task: {name: digits, n_train: 128}
model: {arch: mlp, activation: relu, init: he, depth: 2, width: 16, batchnorm: true,
        dropout: 0.2}
optimizer: {name: adam, lr: 0.01}
train: {epochs: 2, batch_size: 32, diag_every: 3, dtype: float64}
backends: [numpy, torch, jax]
seeds: [0]
"""


class Rows(Sink):
    def __init__(self):
        self.rows = []

    def metrics(self, rows):
        self.rows += rows


def trials(tmp_path, text=SMALL, names=("numpy", "torch", "jax")):
    f = tmp_path / "diag.yaml"
    f.write_text(text)
    return [t for t in load(f)[1] if t.backend in names and backends.installed(t.backend)]


def with_train(trial, **changes):
    exp = trial.experiment
    exp = dataclasses.replace(exp, train=dataclasses.replace(exp.train, **changes))
    return dataclasses.replace(trial, experiment=exp)


def diag_rows(trial) -> dict:
    sink = Rows()
    outcome = run_trial(trial, sink)
    assert outcome.status == "finished", outcome.traceback
    return {(k, s): v for k, v, s, _ in sink.rows if k.startswith("diag/")}


# ----------------------------------------------------------------------------- definitions


def test_definitions_on_hand_made_arrays():
    spec = build_model("mlp", (3,), 2, "mse", depth=1, width=4, activation="relu")
    act = np.array([[0.0, 1.0, 0.0, -0.0], [0.0, 2.0, 3.0, 0.0]])  # (N=2, 4 units)
    head = np.array([[1.0, -1.0], [3.0, 1.0]])
    stats = D.activation_stats(spec, {"layer1.act": act, "head": head})
    assert stats["diag/layer1.act/act_mean"] == pytest.approx(act.mean())
    assert stats["diag/layer1.act/act_std"] == pytest.approx(act.std())  # population std
    assert stats["diag/layer1.act/dead_frac"] == 0.5  # units 0 and 3: zero on every sample
    assert stats["diag/head/act_mean"] == 1.0 and "diag/head/dead_frac" not in stats
    before = {"layer1.fc.weight": np.full((4, 3), 2.0), "layer1.fc.bias": np.zeros(4),
              "head.weight": np.ones((2, 4)), "head.bias": np.zeros(2)}
    grads = {k: np.ones_like(v) for k, v in before.items()}
    after = {k: v - 0.1 * grads[k] for k, v in before.items()}
    stats = D.gradient_stats(spec, grads, before, after)
    assert stats["diag/layer1.fc/grad_norm"] == pytest.approx(4.0)  # sqrt(12 + 4)
    assert stats["diag/layer1.fc/update_ratio"] == pytest.approx(0.1 * 4.0 / math.sqrt(48))
    assert set(names.QUANTITIES) >= {names.parse_diag(k)[1] for k in stats}


def test_keys_follow_mlflow_rules():
    assert names.diag_key("block1.res/body:conv", "act_std") == "diag/block1.res/body_conv/act_std"
    assert names.parse_diag("diag/stage1.res.body.act/dead_frac") == ("stage1.res.body.act",
                                                                     "dead_frac")
    assert names.parse_diag("val/loss") is None


def tiny_spec() -> ModelSpec:
    """Every kind of node, small enough to compile in a moment: conv, pool, BatchNorm,
    dropout, a residual add and a concatenating skip."""
    return ModelSpec(arch="tiny", input_shape=(2, 8), loss="cross_entropy", body=Sequential(
        name="tiny", layers=(
            Conv(name="conv", ndim=1, in_channels=2, out_channels=3, kernel=3, padding=1),
            BatchNorm(name="bn", num_features=3, ndim=1),
            Activation(name="act", fn="relu"),
            Pool(name="pool", ndim=1, mode="max", kernel=2),
            Flatten(name="flatten"),
            Linear(name="fc", in_features=12, out_features=6),
            Parallel(name="res", merge="add", branches=(
                Sequential(name="body", layers=(Linear(name="fc", in_features=6, out_features=6),
                                                Activation(name="act", fn="tanh"))),
                Sequential(name="shortcut"))),
            Dropout(name="drop", p=0.3),
            Parallel(name="skip", merge="concat", branches=(
                Sequential(name="identity"),
                Sequential(name="inner", layers=(Linear(name="fc", in_features=6,
                                                        out_features=3),)))),
            Linear(name="head", in_features=9, out_features=4))))


@needs("torch")
@needs("jax")
def test_probe_agrees_across_backends_and_changes_no_state():
    spec = tiny_spec()
    rng = np.random.default_rng(0)
    params, buffers = init_params(spec, "he", rng)
    params = {k: v + rng.normal(0, 0.1, v.shape) for k, v in params.items()}
    x, y = rng.standard_normal((6, 2, 8)), rng.integers(0, 4, 6)
    masks = dropout_masks(spec, 6, rng)
    got = {}
    for name in ("numpy", "torch", "jax"):
        t = backends.load(name).build(spec, params, buffers, OptimizerSpec(name="sgd", lr=0.1),
                                      dtype="float64")
        outputs, dx = t.probe(x, y, train=True, masks=masks)
        assert list(outputs) == [p for p, _ in spec.layers()]
        assert outputs["drop"].shape == (6, 6) and outputs["skip.inner.fc"].shape == (6, 3)
        assert t.probe(x, train=False)[1] is None
        for k, v in t.buffers().items():  # pure: the running statistics did not move
            np.testing.assert_array_equal(v, buffers[k])
        got[name] = outputs, dx
    for name in ("torch", "jax"):
        for path, ref in got["numpy"][0].items():
            np.testing.assert_allclose(got[name][0][path], ref, rtol=1e-10, atol=1e-12,
                                       err_msg=f"{name} {path}")
        np.testing.assert_allclose(got[name][1], got["numpy"][1], rtol=1e-9, atol=1e-14)


# ----------------------------------------------------------------------------- in training


def test_diagnostics_of_one_trial_agree_across_backends(tmp_path):
    found = {t.backend: diag_rows(t) for t in trials(tmp_path)}
    ref = found.pop("numpy")
    steps = sorted({s for _, s in ref})
    assert steps == [1, 4, 7], steps  # every 3 steps of 8, from the first
    layers = {names.parse_diag(k) for k, _ in ref}
    assert {("layer1.act", "dead_frac"), ("layer2.bn", "update_ratio"), ("head", "act_std"),
            ("layer1.fc", "grad_norm")} <= layers
    for name, rows in found.items():
        assert rows.keys() == ref.keys(), name
        for k, v in ref.items():
            if names.parse_diag(k[0])[1] == "dead_frac":
                assert rows[k] == v, (name, k)
            else:
                assert rows[k] == pytest.approx(v, rel=1e-7, abs=1e-12), (name, k)


@pytest.mark.parametrize("rng", ["canonical", "native"])
def test_diagnostics_leave_the_trajectory_unchanged(tmp_path, rng):
    names = ("numpy", "torch", "jax") if rng == "canonical" else ("numpy",)
    text = SMALL.replace("dtype: float64", f"dtype: float64, rng: {rng}")
    for trial in trials(tmp_path, text, names):
        on, off = run_trial(trial), run_trial(with_train(trial, diag_every=None))
        assert on.final["val/loss"] == off.final["val/loss"], trial.backend
        for k, v in off.params.items():
            np.testing.assert_array_equal(on.params[k], v, err_msg=f"{trial.backend} {k}")


def test_off_calls_nothing_and_logs_nothing(tmp_path, monkeypatch):
    from backends.numpy.trainer import NumpyTrainer

    def refuse(*args, **kwargs):
        raise AssertionError("called with diagnostics off")

    monkeypatch.setattr(NumpyTrainer, "probe", refuse)
    monkeypatch.setattr(D.Diagnostics, "step", refuse)
    (trial,) = trials(tmp_path, SMALL.replace("diag_every: 3, ", ""), ("numpy",))
    assert trial.experiment.train.diag_every is None
    assert diag_rows(trial) == {}


def test_logged_to_mlflow_and_drawn_by_report(tmp_path, store):
    from mlflow.tracking import MlflowClient

    from harness.cli import main

    f = tmp_path / "diag.yaml"
    f.write_text(SMALL.replace("backends: [numpy, torch, jax]", "backends: [numpy]")
                 + "sweep:\n  model.init: [gaussian, he]\n")
    common = ["--results", str(tmp_path / "results"), "--tracking-uri", store, "--quiet"]
    assert main(["run", str(f), *common]) == 0
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("diag")
    run = [r for r in client.search_runs([exp.experiment_id])
           if r.data.tags.get("harness.kind") == "trial"][0]
    history = client.get_metric_history(run.info.run_id, "diag/layer1.act/dead_frac")
    assert [m.step for m in history] == [1, 4, 7]
    assert main(["report", str(f), *common]) == 0
    for png in ("diagnostics.png", "diag_layers.png"):
        assert (tmp_path / "results" / "diag" / png).stat().st_size > 10_000, png


def test_overhead_is_measured_and_printed(tmp_path, capsys):
    f = tmp_path / "diag.yaml"
    f.write_text(SMALL.replace("backends: [numpy, torch, jax]", "backends: [numpy]"))
    assert overhead.main([str(f), "--pairs", "5"]) == 0
    out = capsys.readouterr().out
    print(out)
    ratio = float(out.split("diagnostics step ")[1].split(": ")[1].split("x")[0])
    assert 1 < ratio < 50, out  # a ratio is reported; its size is benchmarks/README.md's
    assert "diag_every  10" in out and "of a step" in out
