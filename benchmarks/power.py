"""The power of a seeds-until-decided design, before its run: simulated files of paired
claims through the real stopping rule (harness/verdicts/sequential.py), the claims of one
file judged together with Holm's share, as `harness run` judges them.

    python benchmarks/power.py --max 21 --round 2 --diff 0.008 0.006 --std 0.044 0.053 \
        --within 0.05                          # two equivalences: A within 0.05 of B
    python benchmarks/power.py --max 99 --round 4 --diff -0.007 --std 0.0226 \
        --by-at-least 0                        # one "A beats B" claim (--lower: a loss)

Not a speed benchmark: it prints the share of claims each verdict takes and the seeds a side
the file used on average. Each claim's per-seed difference A - B is normal with the given
mean and std (the paired spread measured by an earlier run); upsampling.yaml's redesign 2
and augmentation.yaml's redesign 3 chose their maxima with it.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from harness.config.schema import Claim
from harness.verdicts.sequential import SequentialPlan, replay


def simulate(plan: SequentialPlan, diffs, stds, files: int, within: float | None = None,
             by_at_least: float = 0.0, higher: bool = True, seed: int = 5):
    """(share of each verdict over every claim, mean seeds a side per file): equivalence
    claims where `within` is given, else "A beats B by_at_least"."""
    def claim(i):
        if within is not None:
            return Claim(equivalent=[{"arm": f"a{i}"}, {"arm": "b"}], metric="m",
                         paired=True, within=within, higher_is_better=higher)
        return Claim(better={"arm": f"a{i}"}, than={"arm": "b"}, metric="m", paired=True,
                     by_at_least=by_at_least, higher_is_better=higher)

    claims = [claim(i) for i in range(len(diffs))]
    rng = np.random.default_rng(seed)
    n = plan.max_seeds
    verdicts, seeds = Counter(), []
    for _ in range(files):
        values = {"b": rng.normal(size=n)}  # (n,) the shared arm; only differences matter
        for i, (d, s) in enumerate(zip(diffs, stds)):
            values[f"a{i}"] = values["b"] + d + s * rng.normal(size=n)
        rows = [{"arm": arm, "backend": "torch", "device": "cpu", "seed": str(k),
                 "status": "finished", "m": str(v[k])}
                for arm, v in values.items() for k in range(n)]
        judged = replay(plan, claims, rows)  # every look in turn, as `harness run` judges
        verdicts.update(v.verdict for v in judged)
        seeds.append(max(len(v.better) for v in judged))  # the last look's seeds a side
    total = sum(verdicts.values())
    return {k: verdicts[k] / total for k in ("PASS", "FAIL", "INCONCLUSIVE")}, np.mean(seeds)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--min", type=int, default=3)
    ap.add_argument("--max", type=int, required=True)
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--diff", type=float, nargs="+", required=True, help="mean A - B, a claim")
    ap.add_argument("--std", type=float, nargs="+", required=True, help="its per-seed std")
    kind = ap.add_mutually_exclusive_group(required=True)
    kind.add_argument("--within", type=float, help="equivalence claims, with this margin")
    kind.add_argument("--by-at-least", type=float, help="'A beats B' claims, this margin")
    ap.add_argument("--lower", action="store_true", help="lower is better (a loss)")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--files", type=int, default=300)
    args = ap.parse_args(argv)
    if len(args.diff) != len(args.std):
        ap.error("--diff and --std need one value per claim each")
    plan = SequentialPlan(args.alpha, args.min, args.max, args.round)
    shares, seeds = simulate(plan, args.diff, args.std, args.files, args.within,
                             args.by_at_least or 0.0, not args.lower)
    print(f"looks {plan.looks}: " + ", ".join(f"{k} {v:.3f}" for k, v in shares.items())
          + f"; {seeds:.1f} seeds a side on average ({args.files} files)")


if __name__ == "__main__":
    main()
