"""All three backends train both 3D tasks, with the same numbers (issue 7).

Each case takes a shipped 3D experiment's task and model as they are, and runs it through
`harness run` on numpy, torch and jax in float64, with a 3D augmentation on: one training
batch, a few steps on it, then the validation set. The backends must agree on each metric
the case names to 1e-8 (float64: they compute the same sums in different orders), and
training must lower the loss on each. The float32 runs of the shipped files are what
`experiments/*.yaml` measure; this is the check that the three compute one function.
"""

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import needs

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
BATCH = 4

CASES = {  # id: (experiment, model overrides, augmentation, the metrics to compare)
    "sdf-unet3d": ("sdf", {"skips": True}, ["rotate"],
                   ["train/loss", "val/loss", "val/mae", "val/mae_unknown", "val/iou"]),
    "sdf-encdec3d": ("sdf", {"skips": False}, ["jitter"],
                     ["train/loss", "val/loss", "val/mae", "val/mae_unknown", "val/iou"]),
    "shapes3d-vgg3d": ("shapes3d", {"arch": "vgg"}, ["rotate"],
                       ["train/loss", "val/loss", "val/accuracy"]),
    "shapes3d-resnet3d": ("shapes3d", {"arch": "resnet"}, ["jitter"],
                          ["train/loss", "val/loss", "val/accuracy"]),
}


def one_batch_file(tmp: Path, name: str, model: dict, augment: list) -> Path:
    raw = yaml.safe_load((ROOT / "experiments" / f"{name}.yaml").read_text())
    for key in ("sweep", "expect"):
        raw.pop(key, None)
    raw["name"] = f"{name}_backends"
    raw["task"].update(n_train=BATCH, n_val=BATCH, n_test=0)  # no held-out split: 443 s -> 70 s
    raw["model"].update(model)
    raw["train"].update(epochs=3, batch_size=BATCH, dtype="float64")
    raw.update(backends=["numpy", "torch", "jax"], seeds=[0], augment=augment)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@needs("torch")
@needs("jax")
@pytest.mark.parametrize("case", [
    "sdf-unet3d",
    pytest.param("sdf-encdec3d", marks=pytest.mark.slow),
    "shapes3d-vgg3d",
    pytest.param("shapes3d-resnet3d", marks=pytest.mark.slow),
])
def test_three_backends_train_a_3d_task_to_the_same_numbers(tmp_path, store, case):
    from mlflow.tracking import MlflowClient

    name, model, augment, metrics = CASES[case]
    path = one_batch_file(tmp_path, name, model, augment)
    common = ["--results", str(tmp_path / "results"), "--tracking-uri", store, "--quiet"]
    assert main(["run", str(path), *common]) == 0
    with open(tmp_path / "results" / f"{name}_backends" / "trials.csv") as f:
        rows = {r["backend"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["jax", "numpy", "torch"]
    assert {r["status"] for r in rows.values()} == {"finished"}
    for metric in metrics:
        values = np.array([float(rows[b][metric]) for b in ("numpy", "torch", "jax")])
        np.testing.assert_allclose(values, values[0], rtol=1e-8, atol=1e-10, err_msg=metric)
    client = MlflowClient(tracking_uri=store)
    for backend, row in rows.items():
        history = client.get_metric_history(row["run_id"], "train/loss")
        losses = [m.value for m in sorted(history, key=lambda m: m.step)]
        assert len(losses) == 3 and losses[-1] < losses[0], (backend, losses)  # 3 steps
