"""Every name that more than one room of harness/ must spell alike: MLflow tags, backends and
devices, metric keys, and the trial's random streams.

A tag or a stream salt written as a literal in two places drifts; here it is written once.
"""

from __future__ import annotations

import re

import numpy as np

from backends import BACKENDS as BACKENDS  # the one list; backends/ owns it

DEVICES = ("cpu", "gpu", "auto")

# ---- MLflow tags (SPEC 4.5) --------------------------------------------------------------
TRIAL_TAG = "harness.trial"  # the trial's hash: its identity across invocations
STATUS_TAG = "harness.status"  # finished, diverged, failed, killed
ERROR_TAG = "harness.error"  # why a trial failed, diverged or was killed
KIND_TAG = "harness.kind"  # parent or trial
POINT_TAG = "harness.point"  # the sweep point, in words
PHASE_TAG = "harness.phase"  # "tune" on a tuning trial (a final trial has none)
STEPS_TAG = "harness.steps"
LAYERS_TAG = "harness.layers"  # with diagnostics: the model's leaves in forward order
DEVICE_NAME_TAG = "harness.device_name"
FILE_TAG = "harness.file"  # on the parent: the experiment file
TRIALS_TAG = "harness.trials"  # ... its number of trials
EXECUTOR_TAG = "harness.executor"
OVERRIDES_TAG = "harness.overrides"  # ... the --set list it ran with (JSON), for `report`
HOST_TAG = "harness.host"
VERSION_TAG = "harness.version."  # + library name
THREADS_TAG = "harness.threads."  # + OMP_NUM_THREADS, blas, torch, ...
PARENT_TAG = "mlflow.parentRunId"

# ---- metric keys -------------------------------------------------------------------------
METRICS = ("train/loss", "train/loss_epoch", "train/eval_loss", "train/accuracy", "train/mae",
           "val/loss", "val/accuracy", "val/mae", "val/mae_unknown", "val/iou", "gap/accuracy",
           "gap/loss", "perf/samples_per_s", "perf/step_ms",
           # the held-out split, once after training (harness/sweep/train.py `_test`)
           "test/loss", "test/accuracy", "test/mae", "test/mae_unknown", "test/iou")
# time to target (`target:`): the steps and training seconds to first reach it; inf if never
TARGET_METRICS = ("target/steps", "target/seconds")
METRICS += TARGET_METRICS
# metrics whose lower values are better; every other (accuracy, IoU, throughput) is higher
LOWER_IS_BETTER = ("loss", "mae", "step_ms", "gap", "target/")


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


QUANTITIES = ("act_mean", "act_std", "dead_frac", "grad_norm", "update_ratio")  # diag/...
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")  # what MLflow allows in a metric key


def diag_key(layer: str, quantity: str) -> str:
    """The metric key diag/<layer>/<quantity>, any character MLflow refuses made '_'."""
    return f"diag/{_UNSAFE.sub('_', layer)}/{quantity}"


def parse_diag(metric: str) -> tuple[str, str] | None:
    """(layer, quantity) of a diag/ key, else None."""
    if not metric.startswith("diag/"):
        return None
    layer, _, quantity = metric[len("diag/"):].rpartition("/")
    return (layer, quantity) if layer and quantity in QUANTITIES else None


# ---- random streams (SPEC 4.2) -----------------------------------------------------------
# A trial's seed makes one np.random.SeedSequence, spawned into these streams, in this order:
# changing the augmentation leaves the initial weights alone, and one trial on three backends
# draws the same numbers. The debugging aids draw from their own salted streams, so that
# turning them on changes no training stream.
TRAINING_STREAMS = ("init", "order", "augment", "dropout")
SALTS = {"gradient_check": 5, "diagnostics": 6}


def streams(seed: int) -> dict[str, np.random.Generator]:
    """A fresh generator for each stream of a trial's seed: init (weights), order (batches),
    augment, dropout (canonical masks), gradient_check (`harness check`), diagnostics (masks
    under rng: native)."""
    spawned = np.random.SeedSequence(seed).spawn(len(TRAINING_STREAMS))
    out = {name: np.random.default_rng(s) for name, s in zip(TRAINING_STREAMS, spawned)}
    for name, salt in SALTS.items():
        out[name] = np.random.default_rng([seed, salt])
    return out
