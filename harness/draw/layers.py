"""The per-layer diagnostics of a sweep (harness/sweep/diagnostics.py), as MLflow holds them.

    diagnostics.png   one column per sweep point, one row per quantity (act_mean, act_std,
                      dead_frac, grad_norm, update_ratio, those that were logged); in each
                      panel one line per layer over the steps, coloured from the input (dark)
                      to the output (light)
    diag_layers.png   the same quantities against the layer, input to output, at the first
                      diagnostics step and at the last: the collapse of the activations layer
                      by layer and the vanishing of the gradients toward the input at a glance

One trial per sweep point is drawn: the file's first backend and first seed that logged
diagnostics (the backends agree; tests/test_diagnostics.py holds them to it).
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.draw.curves import _pyplot, short
from harness.names import QUANTITIES

LOG_SCALE = ("act_std", "grad_norm", "update_ratio")


def _natural(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def layer_order(forward: list[str], layers: set[str]) -> list[str]:
    """The layers in forward order (the run's record of its model's leaves), any the record
    lacks after them in a natural sort."""
    order = {path: i for i, path in enumerate(forward)}
    return sorted(layers, key=lambda p: (order.get(p, len(order)), _natural(p)))


def draw(points: list[tuple[object, list[str], dict]], out: Path, title: str) -> list[Path]:
    """diagnostics.png and diag_layers.png under `out`; nothing without diagnostics.

    points: [(trial, its leaves in forward order, {(layer, quantity): [(step, value)]})],
    one per sweep point (harness/reporting/report.py `diagnostics` reads them from MLflow)."""
    if not points:
        return []
    plt = _pyplot()
    import matplotlib as mpl  # deferred with matplotlib (curves._pyplot)

    logged = {q for _, _, s in points for _, q in s}
    rows = [q for q in QUANTITIES if q in logged]
    orders = [layer_order(forward, {layer for layer, q in s}) for _, forward, s in points]
    points = [(t, s) for t, _, s in points]
    cmap = mpl.colormaps["viridis"]

    fig, axes = plt.subplots(len(rows), len(points), figsize=(3.6 * len(points),
                             2.4 * len(rows)), squeeze=False, sharex="col", sharey="row")
    for j, ((trial, series), order) in enumerate(zip(points, orders)):
        for i, q in enumerate(rows):
            ax = axes[i][j]
            layers = [layer for layer in order if (layer, q) in series]
            for n, layer in enumerate(layers):
                steps, values = zip(*series[(layer, q)])
                ax.plot(steps, values, color=cmap(n / max(1, len(layers) - 1)), lw=1,
                        label=layer)
            if q in LOG_SCALE and layers:
                ax.set_yscale("log")
            if i == 0:
                ax.set_title(f"{short(trial.point_label)}\n{trial.backend}, seed {trial.seed}",
                             fontsize=8)
            if j == 0:
                ax.set_ylabel(q)
            if i == len(rows) - 1:
                ax.set_xlabel("step")
            if j == len(points) - 1 and layers:
                ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{title}: per layer over steps (dark: input side, light: output side)")
    fig.tight_layout()
    first = out / "diagnostics.png"
    fig.savefig(first, dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(rows), figsize=(3.8 * len(rows), 3.4), squeeze=False)
    for i, q in enumerate(rows):
        ax = axes[0][i]
        for (trial, series), order in zip(points, orders):
            layers = [layer for layer in order if (layer, q) in series]
            if not layers:
                continue
            color = None
            for at, style in ((0, "o-"), (-1, "x--")):  # the first step, then the last
                values = [series[(layer, q)][at][1] for layer in layers]
                step = series[(layers[0], q)][at][0]
                (line,) = ax.plot(range(len(layers)), values, style, ms=3, lw=1, color=color,
                                  label=f"{short(trial.point_label)} (step {step})")
                color = line.get_color()
            ax.set_xticks(range(len(layers)), layers, rotation=90, fontsize=5)
        if q in LOG_SCALE:
            ax.set_yscale("log")
        ax.set_title(q, fontsize=9)
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"{title}: per layer at the first and last diagnostics step")
    fig.tight_layout()
    second = out / "diag_layers.png"
    fig.savefig(second, dpi=100)
    plt.close(fig)
    return [first, second]
