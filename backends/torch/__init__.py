"""The PyTorch backend: the model spec as torch.nn modules, trained with torch.optim.

Exports what backends/base.py asks of every backend: NAME, CAPABILITIES, devices(),
device_name(device) and build(...). Importing this package imports torch; nothing
backend-neutral does (SPEC 3).
"""

from __future__ import annotations

import torch

from ..base import Capabilities, check_device, check_dtype, cpu_name
from ..optim import OptimizerSpec
from ..spec import ModelSpec
from .trainer import TorchTrainer

NAME = "torch"
CAPABILITIES = Capabilities(float64=True, gpu=True, compile=True, native_rng=True)

__all__ = ["NAME", "CAPABILITIES", "build", "device_name", "devices"]


def devices() -> list[str]:
    """["cpu"], plus "gpu" when torch sees a CUDA device."""
    if torch.cuda.is_available():
        return ["cpu", "gpu"]
    return ["cpu"]


def device_name(device: str) -> str:
    """base.cpu_name() or the CUDA device's name, e.g. "NVIDIA H200", for MLflow tags."""
    device = check_device(device, devices(), NAME)
    if device == "gpu":
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return cpu_name()


def build(spec: ModelSpec, params: dict, buffers: dict, optimizer: OptimizerSpec, *,
          device: str = "cpu", dtype: str = "float32", opt_state: dict | None = None,
          rng: str = "canonical", seed: int = 0, compile: bool = False) -> TorchTrainer:
    """A TorchTrainer from canonical state. device is cpu, gpu or auto; a gpu asked for and
    absent raises DeviceUnavailable before anything is built."""
    device = check_device(device, devices(), NAME)
    check_dtype(dtype, CAPABILITIES, NAME)
    if device == "gpu":  # TF32 would round matmuls and convs to 10 mantissa bits: not the
        torch.backends.cuda.matmul.allow_tf32 = False  # canonical float32 math
        torch.backends.cudnn.allow_tf32 = False
    return TorchTrainer(spec, params, buffers, optimizer, device=device,
                        device_name=device_name(device), dtype=dtype, opt_state=opt_state,
                        rng=rng, seed=seed, compile=compile)
