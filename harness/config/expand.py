"""An experiment file, checked whole, and its expansion into trials (SPEC 4.4).

    experiment, trials = load("experiments/optimizers.yaml", ["train.epochs=1"])

raises `ConfigErrors` with every error of the file and its overrides at once. A trial is one
point of the sweep grid x backend x device x seed; its identity is a hash of its fully
resolved config (every default filled in), so a re-run knows what is already done.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass

import backends
from backends.archs import ARCH_DEFAULTS
from harness.config import schema
from harness.config.validate import BAD, Checker, set_path
from harness.data.augment import check_augmentations, resolve_augmentations
from harness.data.tasks import TASKS
from harness.errors import suggest
from harness.names import BACKENDS, DEVICES

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Trial:
    index: int  # position in the grid, from 0
    experiment: schema.Experiment  # this trial's typed config (the sweep point applied)
    config: dict  # the resolved config as plain data: what the hash is made of
    point: dict  # sweep path -> value at this grid point
    backend: str
    device: str
    seed: int
    hash: str
    phase: str = "final"  # "tune": a tuning trial (harness/config/tuning.py), else "final"

    @property
    def label(self) -> str:
        """A short description: the sweep point, backend, device and seed."""
        parts = [f"{k}={_short(v)}" for k, v in self.point.items()]
        return " ".join([*parts, f"backend={self.backend}", f"device={self.device}",
                         f"seed={self.seed}"])

    @property
    def point_label(self) -> str:
        return " ".join(f"{k}={_short(v)}" for k, v in self.point.items()) or "base"


def _short(value) -> str:
    if isinstance(value, dict):
        inner = ",".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '')}({inner})" if "name" in value else f"({inner})"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    return str(value)


# ----------------------------------------------------------------------------- checks


def _check_task(ck: Checker, raw) -> dict | None:
    """The task's name, then its options, by the task's own checker (harness.data.tasks)."""
    if not isinstance(raw, dict):
        ck.wrong("task", "a mapping with a name, e.g. {name: digits}", raw)
        return None
    name = raw.get("name")
    if name not in TASKS:
        found = "nothing" if name is None else repr(name)
        ck.error("task.name", f"expected one of {', '.join(TASKS)}; found {found}"
                              f"{suggest(name or '', TASKS)}")
        return None
    info = TASKS[name]
    options = {k: v for k, v in raw.items() if k != "name"}
    problems = info.check_options(options)
    ck.add(problems)
    if problems:
        return None
    return {"name": name, **info.options, **info.coerce(options)}


def _check_augment(ck: Checker, raw) -> list | None:
    problems = check_augmentations(raw)
    ck.add(problems)
    if problems:
        return None
    return [{"name": name, **params} for name, params in resolve_augmentations(raw)]


def _check_lists(ck: Checker, raw: dict) -> None:
    """backends, devices, seeds and name, read from the raw mapping so that they are checked
    even when another key of the file is wrong (the type errors are the dataclass's)."""
    defaults = schema.Experiment()
    for key, known in (("backends", BACKENDS), ("devices", DEVICES)):
        values = raw.get(key, list(getattr(defaults, key)))
        if not isinstance(values, list):
            continue
        if not values:
            ck.error(key, f"expected a non-empty list of {', '.join(known)}, found []")
        for i, v in enumerate(values):
            if isinstance(v, str) and v not in known:
                ck.error(f"{key}[{i}]", f"expected one of {', '.join(known)}; found {v!r}"
                                        f"{suggest(v, known)}")
        if len(set(map(str, values))) != len(values):
            ck.error(key, f"lists {values} with a repeat")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, list):
        if not seeds:
            ck.error("seeds", "expected a non-empty list of integers, e.g. [0, 1, 2], found []")
        for i, s in enumerate(seeds):
            if isinstance(s, int) and not isinstance(s, bool) and s < 0:
                ck.error(f"seeds[{i}]", f"expected an integer >= 0, found {s}")
        if len(set(map(str, seeds))) != len(seeds):
            ck.error("seeds", f"lists {seeds} with a repeat")
    name = raw.get("name", "")
    if not name:
        ck.error("name", "required: the MLflow experiment's name, e.g. name: optimizers")
    elif isinstance(name, str) and not NAME_RE.match(name):
        ck.error("name", f"expected letters, digits, '-', '_' or '.', found {name!r}")


def path_exists(raw_exp: dict, path: str, task_defaults: dict) -> str | None:
    """None if the dotted path names a config value; else why not, with a suggestion."""
    keys = path.split(".")
    cls = schema.Experiment
    for depth, key in enumerate(keys):
        if cls is schema.TaskConfig:
            known = ["name", *task_defaults]
            if key not in known or depth != len(keys) - 1:
                return f"{path!r} names no task option{suggest(key, known)}"
            return None
        if cls is None or not dataclasses.is_dataclass(cls):
            return f"{path!r} goes below a value"
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "options"}
        if key not in fields:
            return f"{path!r} points nowhere: no key {key!r}{suggest(key, fields)}"
        cls = typing.get_type_hints(cls)[key]
    return None


def check_experiment(ck: Checker, raw: dict):
    """(Experiment, resolved task dict, resolved augment list), or BAD values on error."""
    body = {k: v for k, v in raw.items() if k not in ("task", "augment", "seed_rounds")}
    rounds = None
    if isinstance(body.get("seeds"), dict):  # seeds until decided: {min, max, round}
        rounds = ck.dataclass(schema.SeedRounds, body["seeds"], "seeds")
        if rounds is not BAD and rounds.max < rounds.min:
            ck.error("seeds.max", f"expected max >= min ({rounds.min}), found {rounds.max}")
            rounds = BAD
        body = {**body, "seeds": list(range(rounds.first, rounds.first + rounds.min))
                if rounds is not BAD else [0]}
    exp = ck.dataclass(schema.Experiment, body, "")
    if exp is not BAD and rounds is not None:
        exp = BAD if rounds is BAD else dataclasses.replace(exp, seed_rounds=rounds)
    task = _check_task(ck, raw.get("task", {"name": schema.TaskConfig().name}))
    augment = _check_augment(ck, raw.get("augment", []))
    _check_lists(ck, {**raw, "seeds": body.get("seeds", [0])})
    if exp is not BAD and exp.optimizer.name == "momentum" and exp.optimizer.momentum == 0:
        ck.error("optimizer.momentum", "expected a value > 0 for momentum, found 0 (momentum "
                                       "0 is plain sgd: use name: sgd)")
        exp = BAD
    if exp is BAD or task is None or augment is None:
        return BAD, None, None
    exp = dataclasses.replace(exp, task=schema.TaskConfig(
        name=task["name"], options={k: v for k, v in task.items() if k != "name"}),
        augment=tuple(augment))
    return exp, task, augment


def resolved(exp: schema.Experiment) -> dict:
    """The trial-defining part of the config as plain data, every default filled in."""
    out = dataclasses.asdict(exp)
    out["task"] = {"name": exp.task.name, **exp.task.options}
    out["augment"] = [dict(a) for a in exp.augment]
    for key in schema.NOT_IN_TRIAL:
        out.pop(key)
    if out["target"] is None:  # off: no param, no column, the records of a file without it
        out.pop("target")
    return out


def _set_values(config):
    """The config without its None values: an option that is off (None) is left out of
    the identity, so a new optional knob added to the schema keeps old trials' hashes."""
    if isinstance(config, dict):
        return {k: _set_values(v) for k, v in config.items() if v is not None}
    if isinstance(config, list):
        return [_set_values(v) for v in config]
    return config


def trial_hash(config: dict, backend: str, device: str, seed: int) -> str:
    blob = json.dumps({"config": _set_values(config), "backend": backend, "device": device,
                       "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def filled(config: dict) -> dict:
    """A trial's config as it trains, for config.yaml and MLflow's params: an arch's real
    depth and width where the file left them to the arch (ARCH_DEFAULTS), and the task's
    every option with the sizes it stands for (digits' n_train None: 1200). The trial's
    identity stays `trial_hash(config)` of the config as written, so filling changes no
    hash and resumes every existing run."""
    model, task = dict(config["model"]), dict(config["task"])
    depth, width = ARCH_DEFAULTS[model["arch"]]
    if model.get("depth") is None and depth is not None:
        model["depth"] = depth
    if model.get("width") is None:
        model["width"] = width
    name = task.pop("name")
    return {**config, "model": model, "task": {"name": name, **TASKS[name].filled(task)}}


# ----------------------------------------------------------------------------- loading


def _check_sweep(ck: Checker, raw: dict, sweep, task_defaults: dict) -> dict[str, list]:
    axes = {}
    if not isinstance(sweep, dict):
        ck.wrong("sweep", "a mapping of dotted paths to lists of values", sweep)
        return axes
    base = {k: v for k, v in raw.items() if k != "sweep"}
    for key, values in sweep.items():
        where = f"sweep.{key}"
        if str(key).split(".")[0] in schema.NOT_SWEEPABLE:
            ck.error(where, f"{key!r} cannot be swept: the grid already spans backends, devices "
                            "and seeds, and name/description/expect are not trial settings")
            continue
        why = path_exists(raw, str(key), task_defaults)
        if why:
            ck.error(where, why)
            continue
        if not isinstance(values, list) or not values:
            ck.wrong(where, "a non-empty list of values", values)
            continue
        for i, value in enumerate(values):
            sub = Checker(ck.source)
            check_experiment(sub, set_path(base, key, value))
            for err in sub.errors:  # errors at the swept path belong to this sweep value
                if err.path == key or err.path.startswith((f"{key}.", f"{key}[")):
                    ck.error(f"{where}[{i}]{err.path[len(key):]}", err.message)
        axes[key] = values
    return axes


# The keys that make each form of claim; a claim takes exactly one form.
CLAIM_FORMS = {"better/than": ("better", "than", "by_at_least"), "agree": ("agree",),
               "equivalent": ("equivalent",)}


def _check_claims(ck: Checker, raw: dict, task_defaults: dict) -> None:
    claims = raw.get("expect", [])
    for i, claim in enumerate(claims if isinstance(claims, list) else []):
        claim = claim if isinstance(claim, dict) else {}  # the dataclass says it is no mapping
        where = claim.get("where")
        for path in where if isinstance(where, dict) else {}:
            why = None if path in ("backend", "device", "seed") else path_exists(
                raw, str(path), task_defaults)
            if why:
                ck.error(f"expect[{i}].where.{path}", why)
        forms = {form: [k for k in keys if claim.get(k) is not None]
                 for form, keys in CLAIM_FORMS.items()}
        forms = {form: keys for form, keys in forms.items() if keys}
        if len(forms) > 1:
            found = " and ".join(", ".join(keys) for keys in forms.values())
            ck.error(f"expect[{i}]", f"expected one form of claim: better/than, agree or "
                                     f"equivalent; found {found}")
            continue
        if "agree" in forms:
            axis = claim["agree"]
            if axis not in ("backend", "device", "seed") and (
                    not isinstance(axis, str) or path_exists(raw, axis, task_defaults)):
                ck.error(f"expect[{i}].agree", f"expected backend, device, seed or a config "
                                               f"path, found {axis!r}")
            if claim.get("paired"):
                ck.error(f"expect[{i}].paired", "expected paired only on a better/than or "
                                                "equivalent claim; agree already compares "
                                                "trials seed by seed")
            continue
        if "equivalent" in forms:
            _check_equivalent(ck, raw, task_defaults, claim, f"expect[{i}]")
            continue
        for side in ("better", "than"):
            _check_selector(ck, raw, task_defaults, claim.get(side), f"expect[{i}].{side}")
        if "within" in claim:
            ck.error(f"expect[{i}].within", "expected by_at_least for the margin of a "
                                            "better/than claim; within is for agree and "
                                            "equivalent")


def _check_selector(ck: Checker, raw: dict, task_defaults: dict, selector, where: str,
                    mapping_checked: bool = False) -> None:
    """A configuration of a claim: a non-empty mapping of dotted paths that exist."""
    if not isinstance(selector, dict) or not selector:
        if not mapping_checked or isinstance(selector, dict):
            ck.error(where, "expected a mapping of dotted path to value, e.g. "
                            f"{{optimizer.name: adam}}, found "
                            f"{'nothing' if not selector else selector}")
        return
    for path in selector:
        if path in ("backend", "device", "seed"):
            continue
        why = path_exists(raw, str(path), task_defaults)
        if why:
            ck.error(f"{where}.{path}", why)


def _check_equivalent(ck: Checker, raw: dict, task_defaults: dict, claim: dict,
                      at: str) -> None:
    """`equivalent: [A, B]` with `within: d`: two distinct configurations and a margin."""
    pair = claim["equivalent"]
    if isinstance(pair, list):  # not a list, or items not mappings: the dataclass says so
        if len(pair) != 2:
            ck.error(f"{at}.equivalent", "expected two configurations, e.g. [{model.init: "
                                         f"he}}, {{model.init: xavier}}], found {len(pair)}")
        for j, selector in enumerate(pair):
            _check_selector(ck, raw, task_defaults, selector, f"{at}.equivalent[{j}]",
                            mapping_checked=True)
        if len(pair) == 2 and pair[0] == pair[1] and isinstance(pair[0], dict):
            ck.error(f"{at}.equivalent", f"expected two different configurations, found "
                                         f"{pair[0]} twice")
    if "within" not in claim:
        ck.error(f"{at}.within", "required with equivalent: the margin d in the metric's "
                                 "units, e.g. within: 0.01 for |A - B| < 0.01")


def _resolve_auto(backend: str, device: str) -> str:
    """'auto' becomes the device the trial will really run on, so that it is in the hash."""
    if device != "auto":
        return device
    if not backends.installed(backend):
        return "cpu"  # the preflight reports the missing framework
    return "gpu" if "gpu" in backends.load(backend).devices() else "cpu"


def flatten(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> dotted params, as strings (MLflow params are strings)."""
    out = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten(value, path))
        elif isinstance(value, list):
            out[path] = ",".join(v.get("name", str(v)) if isinstance(v, dict) else str(v)
                                 for v in value) or "none"
        else:
            out[path] = str(value)
    return out


def matches(selector: dict, row: dict) -> bool:
    """Whether a trial row (flat, dotted keys, strings) has every value of the selector."""
    for key, want in selector.items():
        got = row.get(key)
        if got is None or not _same(got, want):
            return False
    return True


def _same(got, want) -> bool:
    if isinstance(want, list):  # an augment list, as trials.csv writes it: "crop,noise"
        names = [w.get("name", str(w)) if isinstance(w, dict) else str(w) for w in want]
        want = ",".join(names) or "none"
    if isinstance(want, bool):
        return str(got).lower() == str(want).lower()
    if isinstance(want, (int, float)):
        try:
            return math.isclose(float(got), float(want), rel_tol=1e-12)
        except ValueError:
            return False
    return str(got) == str(want)


__all__ = ["Trial", "check_experiment", "flatten", "matches", "path_exists", "resolved",
           "trial_hash"]
