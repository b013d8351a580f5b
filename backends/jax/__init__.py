"""The JAX backend: jax.lax / jax.nn forward, jax.value_and_grad backward, optax updates.

Float64: JAX computes in float32 unless `jax_enable_x64` is set, and the flag is global and
best set before any array exists. Importing this package therefore sets it, once, for the
process; from then on an untyped `jnp.zeros(3)` would be float64, so this backend types every
array it creates (inputs, parameters, buffers, optimizer slots, masks) with the trainer's
dtype, and Python scalars stay weakly typed, so a float32 build computes and returns float32
(tests/test_jax_backend.py checks it). Step counters are int32.

The fused train step is always one `jax.jit` (forward, backward, optax update), so
`build(compile=...)` means nothing here and CAPABILITIES.compile is False.

Compiled programs persist across processes in JAX's compilation cache, in `<cache>/jax`
(`$HARNESS_CACHE`, else ~/.cache/harness; at most 2 GiB, least recently used dropped first),
so that a re-run, a second seed or a pool worker does not recompile a step it compiled
before (a 5-7 s compile per new sweep point on a 2-core CPU). A cached program is the same
XLA executable, so results are bit-identical with and without it (tests/test_jax_cache.py).
`JAX_COMPILATION_CACHE_DIR` set by the user wins; `HARNESS_JAX_CACHE=0` turns it off.
See https://docs.jax.dev/en/latest/persistent_compilation_cache.html.
"""

from __future__ import annotations

import os

import jax

jax.config.update("jax_enable_x64", True)  # before any array: see the module docstring

from ..base import Capabilities, cache_dir, check_device, check_dtype, cpu_name  # noqa: E402
from ..optim import OptimizerSpec  # noqa: E402
from ..spec import ModelSpec  # noqa: E402
from .trainer import JaxTrainer  # noqa: E402


def _persistent_cache() -> None:
    """Point JAX's persistent compilation cache at <cache>/jax unless told otherwise."""
    if os.environ.get("HARNESS_JAX_CACHE", "1") == "0":
        return
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)  # skip tiny jits
    jax.config.update("jax_compilation_cache_max_size", 2 << 30)


_persistent_cache()

NAME = "jax"
CAPABILITIES = Capabilities(float64=True, gpu=True, compile=False, native_rng=True)

__all__ = ["NAME", "CAPABILITIES", "build", "device_name", "devices"]


def devices() -> list[str]:
    """["cpu"], plus "gpu" when JAX sees one (a CUDA or ROCm jaxlib plugin and a device)."""
    present = ["cpu"]
    try:
        if jax.devices("gpu"):
            present.append("gpu")
    except RuntimeError:  # "Unknown backend: 'gpu' requested, but no platforms ..."
        pass
    return present


def device_name(device: str) -> str:
    """base.cpu_name() or the GPU's device_kind, e.g. "NVIDIA H200", for MLflow tags."""
    device = check_device(device, devices(), NAME)
    if device == "gpu":
        return jax.devices("gpu")[0].device_kind
    return cpu_name()


def build(spec: ModelSpec, params: dict, buffers: dict, optimizer: OptimizerSpec, *,
          device: str = "cpu", dtype: str = "float32", opt_state: dict | None = None,
          rng: str = "canonical", seed: int = 0, compile: bool = False) -> JaxTrainer:
    """A JaxTrainer from canonical state. device is cpu, gpu or auto; a gpu asked for and
    absent raises DeviceUnavailable before anything is built."""
    del compile  # the whole step is always one jax.jit: CAPABILITIES.compile is False
    device = check_device(device, devices(), NAME)
    check_dtype(dtype, CAPABILITIES, NAME)
    return JaxTrainer(spec, params, buffers, optimizer, device=device,
                      device_name=device_name(device), dtype=dtype, opt_state=opt_state,
                      rng=rng, seed=seed)
