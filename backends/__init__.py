"""Backends: the model spec, canonical parameters and optimizers, and three implementations.

`backends.spec`, `backends.init`, `backends.archs` and `backends.optim` are backend-neutral
and import only NumPy. A framework is imported only when its backend is loaded:
`backends.load("torch")` imports torch, `backends.load("numpy")` nothing new.
"""

from __future__ import annotations

import importlib
import importlib.util

BACKENDS = ("numpy", "torch", "jax")
FRAMEWORK = {"numpy": "numpy", "torch": "torch", "jax": "jax"}  # what each needs installed


def installed(name: str) -> bool:
    """Whether the backend's framework can be imported, without importing it."""
    return importlib.util.find_spec(FRAMEWORK[name]) is not None


def load(name: str):
    """The backend module `backends.<name>` (see backends/base.py for what it exports)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    return importlib.import_module(f"backends.{name}")
