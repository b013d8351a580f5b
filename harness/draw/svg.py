"""One trial's loss curve as a hand-written SVG, in about a millisecond and without
matplotlib: the per-trial picture every run gets (`loss_curve.svg`), drawn in the driver's
writer process once per trial, where matplotlib's figure, layout and PNG encoding cost
0.2 s of CPU each and competed with training for the cores (issue 16). The MLflow UI
shows an .svg artifact as an image. `report`'s pictures stay matplotlib (curves.py).

The scales, which tests/test_svg_curve.py recomputes:

    x(step) = LEFT + (step - s0) / (s1 - s0) * W            s0, s1: the first and last step
    y(v)    = TOP + (log10(hi) - log10(v)) / (log10(hi) - log10(lo)) * H

lo and hi are the smallest and largest drawn value, each widened by PAD of the log range
(a factor of 10**(+-PAD/2) when all values are equal). A value is drawn when it is finite,
positive (a log axis holds no zero) and under 1e30 (a diverged trial's last losses).
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 600, 400  # the picture, in px
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 36, 48  # margins around the plot area
W, H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
PAD = 0.05  # of the log range, above and below the data
BIG = 1e30  # above this a value is a blown-up loss, not a point to draw
STYLE = {"train/loss": "#1f77b4", "val/loss": "#ff7f0e"}  # matplotlib's C0 and C1


def drawable(points) -> list[tuple[float, float]]:
    """(step, value) pairs a log axis can hold: finite, positive, under BIG."""
    return [(float(s), float(v)) for s, v in points
            if math.isfinite(v) and 0 < v < BIG and math.isfinite(s)]


def y_limits(values: list[float]) -> tuple[float, float]:
    """(lo, hi) of the log axis: the data's range widened by PAD of it at each end."""
    a, b = math.log10(min(values)), math.log10(max(values))
    pad = PAD * (b - a) if b > a else PAD / 2
    return 10 ** (a - pad), 10 ** (b + pad)


def x_limits(steps: list[float]) -> tuple[float, float]:
    lo, hi = min(steps), max(steps)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


class Scale:
    """Data to pixels, by the formulas of the module docstring."""

    def __init__(self, xlim: tuple[float, float], ylim: tuple[float, float]):
        self.s0, self.s1 = xlim
        self.l0, self.l1 = math.log10(ylim[0]), math.log10(ylim[1])

    def x(self, step: float) -> float:
        return LEFT + (step - self.s0) / (self.s1 - self.s0) * W

    def y(self, value: float) -> float:
        return TOP + (self.l1 - math.log10(value)) / (self.l1 - self.l0) * H


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values in [lo, hi] at 1, 2 and 5 of every decade (as curves.py's log axes); when
    fewer than three fall inside, at 1..9 of every decade; fewer than two, lo and hi to
    three figures."""
    for subs in ((1, 2, 5), range(1, 10)):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)),
                                              math.ceil(math.log10(hi)) + 1)
                 for m in subs if lo <= m * 10.0 ** e <= hi]
        if len(ticks) >= 3:
            return ticks
    return ticks if len(ticks) >= 2 else [float(f"{lo:.3g}"), float(f"{hi:.3g}")]


def step_ticks(s0: float, s1: float, n: int = 6) -> list[int]:
    """About n round step values (1, 2 or 5 times a power of ten apart) in [s0, s1]."""
    raw = max((s1 - s0) / n, 1e-9)
    unit = 10 ** math.floor(math.log10(raw))
    gap = next(m * unit for m in (1, 2, 5, 10) if m * unit >= raw)
    gap = max(1, round(gap))
    return list(range(math.ceil(s0 / gap) * gap, math.floor(s1) + 1, gap))


def thin(points: list[tuple[float, float]], scale: Scale) -> list[tuple[float, float]]:
    """At most the first, lowest, highest and last point of each pixel column, in step
    order: the same line at this size, in a file that does not grow with the steps."""
    columns: dict[int, list] = {}
    for p in points:
        columns.setdefault(int(scale.x(p[0])), []).append(p)
    out = []
    for col in columns.values():
        keep = {0, len(col) - 1, min(range(len(col)), key=lambda i: col[i][1]),
                max(range(len(col)), key=lambda i: col[i][1])}
        out += [col[i] for i in sorted(keep)]
    return out


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 11,
          extra: str = "") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"'
            f'{extra}>{escape(text)}</text>')


def loss_curve_svg(history: dict, title: str) -> str:
    """The picture's text: train/loss as a line per logged step, val/loss as a marker per
    epoch, on a log axis; "no finite loss to draw" when nothing is drawable."""
    curves = {k: drawable(history.get(k) or []) for k in STYLE}
    every = [p for ps in curves.values() for p in ps]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
           _text(WIDTH / 2, 20, title, size=10)]
    if not every:
        out += [_text(LEFT + W / 2, TOP + H / 2, "no finite loss to draw"), "</svg>"]
        return "\n".join(out)
    scale = Scale(x_limits([s for s, _ in every]), y_limits([v for _, v in every]))
    lo, hi = 10 ** scale.l0, 10 ** scale.l1
    out.append('<g stroke="#ddd" stroke-width="1">')
    for v in log_ticks(lo, hi):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + W}" y1="{scale.y(v):.1f}" '
                   f'y2="{scale.y(v):.1f}"/>')
    out.append("</g>")
    for v in log_ticks(lo, hi):
        out.append(_text(LEFT - 6, scale.y(v) + 4, f"{v:g}", anchor="end", size=10))
    for s in step_ticks(scale.s0, scale.s1):
        out.append(f'<line x1="{scale.x(s):.1f}" x2="{scale.x(s):.1f}" y1="{TOP + H}" '
                   f'y2="{TOP + H + 4}" stroke="black"/>')
        out.append(_text(scale.x(s), TOP + H + 16, f"{s}", size=10))
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{W}" height="{H}" fill="none" '
               f'stroke="black"/>')
    out.append(_text(LEFT + W / 2, HEIGHT - 10, "step"))
    out.append(_text(16, TOP + H / 2, "loss (log scale)",
                     extra=f' transform="rotate(-90 16 {TOP + H / 2})"'))
    train, val = curves["train/loss"], curves["val/loss"]
    if train:
        points = " ".join(f"{scale.x(s):.2f},{scale.y(v):.2f}" for s, v in thin(train, scale))
        out.append(f'<polyline class="train/loss" fill="none" stroke="{STYLE["train/loss"]}" '
                   f'stroke-width="1.2" points="{points}"/>')
    if val:
        out.append(f'<g class="val/loss" fill="{STYLE["val/loss"]}">')
        out += [f'<circle cx="{scale.x(s):.2f}" cy="{scale.y(v):.2f}" r="3"/>' for s, v in val]
        out.append("</g>")
    legend = [k for k in STYLE if curves[k]]
    for i, key in enumerate(legend):  # top right, inside the plot
        y = TOP + 14 + 16 * i
        x = LEFT + W - 90
        if key == "train/loss":
            out.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" '
                       f'stroke="{STYLE[key]}" stroke-width="1.5"/>')
        else:
            out.append(f'<circle cx="{x + 9}" cy="{y - 4}" r="3" fill="{STYLE[key]}"/>')
        out.append(_text(x + 24, y, key, anchor="start", size=10))
    out.append("</svg>")
    return "\n".join(out)


def loss_curve(history: dict, title: str, path: Path) -> None:
    """One trial's training loss per step and validation loss per epoch, to `path`."""
    Path(path).write_text(loss_curve_svg(history, title))
