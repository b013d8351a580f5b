"""The NumPy reference backend: every op's backward written out by hand (nn.py), CPU only.

Exports what backends/base.py asks of a backend: NAME, CAPABILITIES, devices(),
device_name(device) and build(...). Imports nothing but NumPy.
"""

from __future__ import annotations

import platform

from ..base import Capabilities, check_device, check_dtype
from .trainer import NumpyTrainer

NAME = "numpy"
CAPABILITIES = Capabilities(float64=True, gpu=False, compile=False, native_rng=True)

__all__ = ["NAME", "CAPABILITIES", "NumpyTrainer", "build", "device_name", "devices"]


def devices() -> list[str]:
    return ["cpu"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """The CPU's model name, e.g. "cpu (AMD EPYC)"."""
    check_device(device, devices(), NAME)
    return f"cpu ({_cpu_model()})"


def build(spec, params, buffers, optimizer, *, device="cpu", dtype="float32", opt_state=None,
          rng="canonical", seed=0, compile=False) -> NumpyTrainer:
    """A NumpyTrainer on a copy of the canonical params, buffers and optimizer state.

    seed seeds the native dropout generator (rng="native"); with rng="canonical" the caller
    passes every dropout mask and seed is unused.
    """
    del compile  # nothing to compile: CAPABILITIES.compile is False
    device = check_device(device, devices(), NAME)
    np_dtype = check_dtype(dtype, CAPABILITIES, NAME)
    return NumpyTrainer(spec, params, buffers, optimizer, device=device,
                        device_name=device_name(device), dtype=np_dtype, opt_state=opt_state,
                        rng=rng, seed=seed)
