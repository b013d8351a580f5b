"""The asv benchmark suite and the CI regression gate (benchmarks/README.md, "Performance").

asv imports this package by its folder, not as an installed one; in a checkout that is not
pip-installed, the repository root goes on sys.path so that `backends` and `harness` import.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("backends") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
