"""The NumPy reference backend: every op's backward written out by hand (layers.py), CPU only.

Exports what backends/base.py asks of a backend: NAME, CAPABILITIES, devices(),
device_name(device) and build(...). Imports nothing but NumPy.
"""

from __future__ import annotations

from ..base import Capabilities, check_device, check_dtype, cpu_name
from ..optim import OptimizerSpec
from ..spec import ModelSpec
from .trainer import NumpyTrainer

NAME = "numpy"
CAPABILITIES = Capabilities(float64=True, gpu=False, compile=False, native_rng=True)

__all__ = ["NAME", "CAPABILITIES", "build", "device_name", "devices"]


def devices() -> list[str]:
    """["cpu"]: NumPy runs on the host only."""
    return ["cpu"]


def device_name(device: str) -> str:
    """base.cpu_name(), e.g. "cpu (AMD EPYC 7B13)", for MLflow tags."""
    check_device(device, devices(), NAME)
    return cpu_name()


def build(spec: ModelSpec, params: dict, buffers: dict, optimizer: OptimizerSpec, *,
          device: str = "cpu", dtype: str = "float32", opt_state: dict | None = None,
          rng: str = "canonical", seed: int = 0, compile: bool = False) -> NumpyTrainer:
    """A NumpyTrainer from canonical state. device is cpu, gpu or auto; a gpu asked for and
    absent raises DeviceUnavailable before anything is built."""
    del compile  # nothing to compile: CAPABILITIES.compile is False
    device = check_device(device, devices(), NAME)
    check_dtype(dtype, CAPABILITIES, NAME)
    return NumpyTrainer(spec, params, buffers, optimizer, device=device,
                        device_name=device_name(device), dtype=dtype, opt_state=opt_state,
                        rng=rng, seed=seed)
