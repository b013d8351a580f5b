"""Training-step throughput and model FLOPs utilisation per architecture, backend and device.

One `Trainer.train_step` (forward, backward, SGD update, the loss back on the host) of the
models in benchmarks/models.py on a batch of 64. MFU is the step's analytic matrix-product
FLOPs (benchmarks/flops.py) over its time, as a fraction of the sgemm roofline measured in
the same process, the two timed alternately.

    asv run --python=same --bench steps
    python -m benchmarks.steps          # the markdown table of benchmarks/README.md
"""

from __future__ import annotations

import functools

from . import flops
from .common import (
    BACKENDS,
    CLOCK,
    DEVICES,
    THREADS,
    limit_threads,
    median_seconds,
    paired,
    require,
    sgemm,
)
from .models import BATCH, MODELS, batch, spec_for, trainer


@functools.cache
def make(name: str, backend: str, device: str):
    """(a zero-argument train step on the model's batch, its matrix-product FLOPs); cached so
    that asv's setup, rerun before every timed call, builds and compiles only once."""
    module = require(backend, device)
    t = trainer(name, module, device)
    x, y = batch(name)
    step = functools.partial(t.train_step, x, y)
    for _ in range(3):  # compile (jax), allocate, warm the caches
        step()
    return step, flops.train_step(spec_for(name), BATCH)


class TrainStep:
    """samples/s and MFU of one training step, per model, backend and device."""

    params = [list(MODELS), BACKENDS, DEVICES]
    param_names = ["model", "backend", "device"]
    timeout = 180
    timer = CLOCK

    def setup(self, name, backend, device):
        self.step, self.flops = make(name, backend, device)
        self.device = device
        limit_threads()

    def time_train_step(self, name, backend, device):
        self.step()

    def track_samples_per_s(self, name, backend, device):
        return BATCH / median_seconds(self.step)

    track_samples_per_s.unit = "samples/s"

    def track_mfu(self, name, backend, device):
        roof, roof_flops = sgemm(self.device)
        _, _, ratio = paired(self.step, roof)
        return (self.flops / roof_flops) / ratio

    track_mfu.unit = "fraction of sgemm"


def measure(name, backend, device, repeats=5):
    """(ms per step, samples/s, MFU) from one interleaved measurement; None if skipped."""
    try:
        step, step_flops = make(name, backend, device)
    except NotImplementedError:
        return None
    roof, roof_flops = sgemm(device)
    t, _, ratio = paired(step, roof, repeats)
    return 1e3 * t, BATCH / t, (step_flops / roof_flops) / ratio


def main(argv=None) -> None:
    import argparse

    from .common import roofline_gflops

    ap = argparse.ArgumentParser(description="samples/s and MFU per model and backend")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    limit_threads()
    print(f"{args.device}, {THREADS or 'default'} thread(s), batch {BATCH}; roofline "
          f"{roofline_gflops(args.device, args.repeats):.1f} GFLOP/s\n")
    heads = " | ".join(f"{b} ms | {b} samples/s | {b} MFU" for b in BACKENDS)
    print(f"| model | GFLOP/step | {heads} |")
    print("|---|---|" + "---|---|---|" * len(BACKENDS))
    for name in MODELS:
        cells = []
        for backend in BACKENDS:
            got = measure(name, backend, args.device, args.repeats)
            cells += ["-"] * 3 if got is None else [f"{got[0]:.2f}", f"{got[1]:.0f}",
                                                     f"{got[2]:.3f}"]
        gflop = flops.train_step(spec_for(name), BATCH) / 1e9
        print(f"| {name} | {gflop:.4f} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
