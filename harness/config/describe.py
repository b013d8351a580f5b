"""`harness describe`: what an experiment file can say, generated from the schema the
validator checks against (nothing here is written twice): archs, tasks, optimizers,
augmentations, metrics, any dotted key; and `--schema`, a JSON Schema of the file for editors
(the YAML language server completes and checks keys with it).

A field's one-line doc is its comment in the source of its dataclass (harness/config/
schema.py, backends/archs.py `Knobs`, backends/optim.py `OptimizerSpec`), read with tokenize.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import tokenize
import types
import typing

from backends import archs
from backends.archs import ARCH_DEFAULTS, ARCHS
from backends.optim import OPTIMIZERS, OptimizerSpec
from harness.config import schema
from harness.data.augment.registry import AUGMENTATIONS, BOUNDS, CHOICES, SPATIAL_DIMS
from harness.data.tasks import TASKS
from harness.names import BACKENDS, DEVICES, METRICS

TOPICS = ("archs", "tasks", "optimizers", "augment", "metrics")


def field_docs(cls) -> dict[str, str]:
    """name -> the comment on (or just above) the field's line in the class's source."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        source = inspect.getsource(klass)
        comments = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("# ").strip()
        lines = source.splitlines()
        for f in dataclasses.fields(klass):
            for i, line in enumerate(lines, 1):
                if line.strip().startswith(f"{f.name}:"):
                    above = []
                    j = i - 1
                    while j in comments and lines[j - 1].strip().startswith("#"):
                        above.insert(0, comments[j])
                        j -= 1
                    out[f.name] = comments.get(i) or " ".join(above)
                    break
    return out


def _kind(hint) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_kind(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return "mapping"
    origin = typing.get_origin(hint) or hint
    return {bool: "true/false", int: "integer", float: "number", str: "name", dict: "mapping",
            tuple: "list"}.get(origin, getattr(origin, "__name__", str(origin)))


def _fields(cls, prefix: str) -> list[str]:
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.name == "options":
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "-")
        meta = f.metadata
        allowed = (f"one of {', '.join(map(str, meta['choices']))}" if meta.get("choices")
                   else f"{meta['check'][1]}" if meta.get("check") else "")
        rows.append(f"  {prefix}{f.name:<14} {_kind(hints[f.name]):<18} default "
                    f"{default!r:<12} {allowed:<28} {docs.get(f.name, '')}".rstrip())
    return rows


def describe(topic: str) -> str:
    """The text of `harness describe TOPIC` (a topic of TOPICS or a dotted key)."""
    if topic == "archs":
        lines = ["archs (model.arch): default depth and width, when model.depth/width are null"]
        table = {line.split()[0]: " ".join(line.split()[1:])  # backends/archs.py docstring
                 for line in (archs.__doc__ or "").splitlines()
                 if line.startswith("    ") and line.split() and line.split()[0] in ARCHS}
        for name in ARCHS:
            depth, width = ARCH_DEFAULTS[name]
            lines.append(f"  {name:<10} depth {depth!s:<5} width {width!s:<4} "
                         f"{table.get(name, '')}")
        return "\n".join(lines)
    if topic == "tasks":
        lines = ["tasks (task.name): kind, loss, metrics and options with their defaults"]
        for name, info in TASKS.items():
            sizes = info.filled({})  # what a None stands for: digits' n_train None is 1200
            opts = ", ".join(f"{k}={v!r}" + (f" (all {sizes[k]})" if v is None else "")
                             for k, v in info.options.items()) or "none"
            fixed = {k: v for k, v in sizes.items() if k not in info.options}
            splits = f"; fixed: {', '.join(f'{k}={v}' for k, v in fixed.items())}" \
                if fixed else ""
            lines += [f"  {name:<9} {info.kind}, {info.loss}, {', '.join(info.metrics)}: "
                      f"{info.description}", f"  {'':<9} options: {opts}{splits}"]
        return "\n".join(lines)
    if topic == "optimizers":
        return "\n".join([f"optimizers (optimizer.name): {', '.join(OPTIMIZERS)}; the rules "
                          "and their defaults: backends/optim.py and README", "optimizer:",
                          *_fields(OptimizerSpec, "")])
    if topic == "augment":
        lines = ["augment: names, or {name: ..., param: value}, applied in order"]
        for name, aug in AUGMENTATIONS.items():
            dims = SPATIAL_DIMS[name]
            params = ", ".join(f"{k}={v!r}" + (f" in {BOUNDS[name][k]}" if k in BOUNDS[name]
                                                else "") +
                               (f" of {CHOICES[name][k]}" if k in CHOICES[name] else "")
                               for k, v in aug.defaults.items())
            doc = (aug.fn.__doc__ or "").strip().splitlines()[0]
            spatial = "any" if dims is None else "/".join(map(str, dims))
            lines += [f"  {name:<11} {spatial} spatial axes; {params}", f"  {'':<11} {doc}"]
        return "\n".join(lines)
    if topic == "metrics":
        return "metrics (claims' metric, tune.metric, target.metric):\n" + "\n".join(
            f"  {m}" for m in METRICS)
    return _key(topic)


def _key(path: str) -> str:
    """One dotted key: its type, default, allowed values and doc."""
    cls, parts = schema.Experiment, path.split(".")
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            near = [t for t in (*TOPICS, *fields) if t.startswith(part[:2])]
            raise KeyError(f"no key {path!r} (topics: {', '.join(TOPICS)}; keys of "
                           f"{'.'.join(parts[:depth]) or 'the file'}: {', '.join(fields)})"
                           + (f"; near: {', '.join(near)}" if near else ""))
        hint = typing.get_type_hints(cls)[part]
        args = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        inner = hint if dataclasses.is_dataclass(hint) else (args[0] if args else None)
        if depth == len(parts) - 1:
            rows = [r for r in _fields(cls, ".".join(parts[:-1]) + "." if depth else "")
                    if r.split()[0].endswith(part)]
            more = _fields(inner, f"{path}.") if inner is not None else []
            return "\n".join([*rows, *more])
        if inner is None:
            raise KeyError(f"{'.'.join(parts[:depth + 1])!r} has no keys below it")
        cls = inner
    return ""


def _json(hint, meta=None) -> dict:
    """A JSON Schema for one type hint of the schema's dataclasses."""
    meta = meta or {}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return {"anyOf": [_json(a, meta) for a in typing.get_args(hint)]}
    if hint is type(None):
        return {"type": "null"}
    if dataclasses.is_dataclass(hint):
        return dataclass_schema(hint)
    origin = typing.get_origin(hint) or hint
    out = {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
           str: {"type": "string"}, dict: {"type": "object"}}.get(origin)
    if origin is tuple:
        args = typing.get_args(hint)
        out = {"type": "array", **({"items": _json(args[0])} if args else {})}
    out = dict(out or {})
    if meta.get("choices"):
        out["enum"] = list(meta["choices"])
    return out


def dataclass_schema(cls) -> dict:
    docs, hints = field_docs(cls), typing.get_type_hints(cls)
    props = {}
    for f in dataclasses.fields(cls):
        if f.name == "options":
            continue
        props[f.name] = {**_json(hints[f.name], f.metadata),
                         **({"description": docs[f.name]} if docs.get(f.name) else {})}
    return {"type": "object", "properties": props, "additionalProperties": False}


def json_schema() -> dict:
    """The experiment file as JSON Schema (draft 2020-12): unknown keys are refused, names
    are enums. What it cannot say (ranges, a claim's paths) the validator still checks."""
    out = dataclass_schema(schema.Experiment)
    props = out["properties"]
    options = {k: {} for info in TASKS.values() for k in info.options}
    props["task"] = {"type": "object", "required": ["name"], "additionalProperties": False,
                     "properties": {"name": {"enum": list(TASKS)}, **options}}
    op = {"anyOf": [{"enum": list(AUGMENTATIONS)},
                    {"type": "object", "required": ["name"],
                     "properties": {"name": {"enum": list(AUGMENTATIONS)}}}]}
    props["augment"] = {"type": "array", "items": op}
    props["seeds"] = {"anyOf": [{"type": "array", "items": {"type": "integer"}},
                                dataclass_schema(schema.SeedRounds)]}
    props["backends"]["items"] = {"enum": list(BACKENDS)}
    props["devices"]["items"] = {"enum": list(DEVICES)}
    props["sweep"] = {"type": "object", "additionalProperties": {"type": "array"}}
    props.pop("seed_rounds")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "harness experiment", "required": ["name"], **out}
