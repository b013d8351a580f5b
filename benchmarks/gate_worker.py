"""One side of the A/B gate: measures the figures of ONE source tree, on request.

    python benchmarks/gate_worker.py TREE        # run by path, never as benchmarks.gate_worker

The driver (benchmarks/gate_ab.py, HEAD's tree) starts one of these per tree and sends
JSON lines on stdin; each gets one JSON line back on stdout:

    {"op": "list"}                         -> {"figures": [{"name", "better", "unit", "needs"}]}
    {"op": "measure", "name": N, "repeats": R}
                                           -> {"value": V} or {"error": MSG, "kind": TYPE}

This file lives in HEAD's tree but imports TREE's `benchmarks.gate`, so it must work with
any gate.py that has `figures()` returning objects with `name`, `better`, `unit` and
`measure(slow, repeats) -> float` (commit 936e544's gate has no `needs` and that is fine).
TREE is put first on sys.path (and this script's own folder taken off it, so that
benchmarks/common.py cannot be imported as a top-level `common`); the worker refuses to
start if `benchmarks`, `harness` or `backends` would still come from elsewhere, such as the
editable install of another checkout.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path


def _load(tree: Path):
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    sys.path.insert(0, str(tree))
    import backends  # noqa: F401
    import benchmarks.gate as gate
    import harness  # noqa: F401

    for name in ("benchmarks", "harness", "backends"):
        where = Path(sys.modules[name].__file__).resolve()
        if tree not in where.parents:
            raise SystemExit(f"gate_worker: {name} imports from {where}, not from {tree}")
    return gate


def main() -> int:
    tree = Path(sys.argv[1]).resolve()
    # the protocol owns the real stdout; whatever a figure prints goes to stderr
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    gate = _load(tree)
    from benchmarks.common import limit_threads

    limit_threads()
    figs = {f.name: f for f in gate.figures()}
    slowed = getattr(gate, "slowed", lambda name: (lambda fn: fn))
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "list":
            reply = {"figures": [{"name": f.name, "better": f.better, "unit": f.unit,
                                  "needs": getattr(f, "needs", None)} for f in figs.values()]}
        elif request["op"] == "measure":
            try:
                fig = figs[request["name"]]
                reply = {"value": float(fig.measure(slowed(fig.name), request["repeats"]))}
            except Exception as exc:  # the driver decides; a NotImplementedError fails too
                reply = {"error": f"{type(exc).__name__}: {exc}", "kind": type(exc).__name__}
                traceback.print_exc()
        else:
            reply = {"error": f"unknown op {request['op']!r}", "kind": "ValueError"}
        proto.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
