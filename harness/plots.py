"""Plots, drawn with matplotlib's Agg backend (no display); imported only when drawing."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve(history: dict, title: str, path: Path) -> None:
    """One trial's training loss per step, and validation loss per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("train/loss", "-"), ("val/loss", "o-")):
        points = history.get(key) or []
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, style, label=key, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
