"""Plots, drawn with matplotlib's Agg backend (no display); imported only when drawing. A
trial's own loss curve is svg.py's, drawn without matplotlib."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from harness.names import lower_is_better


def _pyplot():
    import matplotlib  # deferred, for the whole room: ~0.3 s, and only drawing needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _backends(rows) -> list[str]:
    return list(dict.fromkeys(r["backend"] for r in rows))


PREFIXES = ("model", "optimizer", "train", "task")


def short(point: str) -> str:
    """A sweep point as a legend reads it: 'model.init=he optimizer.lr=0.1' -> 'init=he
    lr=0.1' (the section names add nothing once the axis is named)."""
    return re.sub(rf"(^|\s)({'|'.join(PREFIXES)})\.", r"\1", point) or "(no sweep)"


def _drawable(values):
    """NaN where a diverged trial's value is infinite or too big for an axis to hold."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (np.abs(v) < 1e30), v, np.nan)


def _plain_log_ticks(ax) -> None:
    """Log-axis ticks at 1, 2 and 5 of every decade, labelled 0.2, 0.5, 1, 2, 5 instead of
    2x10^-1, so that a value can be read off."""
    from matplotlib.ticker import FuncFormatter, LogLocator  # deferred with matplotlib

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _loss_limits(lines: list[tuple[list, bool]]) -> tuple[float | None, float | None]:
    """A log-scale loss axis's (bottom, top). Top: 3x the highest starting loss among the
    lines that did not diverge, so that one blown-up trial does not flatten every other
    curve. Bottom: half the lowest mean, so that a band of mean - std that reaches zero
    (one seed far below the others) does not stretch the axis down by decades."""
    starts = [mean[0] for mean, ok in lines if ok and len(mean)]
    lows = [np.nanmin(m) for m, _ in lines if np.isfinite(m).any() and np.nanmin(m) > 0]
    return (0.5 * min(lows) if lows else None), (3 * max(starts) if starts else None)


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average, alpha = 2 / (span + 1), NaN-tolerant (a gap keeps the
    last average); the first value starts it, as pandas' ewm(adjust=False)."""
    alpha, out, last = 2.0 / (span + 1.0), np.full(len(values), np.nan), np.nan
    for i, v in enumerate(values):
        if np.isfinite(v):
            last = v if not np.isfinite(last) else alpha * v + (1 - alpha) * last
        out[i] = last
    return out


def _span(n: int) -> int:
    """The EMA's span for a curve of n points: about 5% of them; 1 (none) below 50 points
    (an epoch-by-epoch validation curve is drawn as it is)."""
    return 1 if n < 50 else max(2, n // 20)


def spans_a_decade(lines: list) -> bool:
    """Whether the positive finite values of these lines span a factor of 10 or more: a log
    axis then; under a decade a log axis shows one labelled tick and reads worse."""
    finite = [v for m in lines for v in m if np.isfinite(v) and v > 0]
    return bool(finite) and max(finite) / min(finite) >= 10


VISIBLE = 0.005  # of the axis's range: curves closer than this look like one line


def _agreement(hist: dict, rows: list[dict], key: str) -> float | None:
    """The largest difference between two backends' mean curves of one point, as a
    fraction of the range all of them span (0.0: identical to 1e-6 relative); None when
    they cannot be compared (one backend, a point missing on some, different lengths or a
    diverged step on one only)."""
    backends = _backends(rows)
    if len(backends) < 2:
        return None
    largest, lo, hi = 0.0, np.inf, -np.inf
    for point in dict.fromkeys(r["point"] for r in rows):
        curves_ = []
        for backend in backends:
            series = [hist.get(r["hash"], {}).get(key) for r in rows
                      if r["backend"] == backend and r["point"] == point]
            series = [s for s in series if s]
            curves_.append(_drawable(mean_band(series)[1]) if series else None)
        if any(c is None for c in curves_) or len({len(c) for c in curves_}) > 1:
            return None
        ref = curves_[0]
        for c in curves_:
            if (np.isfinite(ref) != np.isfinite(c)).any():
                return None
            both = np.isfinite(ref) & np.isfinite(c)
            gap = np.abs(c[both] - ref[both])
            exact = (gap <= 1e-6 * np.abs(ref[both]) + 1e-300).all()
            largest = max(largest, 0.0 if exact else float(gap.max(initial=0.0)))
            if both.any():
                lo, hi = min(lo, c[both].min()), max(hi, c[both].max())
    if largest == 0.0:
        return 0.0
    return largest / (hi - lo) if hi > lo else np.inf


def _panels(hist: dict, rows: list[dict], key: str) -> list[str]:
    """The backends to draw a panel each for: all of them, or only the first when every
    point's mean curve is the same on all to within VISIBLE of the axis (then one panel
    says so, and by how much they differ)."""
    backends = _backends(rows)
    share = _agreement(hist, rows, key)
    return backends[:1] if share is not None and share <= VISIBLE else backends


def _same_title(hist: dict, rows: list[dict], key: str) -> str:
    share = _agreement(hist, rows, key)
    names = ", ".join(_backends(rows))
    if not share:
        return f"identical on {names}"
    return f"the same on {names} to {100 * share:.2g}% of the axis (one panel for all)"


def curves(hist: dict, trials: dict, rows: list[dict], key: str, path: Path,
           title: str) -> None:
    """One panel per backend, or one for all when they give the same curves (to 1e-6);
    one line per sweep point: the mean over seeds, smoothed by an EMA (said in the axis
    label) with the raw mean faint behind, and a band of one standard deviation. One legend
    for all panels (a point keeps its colour on every backend); failed and diverged trials
    are counted in it, per backend, and dotted. A loss axis is logarithmic only when its
    curves span a decade or more."""
    from matplotlib.lines import Line2D  # deferred with matplotlib (_pyplot)

    plt = _pyplot()
    backends = _panels(hist, rows, key)
    same = len(backends) == 1 and len(_backends(rows)) > 1
    fig, axes = plt.subplots(1, len(backends), figsize=(4.5 * len(backends) + 3.5, 3.8),
                             squeeze=False, sharey=True, layout="constrained")
    order = list(dict.fromkeys(r["point"] for r in rows))
    colour = {p: f"C{i % 10}" for i, p in enumerate(order)}
    seeds: dict[str, int] = {}  # point -> the most seeds drawn on any backend
    bad: dict[str, list[str]] = {}  # point -> ['numpy: 3 diverged', ...]
    drawn = []  # (mean, finished) of every line on every panel: the shared axis's limits
    spans = set()
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
            steps, mean, low, high = (_drawable(a) for a in mean_band(series))
            span = _span(len(steps))
            spans.add(span)
            failed = [s for s in status[point] if s != "finished"]
            seeds[point] = max(seeds.get(point, 0), len(series))
            for what in sorted(set(failed)):
                bad.setdefault(point, []).append(f"{backend}: {failed.count(what)} {what}")
            style = ":" if failed else "-"
            if span > 1:  # the raw mean, faint, behind its average
                ax.plot(steps, mean, color=colour[point], linestyle=style, lw=0.6, alpha=0.3)
            ax.plot(steps, ema(mean, span), color=colour[point], linestyle=style)
            ax.fill_between(steps, ema(low, span), ema(high, span), color=colour[point],
                            alpha=0.15)
            drawn.append((list(mean), not failed))
        ax.set_title(_same_title(hist, rows, key) if same else backend, fontsize=9)
        ax.set_xlabel("step")
        smoothed = f" (EMA, span {max(spans)} steps)" if spans and max(spans) > 1 else ""
        ax.set_ylabel(f"{key}{smoothed}")
        if not points:
            ax.text(0.5, 0.5, "no finished trial", ha="center", transform=ax.transAxes)
    if "loss" in key and spans_a_decade([m for m, _ in drawn]):
        ax = axes[0][0]
        ax.set_yscale("log")
        bottom, top = _loss_limits([(np.asarray(m, float), ok) for m, ok in drawn])
        if top is not None and top < ax.get_ylim()[1]:
            ax.set_ylim(top=top)
        if bottom is not None and bottom > ax.get_ylim()[0]:
            ax.set_ylim(bottom=bottom)
        _plain_log_ticks(ax)
    handles = [Line2D([], [], color=colour[p], linestyle=":" if p in bad else "-")
               for p in order if p in seeds]
    labels = [f"{short(p)} (n={seeds[p]}" + "".join(f"; {b}" for b in bad.get(p, [])) + ")"
              for p in order if p in seeds]
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="outside right center")
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def finals(summary, metric: str, path: Path, title: str) -> None:
    """The final metric per sweep point (x) and backend (bars), mean +- std over seeds."""
    plt = _pyplot()
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
    ax.set_xticks(np.arange(len(points)), [short(p) for p in points], rotation=20, ha="right",
                  fontsize=7)
    ax.set_ylabel(f"final {metric}")
    ax.set_title(title)
    ax.legend(title="backend", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def throughput(summary, path: Path, title: str) -> None:
    """Training samples/s per backend (bars) and sweep point, mean +- std over seeds."""
    finals(summary, "perf/samples_per_s", path, title)


def mean_band(series: list[list[tuple[int, float]]]):
    """Align per-seed (step, value) series on their steps: (steps, mean, low, high)."""
    steps = sorted({s for one in series for s, _ in one})
    index = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(series), len(steps)), np.nan)
    for i, one in enumerate(series):
        for s, v in one:
            grid[i, index[s]] = v if np.isfinite(v) else np.nan  # a diverged step: a gap
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(grid, axis=0)
            std = np.nanstd(grid, axis=0)
    return np.asarray(steps), mean, mean - std, mean + std


def sensitivity(arms: dict[str, list], metric: str, path: Path, title: str) -> None:
    """The tuning curve of each arm: the selection metric against the tuned value (one knob:
    its values on the x axis, log-scaled when they span a decade; several: the combinations
    in grid order), the chosen one marked. arms: label -> [(values, mean score, n)]."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 4))
    knobs = {k for scores in arms.values() for v, _, _ in scores for k in v}
    one = len(knobs) == 1 and all(isinstance(v[k], (int, float)) for scores in arms.values()
                                  for v, _, _ in scores for k in v)
    for label, scores in arms.items():
        if not scores:
            continue
        ys = np.array([s for _, s, _ in scores], float)
        xs = np.array([next(iter(v.values())) for v, _, _ in scores], float) if one else \
            np.arange(len(scores))
        drawable = np.isfinite(ys)
        (line,) = ax.plot(xs[drawable], ys[drawable], "o-", ms=4, lw=1, label=short(label))
        best = int(np.nanargmin(ys) if lower_is_better(metric) else np.nanargmax(ys)) \
            if drawable.any() else None
        if best is not None:
            ax.plot([xs[best]], [ys[best]], "*", ms=12, color=line.get_color())
    if one:
        ax.set_xlabel(next(iter(knobs)))
        values = [next(iter(v.values())) for scores in arms.values() for v, _, _ in scores]
        if min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
    else:
        first = next(iter(arms.values()), [])
        ax.set_xticks(range(len(first)), [" ".join(f"{k.split('.')[-1]}={v}" for k, v in
                                                   c.items()) for c, _, _ in first],
                      rotation=30, ha="right", fontsize=6)
    ax.set_ylabel(f"{metric} (final, mean over tuning seeds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, title="arm (star: chosen)", loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
