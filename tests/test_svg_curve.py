"""A trial's loss curve as hand-written SVG (harness/draw/svg.py): valid XML, its points
where the stated log scale puts them, non-finite values left out, a diverged trial drawn."""

import math
import time
import xml.etree.ElementTree as ET

import numpy as np

from harness.draw import svg

NS = {"s": "http://www.w3.org/2000/svg"}


def _history(steps=40, per_epoch=10, diverge_at=None):
    train = [(s, 2.0 * 0.9 ** s) for s in range(1, steps + 1)]
    if diverge_at is not None:
        train = train[:diverge_at] + [(diverge_at + 1, 1e32), (diverge_at + 2, math.inf),
                                      (diverge_at + 3, math.nan)]
    val = [(s, 1.5 * 0.9 ** s) for s in range(per_epoch, steps + 1, per_epoch)]
    return {"train/loss": train, "val/loss": val}


def _expected(points, every):
    """Pixel coordinates by the module docstring's formulas, recomputed here."""
    steps = [s for s, _ in every]
    logs = [math.log10(v) for _, v in every]
    a, b = min(logs), max(logs)
    pad = svg.PAD * (b - a)
    l0, l1 = a - pad, b + pad
    s0, s1 = min(steps), max(steps)
    return [(svg.LEFT + (s - s0) / (s1 - s0) * svg.W,
             svg.TOP + (l1 - math.log10(v)) / (l1 - l0) * svg.H) for s, v in points]


def _parse(text):
    root = ET.fromstring(text)
    line = root.find("s:polyline", NS)
    drawn = [tuple(map(float, p.split(","))) for p in line.get("points").split()] \
        if line is not None else []
    markers = [(float(c.get("cx")), float(c.get("cy")))
               for c in root.findall("s:g[@class='val/loss']/s:circle", NS)]
    return root, drawn, markers


def test_points_follow_the_stated_log_scale(tmp_path):
    h = _history()
    path = tmp_path / "loss_curve.svg"
    svg.loss_curve(h, "optimizer=sgd numpy seed=0 <&>", path)
    root, drawn, markers = _parse(path.read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    every = h["train/loss"] + h["val/loss"]
    np.testing.assert_allclose(drawn, _expected(h["train/loss"], every), atol=0.006)
    np.testing.assert_allclose(markers, _expected(h["val/loss"], every), atol=0.006)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "optimizer=sgd numpy seed=0 <&>" in texts  # escaped in the file, read back whole
    assert {"step", "loss (log scale)", "train/loss", "val/loss"} <= set(texts)
    # tick labels plain numbers at 1, 2, 5 of a decade, inside the axis's range
    ticks = [float(t) for t in texts if t.replace(".", "", 1).replace("e-", "", 1).isdigit()
             and float(t) < 3]
    assert {0.05, 0.1, 0.2, 0.5, 1.0} <= set(ticks)


def test_non_finite_values_are_dropped_and_a_diverged_trial_still_draws(tmp_path):
    h = _history(diverge_at=20)
    text = svg.loss_curve_svg(h, "diverged")
    root, drawn, markers = _parse(text)
    finite = h["train/loss"][:20]
    assert len(drawn) == 20 and "nan" not in text and "inf" not in text
    every = finite + h["val/loss"]
    np.testing.assert_allclose(drawn, _expected(finite, every), atol=0.006)
    nothing = svg.loss_curve_svg({"train/loss": [(1, math.inf)], "val/loss": []}, "x")
    root, drawn, markers = _parse(nothing)
    assert not drawn and not markers
    assert "no finite loss to draw" in [t.text for t in root.iter(
        "{http://www.w3.org/2000/svg}text")]


def test_a_flat_curve_and_a_single_point_still_draw():
    root, drawn, markers = _parse(svg.loss_curve_svg({"train/loss": [(1, 0.5), (2, 0.5)]}, "f"))
    assert len(drawn) == 2 and drawn[0][1] == drawn[1][1]
    assert svg.TOP < drawn[0][1] < svg.TOP + svg.H
    root, drawn, markers = _parse(svg.loss_curve_svg({"val/loss": [(3, 0.25)]}, "one"))
    assert len(markers) == 1 and all(math.isfinite(c) for c in markers[0])


def test_a_long_curve_is_thinned_to_points_of_the_data_in_step_order():
    rng = np.random.default_rng(0)
    train = [(s, float(v)) for s, v in enumerate(np.exp(rng.normal(size=20000)), 1)]
    start = time.perf_counter()
    text = svg.loss_curve_svg({"train/loss": train}, "long")
    assert time.perf_counter() - start < 0.5
    root, drawn, _ = _parse(text)
    assert len(drawn) <= 4 * (svg.W + 1)
    expected = _expected(train, train)
    assert all(np.diff([x for x, _ in drawn]) >= 0)
    want = {(round(x, 2), round(y, 2)) for x, y in expected}
    assert all((x, y) in want for x, y in drawn)
    # the lowest and the highest value are kept
    ys = [y for _, y in drawn]
    assert min(ys) == min(y for _, y in want) and max(ys) == max(y for _, y in want)


def test_one_trial_is_drawn_in_about_a_millisecond():
    h = _history(steps=2000, per_epoch=60)
    svg.loss_curve_svg(h, "warm")
    start = time.perf_counter()
    for _ in range(20):
        svg.loss_curve_svg(h, "timed")
    assert (time.perf_counter() - start) / 20 < 0.05  # ~2 ms on one idle core; slack for load
