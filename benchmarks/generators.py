"""How long the 3D tasks take to generate 1000 scenes (issue 7).

    python -m benchmarks.generators [--scenes 1000] [--repeats 3]

Times `harness.data.tasks.shapes3d.make_split` (occupancy grids of random primitives at 16^3 and
32^3) and `harness.data.tasks.sdf.make_split` (the complete TSDF from analytic distances and the
ray-cast partial view, 16^3), each from a fresh seed per repeat, and prints the median wall
time. Both run once per task configuration and seed; `load` caches the result on disk.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def median_seconds(make, repeats: int) -> float:
    times = []
    for seed in range(repeats):
        start = time.perf_counter()
        make(np.random.default_rng(seed))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    from harness.data.tasks import sdf, shapes3d

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    n = args.scenes
    rows = [(f"shapes3d {size}^3", median_seconds(
        lambda rng, size=size: shapes3d.make_split(n, size, rng), args.repeats))
        for size in (16, 32)]
    options = sdf.SdfOptions(size=16)
    rows.append(("sdf 16^3", median_seconds(
        lambda rng: sdf.make_split(options, n, rng), args.repeats)))
    print(f"| task | {n} scenes, median s |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
