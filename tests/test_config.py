"""Malformed experiment files are refused whole, with exit code 2, the key path in the
message, and nothing written: no MLflow store, no results folder."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness import config
from harness.config.validate import ConfigErrors

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
name: t
task: {name: digits, n_train: 100}
model: {arch: mlp, activation: relu, init: he, depth: 1, width: 8}
optimizer: {name: sgd, lr: 0.05}
train: {epochs: 1, batch_size: 32}
backends: [numpy]
seeds: [0]
"""

# (what is wrong, the file text, a path the message must name, a word it must hold)
BAD = [
    ("typo at the top", GOOD.replace("optimizer:", "optimzer:"), "optimzer", "optimizer"),
    ("typo in model", GOOD.replace("activation:", "activaton:"), "model.activaton",
     "activation"),
    ("typo in train", GOOD.replace("epochs:", "epoch:"), "train.epoch", "epochs"),
    ("typo in optimizer", GOOD.replace("lr:", "lrr:"), "optimizer.lrr", "lr"),
    ("typo in task option", GOOD.replace("n_train", "ntrain"), "task.ntrain", "n_train"),
    ("lr negative", GOOD.replace("lr: 0.05", "lr: -0.1"), "optimizer.lr", "> 0"),
    ("lr zero", GOOD.replace("lr: 0.05", "lr: 0"), "optimizer.lr", "> 0"),
    ("lr a string", GOOD.replace("lr: 0.05", "lr: fast"), "optimizer.lr", "a number"),
    ("dropout 1", GOOD.replace("init: he", "init: he, dropout: 1.0"), "model.dropout",
     "[0, 1)"),
    ("epochs float", GOOD.replace("epochs: 1", "epochs: 1.5"), "train.epochs", "integer"),
    ("batchnorm a string", GOOD.replace("init: he", "init: he, batchnorm: yes please"),
     "model.batchnorm", "true or false"),
    ("empty seeds", GOOD.replace("seeds: [0]", "seeds: []"), "seeds", "non-empty"),
    ("seeds not a list", GOOD.replace("seeds: [0]", "seeds: 0"), "seeds", "a list"),
    ("unknown task", GOOD.replace("name: digits", "name: digitz"), "task.name", "digits"),
    ("unknown arch", GOOD.replace("arch: mlp", "arch: mpl"), "model.arch", "mlp"),
    ("unknown activation", GOOD.replace("activation: relu", "activation: relu6"),
     "model.activation", "relu"),
    ("unknown init", GOOD.replace("init: he", "init: kaiming"), "model.init", "gaussian"),
    ("unknown optimizer", GOOD.replace("name: sgd", "name: adamw"), "optimizer.name", "adam"),
    ("unknown augmentation", GOOD + "augment: [flipp]\n", "augment[0]", "flip"),
    ("unknown backend", GOOD.replace("[numpy]", "[numpy, pytorch]"), "backends[1]", "torch"),
    ("unknown device", GOOD + "devices: [tpu]\n", "devices[0]", "cpu"),
    ("sweep path nowhere", GOOD + "sweep:\n  model.widht: [1, 2]\n", "sweep.model.widht",
     "width"),
    ("sweep value bad", GOOD + "sweep:\n  optimizer.lr: [0.1, -1]\n", "sweep.optimizer.lr[1]",
     "> 0"),
    ("sweep over seeds", GOOD + "sweep:\n  seeds: [[0], [1]]\n", "sweep.seeds", "cannot"),
    ("YAML syntax", GOOD.replace("{name: sgd, lr: 0.05}", "{name: sgd, lr: 0.05"), "line",
     "YAML"),
    ("not a mapping", "- just\n- a list\n", "<top>", "mapping"),
    ("claim path nowhere", GOOD + "expect:\n  - {better: {model.nit: he}, than: {model.init: "
     "gaussian}}\n", "expect[0].better.model.nit", "init"),
    ("momentum 0", GOOD.replace("name: sgd, lr: 0.05", "name: momentum, lr: 0.05, momentum: 0"),
     "optimizer.momentum", "sgd"),
    ("missing name", GOOD.replace("name: t\n", ""), "name", "required"),
    ("rotate mode misspelt", GOOD + "augment: [{name: rotate, mode: cubic}]\n",
     "augment[0].mode", "did you mean 'cube'"),
    ("jitter border unknown", GOOD + "augment: [{name: jitter, border: wrap}]\n",
     "augment[0].border", "'edge', 'constant'"),
]


def _run(path: Path, tmp: Path, *extra: str):
    return subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--results", str(tmp / "results"),
         "--tracking-uri", f"sqlite:///{tmp / 'store' / 'mlflow.db'}", "--quiet", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("what,text,path,word", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_refused_by_load(tmp_path, what, text, path, word):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        config.load(f)
    messages = [str(e) for e in info.value.errors]
    assert any(f": {path}" in m and word in m and str(f) in m for m in messages), messages


def test_arch_that_cannot_take_the_input_is_refused_before_running(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD.replace("arch: mlp", "arch: unet"))
    proc = _run(f, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "model" in proc.stderr and "unet" in proc.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "results").exists()


def test_3d_augmentation_on_a_2d_task_is_refused_before_running(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(GOOD + "sweep:\n  augment: [[], [flip, rotate], [jitter]]\n")
    proc = _run(f, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "sweep.augment[1][1]: 'rotate' needs inputs with 3 spatial axes" in proc.stderr
    assert "sweep.augment[2][0]: 'jitter' needs inputs with 3 spatial axes" in proc.stderr
    assert "(1, 8, 8) of task digits" in proc.stderr and "2 errors" in proc.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("index", [0, 5, 13, 24, 25])
def test_cli_exits_2_and_writes_nothing(tmp_path, index):
    what, text, path, word = BAD[index]
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    proc = _run(f, tmp_path)
    assert proc.returncode == 2, (what, proc.stderr)
    assert path in proc.stderr and "nothing was run or written" in proc.stderr
    assert not (tmp_path / "store").exists(), "a refused config must not create a store"
    assert not (tmp_path / "results").exists()


def test_every_error_is_reported_at_once(tmp_path):
    text = (GOOD.replace("optimizer:", "optimzer:").replace("epochs: 1", "epochs: 0")
            .replace("init: he", "init: hee").replace("[numpy]", "[nympy]"))
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ConfigErrors) as info:
        config.load(f)
    paths = {e.path for e in info.value.errors}
    assert {"optimzer", "train.epochs", "model.init", "backends[0]"} <= paths


def test_python_tag_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n' + GOOD[8:])
    proc = _run(f, tmp_path)
    assert proc.returncode == 2
    assert "python/object/apply" in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "store").exists()


def test_set_overrides_are_validated_and_attributed(tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD)
    with pytest.raises(ConfigErrors) as info:
        config.load(f, ["train.epoch=3", "optimizer.lr=-1", "seeds=[0, 1]"])
    messages = [str(e) for e in info.value.errors]
    assert any(m.startswith("--set train.epoch=3: train.epoch") for m in messages), messages
    assert any(m.startswith("--set optimizer.lr=-1: optimizer.lr") for m in messages)
    assert len(messages) == 2


def test_yaml_reads_1e_minus_3_as_a_number(tmp_path):
    f = tmp_path / "good.yaml"
    f.write_text(GOOD.replace("lr: 0.05", "lr: 1e-3"))
    exp, trials = config.load(f)
    assert exp.optimizer.lr == pytest.approx(1e-3)


def test_sweep_expands_grid_times_backends_seeds_with_stable_hashes(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text(GOOD.replace("[numpy]", "[numpy, torch]").replace("[0]", "[0, 1, 2]")
                 + "sweep:\n  optimizer:\n    - {name: sgd, lr: 0.1}\n"
                   "    - {name: adam, lr: 0.001}\n  model.width: [4, 8]\n")
    exp, trials = config.load(f)
    assert len(trials) == 2 * 2 * 2 * 3
    assert len({t.hash for t in trials}) == len(trials)
    again = config.load(f)[1]
    assert [t.hash for t in trials] == [t.hash for t in again]
    adam = [t for t in trials if t.config["optimizer"]["name"] == "adam"]
    # a sweep value replaces what is at its path, with the defaults filled in
    assert all(t.config["optimizer"]["beta2"] == 0.999 for t in adam)
    assert {t.config["model"]["width"] for t in trials} == {4, 8}
    # the description is not part of a trial's identity; the epochs are
    f.write_text(f.read_text() + "description: another\n")
    assert [t.hash for t in config.load(f)[1]] == [t.hash for t in trials]
    changed = config.load(f, ["train.epochs=2"])[1]
    assert not {t.hash for t in changed} & {t.hash for t in trials}
    # an option left at None (off) is not part of the identity; set, it is
    f.write_text(f.read_text().replace("depth: 1, ", ""))
    plain = [t.hash for t in config.load(f)[1]]
    assert [t.hash for t in config.load(f, ["model.depth=null"])[1]] == plain
    assert not {t.hash for t in config.load(f, ["model.depth=3"])[1]} & set(plain)


def test_the_shipped_experiments_are_valid():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        exp, trials = config.load(path)
        assert trials, path
        assert path.read_text().startswith("# "), f"{path} lacks its header comment"


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    # PyYAML keeps the last of two equal keys silently: `name: other` appended to the main
    # job ran its 27 trials under the second name and exited 0 (issue 13, item 2).
    text = (GOOD.replace("{name: sgd, lr: 0.05}", "{name: sgd, lr: 0.05, lr: 0.5}")
            + "train:\n  epochs: 2\n" + "name: other\n")
    f = tmp_path / "twice.yaml"
    f.write_text(text)
    proc = _run(f, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{f}: name: key 'name' is given twice, on line 1 and line 10" in proc.stderr
    assert f"{f}: train: key 'train' is given twice, on line 5 and line 8" in proc.stderr
    assert f"{f}: optimizer.lr: key 'lr' is given twice on line 4" in proc.stderr
    assert "3 errors" in proc.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "results").exists()


def test_a_key_given_twice_deep_in_a_sweep_or_an_override_is_refused(tmp_path):
    f = tmp_path / "deep.yaml"
    f.write_text(GOOD + "sweep:\n  optimizer:\n    - {name: sgd, lr: 0.1}\n"
                        "    - name: adam\n      lr: 0.001\n      lr: 0.01\n")
    with pytest.raises(ConfigErrors) as info:
        config.load(f, ["model={arch: mlp, arch: lenet}"])
    messages = [str(e) for e in info.value.errors]
    assert any(": sweep.optimizer[1].lr: key 'lr' is given twice, on line 12 and line 13" in m
               for m in messages), messages
    assert any(m.startswith("--set model={arch: mlp, arch: lenet}: model.arch: key 'arch'")
               for m in messages), messages
    # the same name in two different mappings is no duplicate
    f.write_text(GOOD.replace("backends: [numpy]", "backends: [numpy]\nsweep:\n  model.width: "
                              "[4, 8]\n  optimizer.lr: [0.1, 0.2]"))
    assert len(config.load(f)[1]) == 4


def test_a_claim_value_not_in_the_grid_is_refused_with_the_values_that_are(tmp_path):
    # issue 17: `better: {model.activation: sigmoid}` with sigmoid not swept passed, and
    # report then blamed the seed count
    f = tmp_path / "claim.yaml"
    f.write_text(GOOD + "sweep:\n  model.activation: [relu, tanh]\nexpect:\n"
                        "  - {better: {model.activation: sigmoid}, than: {model.activation: "
                        "relu}}\n  - {better: {model.activation: tanh}, than: "
                        "{model.activation: relu}, where: {backend: torch}}\n")
    with pytest.raises(ConfigErrors) as info:
        config.load(f)
    messages = [str(e) for e in info.value.errors]
    assert any("expect[0].better: no trial of the grid has {'model.activation': 'sigmoid'}"
               in m and "model.activation: relu, tanh" in m for m in messages), messages
    assert any("expect[1].better" in m and "backend: numpy" in m for m in messages), messages
    assert len(messages) == 3  # expect[1]'s where fails both of its sides
    proc = _run(f, tmp_path)
    assert proc.returncode == 2 and not (tmp_path / "store").exists()
