"""Checks that need more than the file: frameworks, devices, and every model's shapes.

They run after the file is read and before anything is created, so a sweep that cannot
finish is refused whole, with exit code 2, instead of failing trial after trial.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys

import backends
from harness.config import Trial
from harness.data.augment import check_augmentations
from harness.errors import ConfigError
from harness.sweep.train import dataset, model_for


def preflight(source: str, trials: list[Trial], sweep: dict | None = None) -> list[ConfigError]:
    """Every problem with the trials that reading the file could not see; sweep: the
    file's `sweep:` block, to name a swept value's key path (sweep.augment[1][0])."""
    errors: list[ConfigError] = []
    seen_backends, seen_devices, seen_models, seen_augment = set(), set(), set(), set()
    for t in trials:
        if t.backend not in seen_backends:
            seen_backends.add(t.backend)
            if not backends.installed(t.backend):
                extra = "torch" if t.backend == "torch" else "jax"
                errors.append(ConfigError(source, "backends", (
                    f"backend {t.backend} needs {backends.FRAMEWORK[t.backend]}, which is not "
                    f"installed: pip install -e '.[{extra}]'")))
                continue
        # every backend runs on the cpu; asking a framework for its devices imports it
        # (seconds), so only a gpu trial asks (and `run --dry-run` stays light)
        if t.device != "cpu" and (t.backend, t.device) not in seen_devices \
                and backends.installed(t.backend):
            seen_devices.add((t.backend, t.device))
            present = backends.load(t.backend).devices()
            if t.device not in present:
                errors.append(ConfigError(source, "devices", (
                    f"backend {t.backend} has no device {t.device!r} on this machine "
                    f"(present: {', '.join(present)})")))
        key = json.dumps({k: t.config[k] for k in ("task", "model")}, sort_keys=True)
        if key not in seen_models:
            seen_models.add(key)
            errors += _check_model(source, t)
        key = json.dumps({k: t.config.get(k) for k in ("task", "augment")}, sort_keys=True)
        if t.config.get("augment") and key not in seen_augment:
            seen_augment.add(key)
            errors += _check_augment(source, t, (sweep or {}).get("augment", []))
    return errors


def _check_augment(source: str, t: Trial, swept: list) -> list[ConfigError]:
    """Ops that cannot take the task's inputs, e.g. `rotate` (3D) on a 2D task."""
    try:
        shape = dataset(t.config["task"], t.seed).input_shape
    except Exception:  # noqa: BLE001 -- _check_model has reported the task already
        return []
    prefix = "augment"  # where the list is written: at the top, or as a value of the sweep
    if "augment" in t.point and t.point["augment"] in swept:
        prefix = f"sweep.augment[{swept.index(t.point['augment'])}]"
    errors = []
    for e in check_augmentations(t.config["augment"], input_shape=shape):
        errors.append(ConfigError(source, prefix + e.path.removeprefix("augment"),
                                  f"{e.message} of task {t.config['task']['name']}"))
    return errors


def _check_model(source: str, t: Trial) -> list[ConfigError]:
    where = f"model (at sweep point {t.point_label})" if t.point else "model"
    try:
        data = dataset(t.config["task"], t.seed)
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        missing = getattr(exc, "name", None) or str(exc).rsplit(" ", 1)[-1]
        return [ConfigError(source, "task", f"task {t.config['task']['name']} needs {missing}, "
                                            f"which {sys.executable} does not have: install "
                                            "the project's requirements (pip install -e "
                                            "\".[all]\") into this Python, or run that of "
                                            "its virtual environment")]
    except Exception as exc:  # noqa: BLE001 -- reported as a config error, with its cause
        return [ConfigError(source, "task", f"could not load task: {type(exc).__name__}: "
                                            f"{exc}")]
    arch = t.experiment.model.arch
    try:
        spec = model_for(t, data)
    except ValueError as exc:  # ShapeError is a ValueError
        return [ConfigError(source, where, f"arch {arch} cannot take this task's input "
                                           f"{data.input_shape}: {exc}")]
    want = (data.n_outputs,) if data.kind == "classification" else data.output_shape
    if spec.output_shape != want:
        return [ConfigError(source, where, (
            f"arch {arch} cannot serve task {data.name}: it outputs {spec.output_shape} per "
            f"sample, the task's {data.kind} targets need {want}"))]
    return []
