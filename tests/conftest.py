"""Shared test helpers: frameworks are optional, and tests that need one skip without it."""

import importlib.util

import pytest


def needs(module: str):
    """A skip marker for a test that needs `module` installed (CI installs them all)."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(missing, reason=f"{module} is not installed")
