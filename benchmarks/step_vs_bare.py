"""Each backend's training step beside a bare loop of its own framework (issue 3).

The backend's `Trainer.train_step` against benchmarks/bare.py's hand-written torch loop
(torch.nn model by hand, torch.optim.SGD) and jitted JAX step (value_and_grad + optax.sgd),
on the same model, weights and batch of 64. The target: a backend's step within 1.1x of
its bare loop. NumPy has no bare twin (the backend is the hand-written loop); its
samples/s stand beside the others'.

    asv run --python=same --bench step_vs_bare
    python -m benchmarks.step_vs_bare [--repeats 9]    # the markdown table of the README
"""

from __future__ import annotations

import functools

from . import bare
from .common import CLOCK, DEVICES, THREADS, limit_threads, paired, require
from .models import BATCH, MODELS
from .steps import make as backend_step
from .steps import measure as step_measure

TARGET = 1.1
BARE = {"torch": bare.torch_step, "jax": bare.jax_step}


@functools.cache
def make(name: str, backend: str, device: str):
    """(the backend's step, the bare step), both warmed up; NotImplementedError to skip."""
    if backend not in BARE:
        raise NotImplementedError(f"{backend} has no bare loop to compare with")
    step, _ = backend_step(name, backend, device)
    require(backend, device)
    plain = BARE[backend](name, device)
    for _ in range(3):
        plain()
    return step, plain


class StepVsBare:
    """The backend's step time over its bare loop's (1.0: no overhead; the target is 1.1)."""

    params = [list(MODELS), ["torch", "jax"], DEVICES]
    param_names = ["model", "backend", "device"]
    timeout = 180
    timer = CLOCK

    def setup(self, name, backend, device):
        self.step, self.plain = make(name, backend, device)
        limit_threads()

    def time_bare_step(self, name, backend, device):
        self.plain()

    def track_step_over_bare(self, name, backend, device):
        return paired(self.step, self.plain, repeats=7)[2]

    track_step_over_bare.unit = "ratio"


def measure(name: str, backend: str, device: str = "cpu", repeats: int = 7):
    """(backend samples/s, bare samples/s, median ratio backend/bare); None if skipped."""
    try:
        step, plain = make(name, backend, device)
    except NotImplementedError:
        return None
    t_step, t_bare, ratio = paired(step, plain, repeats)
    return BATCH / t_step, BATCH / t_bare, ratio


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="backend step vs bare framework loop")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    limit_threads()
    print(f"{args.device}, {THREADS or 'default'} thread(s), batch {BATCH}, samples/s "
          f"(median of {args.repeats}); ratio = backend step time / bare step time, "
          f"target <= {TARGET}\n")
    print("| model | numpy | torch | torch bare | torch ratio | jax | jax bare | jax ratio "
          "| fastest |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        bare.check(name)  # the hand-built models compute what the backends compute
        rates, cells = {}, []
        got = step_measure(name, "numpy", args.device, args.repeats)
        rates["numpy"] = got[1] if got else None
        cells.append("-" if rates["numpy"] is None else f"{rates['numpy']:.0f}")
        for backend in ("torch", "jax"):
            got = measure(name, backend, args.device, args.repeats)
            if got is None:
                cells += ["-"] * 3
                continue
            rates[backend] = got[0]
            flag = "" if got[2] <= TARGET else " **over**"
            cells += [f"{got[0]:.0f}", f"{got[1]:.0f}", f"{got[2]:.2f}{flag}"]
        fastest = max((r, b) for b, r in rates.items() if r is not None)[1]
        print(f"| {name} | " + " | ".join(cells) + f" | {fastest} |", flush=True)


if __name__ == "__main__":
    main()
