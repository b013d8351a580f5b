"""Strict reading of experiment files: every error, at once, with file, key path and a hint.

YAML is read with a safe loader (no tag ever constructs a Python object) that also reads
`1e-3` as a number, as a user means it (PyYAML's YAML 1.1 resolver wants `1.0e-3`). The
mapping then fills in the dataclasses of `harness.config.schema` field by field; nothing is checked
with `assert`. Unknown keys get a did-you-mean from difflib, as do unknown names.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path

import yaml

from harness.config import schema
from harness.errors import ConfigError, ConfigErrors, describe, suggest


class _Loader(yaml.SafeLoader):
    pass


# YAML 1.2's float, which accepts 1e-3 and 1E+5 (PyYAML's 1.1 pattern wants a dot).
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _duplicate_keys(node, source: str, path: str = "") -> list[ConfigError]:
    """Every key given twice in one mapping, at any depth, with both lines.

    PyYAML keeps the last of two equal keys without a word, so `lr: 0.1` ... `lr: 0.5`
    would train at 0.5 (YAML 1.2 says keys are unique; the composed node tree still has both).
    """
    errors = []
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
            child = f"{path}.{name}" if path else (name or "")
            if name is not None and name != "<<":  # '<<' is a merge, which may repeat keys
                line = key.start_mark.line + 1
                if (key.tag, name) in seen:
                    where = (f"twice on line {line}" if seen[key.tag, name] == line else
                             f"twice, on line {seen[key.tag, name]} and line {line}")
                    errors.append(ConfigError(source, child,
                                              f"key {name!r} is given {where}; keep one"))
                seen.setdefault((key.tag, name), line)
            errors += _duplicate_keys(value, source, child)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            errors += _duplicate_keys(item, source, f"{path}[{i}]")
    return errors


def parse_yaml(text: str, source: str):
    """Parse YAML text safely; a syntax error, a Python tag or a key given twice in one
    mapping becomes a ConfigError (all duplicates at once)."""
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            duplicates = _duplicate_keys(node, source)
            if duplicates:
                raise ConfigErrors(duplicates)
            return None if node is None else loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigErrors([ConfigError(source, where, f"YAML error: {problem}")]) from None


def load_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigErrors([ConfigError(str(path), "", "no such file")])
    raw = parse_yaml(path.read_text(), str(path))
    if not isinstance(raw, dict):
        raise ConfigErrors([ConfigError(str(path), "", "expected a mapping of keys at the top "
                                        f"level, found {describe(raw)}")])
    return raw


# ----------------------------------------------------------------------------- paths


def split_path(path: str) -> list[str]:
    return [p for p in path.split(".") if p]


def get_path(raw: dict, path: str, default=None):
    node = raw
    for key in split_path(path):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def set_path(raw: dict, path: str, value) -> dict:
    """A copy of `raw` with the value at the dotted path replaced (parents created)."""
    raw = copy.deepcopy(raw)
    node = raw
    keys = split_path(path)
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = copy.deepcopy(value)
    return raw


def _join(key: str, path: str) -> str:
    if not path or path.startswith("line "):
        return key
    return f"{key}{path}" if path.startswith("[") else f"{key}.{path}"


def apply_overrides(raw: dict, overrides: list[str]) -> tuple[dict, dict[str, str]]:
    """Apply `--set key=value` overrides (values read as YAML); returns (raw, path -> source)."""
    sources, errors = {}, []
    for item in overrides:
        source = f"--set {item}"
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            errors.append(ConfigError(source, "", "expected KEY=VALUE, e.g. train.epochs=1"))
            continue
        try:
            value = parse_yaml(text, source) if text.strip() else ""
        except ConfigErrors as exc:  # paths inside the value are relative to the key
            errors += [dataclasses.replace(e, path=_join(key.strip(), e.path))
                       for e in exc.errors]
            continue
        raw = set_path(raw, key.strip(), value)
        sources[key.strip()] = source
    if errors:
        raise ConfigErrors(errors)
    return raw, sources


# ----------------------------------------------------------------------------- checking


BAD = object()  # what a check returns for a value it recorded an error for


class Checker:
    """Fills dataclasses from mappings and collects every error with its path."""

    def __init__(self, source: str, sources: dict[str, str] | None = None):
        self.source = source
        self.sources = sources or {}  # override path -> "--set ..." for better attribution
        self.errors: list[ConfigError] = []

    def error(self, path: str, message: str) -> None:
        source = self.source
        for prefix, origin in self.sources.items():
            if path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "["):
                source = origin
        self.errors.append(ConfigError(source, path, message))

    def add(self, errors: list[ConfigError]) -> None:
        """Errors from a checker that knows no file (a task's, the augmentations')."""
        for e in errors:
            self.error(e.path, e.message)

    def wrong(self, path: str, expected: str, value):
        self.error(path, f"expected {expected}, found {describe(value)}")
        return BAD

    def value(self, hint, value, path: str, meta=None):
        """Check one value against a type hint: the converted value, or BAD."""
        meta = meta or {}
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = typing.get_args(hint)
            if value is None and type(None) in args:
                return None
            hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
        if dataclasses.is_dataclass(hint):
            return self.dataclass(hint, value, path)
        if hint is bool and not isinstance(value, bool):
            return self.wrong(path, "true or false", value)
        if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
            return self.wrong(path, "an integer", value)
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return self.wrong(path, "a number", value)
            value = float(value)
        if hint is str and not isinstance(value, str):
            return self.wrong(path, "a string", value)
        if (hint is dict or origin is dict) and not isinstance(value, dict):
            return self.wrong(path, "a mapping", value)
        if hint is tuple or origin is tuple:
            if not isinstance(value, list):
                return self.wrong(path, "a list", value)
            args = typing.get_args(hint)
            if args:
                items = tuple(self.value(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
                return BAD if any(v is BAD for v in items) else items
            return tuple(value)
        choices = meta.get("choices")
        if choices and value not in choices:
            self.error(path, f"expected one of {', '.join(map(str, choices))}; found "
                             f"{value!r}{suggest(value, choices)}")
            return BAD
        if "check" in meta and value is not None:
            predicate, words = meta["check"]
            if not predicate(value):
                self.error(path, f"expected a value {words}, found {value!r}")
                return BAD
        return value

    def dataclass(self, cls, raw, path: str, extra_ok: bool = False):
        """An instance of `cls` from the mapping `raw`, or BAD. Unknown keys are errors
        unless `extra_ok` (the caller then checks them itself)."""
        if not isinstance(raw, dict):
            return self.wrong(path, f"a mapping of {cls.__name__} keys", raw)
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        known = [n for n in fields if not (cls is schema.TaskConfig and n == "options")]
        values = {}
        for key, value in raw.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in known:
                values[key] = self.value(hints[key], value, sub, fields[key].metadata)
            elif not extra_ok:
                self.error(sub, f"unknown key{suggest(key, known)} (known keys: "
                                f"{', '.join(known)})")
        if any(v is BAD for v in values.values()):
            return BAD
        return cls(**values)
