"""The backend protocol (SPEC 4.2): what every backend offers the runner and the tests.

A backend is a sub-package `backends/<name>/` with the same file names in each and, in
`nn.py` and `optim.py`, the same public names (tests/test_mirror.py holds them to it):

    __init__.py   NAME: str                   "numpy", "torch" or "jax"
                  CAPABILITIES: Capabilities  what it can do; tests skip on a False flag
                  devices() -> list[str]      the devices present, e.g. ["cpu", "gpu"]
                  device_name(device) -> str  the real name: "cpu (x86_64)", "NVIDIA H200"
                  build(spec, params, buffers, optimizer, *, device="cpu", dtype="float32",
                        opt_state=None, rng="canonical", seed=0, compile=False) -> Trainer
    layers.py     one implementation per spec layer, in the framework's own idiom: NumPy's
                  hand-written forward/backward pairs, torch.nn modules, jax.lax functions
                  (the one file whose names differ, because that is where the three do)
    nn.py         build(spec, params, buffers, ...)   the native model from canonical arrays
                  apply(spec, model, buffers, x, train, masks, outputs)   the forward pass
                  loss(name, out, y)                  the mean loss
    optim.py      build(spec, params) -> state        fresh state, every slot zero
                  load_state(spec, params, state)     canonical state -> native state
                  export_state(spec, params, state)   native state -> canonical state
                  step(spec, params, grads, state) -> (params, state)   one canonical update
    trainer.py    the Trainer below, over those

Arrays cross the boundary as NumPy arrays in canonical form (see backends/init.py): inputs
x (N, *spec.input_shape); targets y (N,) int64 class labels for cross_entropy, or float
(N, *spec.output_shape) for mse and l1; dropout masks as `spec.dropout_masks` draws them.
Canonical state that does not fit the spec raises `StateError`, with the same message from
every backend: the checks below are written once, here, and every backend calls them.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .optim import SLOTS, OptimizerSpec
from .spec import LOSSES, ModelSpec

Arrays = dict[str, np.ndarray]


class DeviceUnavailable(RuntimeError):
    """A device was asked for that this backend or machine does not have."""


class StateError(ValueError):
    """Canonical state that does not fit the spec: missing, unexpected or misshapen params,
    buffers, gradients, optimizer slots or dropout masks. Every backend raises this one type,
    with the one message of the check below that found it."""


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


def cache_dir() -> Path:
    """`$HARNESS_CACHE`, else `~/.cache/harness` (never the repo): generated task data and
    JAX's compiled programs live here."""
    env = os.environ.get("HARNESS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "harness"


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


def check_rng(rng: str) -> None:
    if rng not in ("canonical", "native"):
        raise ValueError(f"rng must be 'canonical' or 'native', got {rng!r}")


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")


# ----------------------------------------------------------------------------- state


def check_arrays(what: str, given, shapes: dict, *, ignore=()) -> None:
    """`given` has exactly the keys of `shapes`, each of its shape; StateError if not.

    what names the arrays in the message ("params", "optimizer slot 'v'"); keys in `ignore`
    are tolerated beside them (torch's own `num_batches_tracked`). Any array type with a
    .shape passes: NumPy, torch, jax.
    """
    missing = [k for k in shapes if k not in given]
    unexpected = sorted(k for k in given if k not in shapes and k not in ignore)
    if missing or unexpected:
        raise StateError(f"{what}: missing {missing}, unexpected {unexpected}")
    for k, shape in shapes.items():
        got = tuple(np.shape(given[k]))
        if got != tuple(shape):
            raise StateError(f"{k!r} in {what}: shape {got}, expected {tuple(shape)}")


def check_opt_state(spec: OptimizerSpec, state, shapes: dict) -> None:
    """{"step": t >= 0, "slots": {slot: {path: array}}} with the rule's slots (backends/optim.py
    SLOTS), each keyed and shaped like the params; StateError if not."""
    if not isinstance(state, dict) or set(state) != {"step", "slots"}:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise StateError(f"optimizer state: expected keys ['slots', 'step'], got {got}")
    step = state["step"]
    if not (np.ndim(step) == 0 and np.issubdtype(np.asarray(step).dtype, np.integer)
            and step >= 0):
        raise StateError(f"optimizer state: step must be an integer >= 0, got {step!r}")
    want = list(SLOTS[spec.name])
    if sorted(state["slots"]) != sorted(want):
        raise StateError(f"optimizer {spec.name!r} keeps slots {want}, the state has "
                         f"{list(state['slots'])}")
    for slot in want:
        check_arrays(f"optimizer slot {slot!r}", state["slots"][slot], shapes)


def missing_mask(path: str, p: float, shape: tuple) -> StateError:
    """The error for a training pass that reaches dropout layer `path` without its mask."""
    return StateError(f"dropout layer {path!r} (p={p}) needs a keep-mask of shape "
                      f"{tuple(shape)} in training mode: with rng='canonical' the caller "
                      "passes masks (see backends.spec.dropout_masks)")


def check_masks(dropouts: list, masks, batch: int, *, native: bool) -> None:
    """The masks of one training pass; StateError unless they fit.

    dropouts is `spec.dropout_layers(spec)`, [(path, p, input shape)]. masks None is fine
    with rng='native' (the backend draws them) or without dropout; masks given must be one
    (batch, *input shape) keep-mask per dropout layer, no more, no fewer: a wrong shape
    would broadcast silently.
    """
    if masks is None:
        if dropouts and not native:
            path, p, shape = dropouts[0]
            raise missing_mask(path, p, (batch, *shape))
        return
    paths = [path for path, _, _ in dropouts]
    unexpected = sorted(k for k in masks if k not in paths)
    if unexpected:
        raise StateError(f"masks for {unexpected}: not dropout layers (p > 0) of the spec, "
                         f"which has {paths}")
    for path, p, shape in dropouts:
        if path not in masks:
            raise missing_mask(path, p, (batch, *shape))
        got = tuple(np.shape(masks[path]))
        if got != (batch, *shape):
            raise StateError(f"dropout layer {path!r}: mask shape {got}, expected "
                             f"{(batch, *shape)}")


# ----------------------------------------------------------------------------- batches


def check_input(x, input_shape: tuple) -> None:
    """x (N, *input_shape); ValueError if not."""
    if tuple(np.shape(x))[1:] != tuple(input_shape):
        raise ValueError(f"input shape {tuple(np.shape(x))}: expected (N, *{tuple(input_shape)})")


def check_targets(y, n: int, output_shape: tuple, loss: str) -> None:
    """y (n,) class labels for cross_entropy, else (n, *output_shape); ValueError if not."""
    want = (n,) if loss == "cross_entropy" else (n, *output_shape)
    if tuple(np.shape(y)) != want:
        what = "labels" if loss == "cross_entropy" else "targets"
        raise ValueError(f"{what} shape {tuple(np.shape(y))}: expected {want}")
