"""Dataclass fields that carry their allowed values: one declaration for the spec and for the
experiment file's checker.

`Knobs` (backends/archs.py) and `OptimizerSpec` (backends/optim.py) declare each knob once,
with its default and its range; harness's config schema builds on those very classes, and
its checker reads `metadata["choices"]` (the allowed names) and `metadata["check"]` (a
predicate and the words that describe it) to report a value outside them.
"""

from __future__ import annotations

from dataclasses import field


def choice(default, choices, doc: str = ""):
    """A field whose value must be one of `choices`."""
    return field(default=default, metadata={"choices": tuple(choices), "doc": doc})


def checked(default, predicate, words: str):
    """A field whose value must satisfy `predicate`, described as `words` ("> 0")."""
    return field(default=default, metadata={"check": (predicate, words)})


def positive(x) -> bool:
    return x > 0


def non_negative(x) -> bool:
    return x >= 0


def unit_interval(x) -> bool:  # [0, 1)
    return 0 <= x < 1


def at_least(n):
    return lambda x: x >= n
