"""The backend protocol (SPEC 4.2): what every backend offers the runner and the tests.

A backend is a sub-package `backends/<name>/` with the same file names in each
(`__init__.py`, `nn.py`, `optim.py`, `trainer.py`) that exports:

    NAME: str                         "numpy", "torch" or "jax"
    CAPABILITIES: Capabilities        what it can do; tests skip on a False flag
    devices() -> list[str]            the devices present, e.g. ["cpu"] or ["cpu", "gpu"]
    device_name(device) -> str        the real name: "cpu (x86_64)", "NVIDIA H200"
    build(spec, params, buffers, optimizer, *, device="cpu", dtype="float32",
          opt_state=None, rng="canonical", seed=0, compile=False) -> Trainer

Arrays cross the boundary as NumPy arrays in canonical form (see backends/init.py): inputs
x (N, *spec.input_shape); targets y (N,) int64 class labels for cross_entropy, or float
(N, *spec.output_shape) for mse and l1; dropout masks as `spec.dropout_masks` draws them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from .optim import OptimizerSpec
from .spec import ModelSpec

Arrays = dict[str, np.ndarray]


class DeviceUnavailable(RuntimeError):
    """A device was asked for that this backend or machine does not have."""


@dataclass(frozen=True)
class Capabilities:
    float64: bool  # can build with dtype="float64"
    gpu: bool  # can run on a GPU when one is present
    compile: bool  # build(compile=True) means something (torch.compile)
    native_rng: bool  # rng="native": draws dropout masks with the framework's generator


class Trainer(abc.ABC):
    """A trainable model on one backend and device, built from canonical state.

    Modes: `train` uses batch statistics in BatchNorm and applies dropout masks; evaluation
    uses running statistics and no dropout. Only `loss_and_grads` and `train_step` change
    the BatchNorm running statistics (as one training forward pass does in torch);
    `forward` never changes any state.
    """

    backend: str  # the backend's NAME
    device: str  # "cpu" or "gpu"
    device_name: str  # the real device, for MLflow tags
    dtype: str  # "float32" or "float64"
    spec: ModelSpec
    optimizer: OptimizerSpec

    @abc.abstractmethod
    def forward(self, x: np.ndarray, *, train: bool = False,
                masks: Arrays | None = None) -> np.ndarray:
        """Outputs (N, *spec.output_shape). Pure: no running statistics are updated."""

    @abc.abstractmethod
    def probe(self, x: np.ndarray, y: np.ndarray | None = None, *, train: bool = True,
              masks: Arrays | None = None) -> tuple[Arrays, np.ndarray | None]:
        """(outputs, input gradient): what one pass sees inside the model. Pure, as `forward`.

        outputs maps every leaf's path (spec.layers(), forward order) to its output
        (N, *leaf output shape); an identity leaf (dropout in evaluation) maps to its input.
        With targets y, the second item is d(mean loss)/dx (N, *spec.input_shape), else None.
        For harness/diagnostics.py and harness/check.py.
        """

    @abc.abstractmethod
    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """(mean loss, outputs) in evaluation mode."""

    @abc.abstractmethod
    def loss_and_grads(self, x: np.ndarray, y: np.ndarray,
                       masks: Arrays | None = None) -> tuple[float, Arrays]:
        """(mean loss, canonical gradients of the trainable params) in training mode.

        Updates the BatchNorm running statistics; does not step the optimizer.
        """

    @abc.abstractmethod
    def apply_gradients(self, grads: Arrays) -> None:
        """One canonical optimizer step (backends/optim.py) with the given gradients."""

    @abc.abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray, masks: Arrays | None = None) -> float:
        """Fused forward, backward and update; returns the loss before the update."""

    @abc.abstractmethod
    def params(self) -> Arrays:
        """Trainable parameters in canonical form (copies): canonical names and layouts, in
        the dtype the trainer was built with (float32 unless built with float64)."""

    @abc.abstractmethod
    def buffers(self) -> Arrays:
        """BatchNorm running statistics in canonical form (copies)."""

    @abc.abstractmethod
    def opt_state(self) -> dict:
        """{"step": t, "slots": {slot: {path: array}}} as backends/optim.py defines it."""


def cpu_name() -> str:
    """The CPU's model name, the same string from every backend: 'cpu (AMD EPYC 7B13)'."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"cpu ({line.split(':', 1)[1].strip()})"
    except OSError:
        pass
    return f"cpu ({platform.processor() or platform.machine()})"


def check_dtype(dtype: str, caps: Capabilities, name: str) -> np.dtype:
    if dtype == "float64" and not caps.float64:
        raise NotImplementedError(f"backend {name} has no float64")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return np.dtype(dtype)


def check_device(device: str, present: list[str], name: str) -> str:
    """The device to use for a request of cpu, gpu or auto; DeviceUnavailable if absent."""
    if device == "auto":
        return "gpu" if "gpu" in present else "cpu"
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be cpu, gpu or auto, got {device!r}")
    if device not in present:
        raise DeviceUnavailable(f"backend {name}: device {device!r} asked for but not present "
                                f"(present: {', '.join(present)})")
    return device
