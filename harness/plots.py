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


def _backends(rows) -> list[str]:
    return list(dict.fromkeys(r["backend"] for r in rows))


def curves(hist: dict, trials: dict, rows: list[dict], key: str, path: Path,
           title: str) -> None:
    """One panel per backend; one line per sweep point: the mean over seeds, with a band of
    one standard deviation. Failed and diverged trials are counted in the legend."""
    from .report import mean_band

    plt = _pyplot()
    backends = _backends(rows)
    fig, axes = plt.subplots(1, len(backends), figsize=(5 * len(backends), 3.8), squeeze=False,
                             sharey=True)
    for ax, backend in zip(axes[0], backends):
        points: dict[str, list] = {}
        status: dict[str, list] = {}
        for row in rows:
            if row["backend"] != backend:
                continue
            status.setdefault(row["point"], []).append(row["status"])
            series = hist.get(row["hash"], {}).get(key)
            if series:
                points.setdefault(row["point"], []).append(series)
        for point, series in points.items():
            steps, mean, low, high = mean_band(series)
            bad = [s for s in status[point] if s != "finished"]
            label = f"{point} (n={len(series)}" + (f", {len(bad)} {'/'.join(set(bad))}"
                                                   if bad else "") + ")"
            (line,) = ax.plot(steps, mean, label=label)
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{backend}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        if "loss" in key:
            ax.set_yscale("log")
        if points:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no finished trial", ha="center", transform=ax.transAxes)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def finals(summary, metric: str, path: Path, title: str) -> None:
    """The final metric per sweep point (x) and backend (bars), mean +- std over seeds."""
    plt = _pyplot()
    import numpy as np

    points = list(dict.fromkeys(summary["point"]))
    backends = list(dict.fromkeys(summary["backend"]))
    width = 0.8 / max(1, len(backends))
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(points) * max(1, len(backends) / 2)), 4))
    for j, backend in enumerate(backends):
        sub = summary[summary["backend"] == backend].set_index("point").reindex(points)
        mean = sub.get(f"{metric} mean", np.full(len(points), np.nan))
        std = sub.get(f"{metric} std", np.zeros(len(points)))
        x = np.arange(len(points)) + (j - (len(backends) - 1) / 2) * width
        ax.bar(x, np.nan_to_num(np.asarray(mean, float)), width, yerr=np.nan_to_num(
            np.asarray(std, float)), capsize=3, label=backend)
        for xi, (_, r) in zip(x, sub.iterrows()):
            bad = int(r.get("n_failed", 0) or 0) + int(r.get("n_diverged", 0) or 0)
            if bad:
                ax.annotate(f"{bad} failed/diverged", (xi, 0), rotation=90, fontsize=7,
                            ha="center", va="bottom", color="red")
    ax.set_xticks(np.arange(len(points)), points, rotation=20, ha="right", fontsize=7)
    ax.set_ylabel(f"final {metric}")
    ax.set_title(title)
    ax.legend(title="backend", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def throughput(summary, path: Path, title: str) -> None:
    """Training samples/s per backend (bars) and sweep point, mean +- std over seeds."""
    finals(summary, "perf/samples_per_s", path, title)
