"""The curves picture (issue 17): smoothed with the raw values faint behind, a log axis only
over a decade, one panel when the backends give the same curves."""

import numpy as np
import pandas as pd
import pytest

from harness.draw.curves import _agreement, _panels, _same_title, curves, ema, spans_a_decade


def test_ema_is_pandas_ewm_without_adjustment():
    x = np.random.default_rng(0).normal(size=200).cumsum()
    want = pd.Series(x).ewm(span=9, adjust=False).mean().to_numpy()
    np.testing.assert_allclose(ema(x, 9), want, rtol=1e-12)
    gap = x.copy()
    gap[5] = np.nan
    assert ema(gap, 9)[5] == ema(gap, 9)[4]  # a gap keeps the last average


def _rows_hist(offsets):
    rows, hist = [], {}
    for backend, offset in offsets.items():
        for seed in (0, 1):
            h = f"{backend}{seed}"
            rows.append({"hash": h, "backend": backend, "point": "p", "status": "finished"})
            hist[h] = {"train/loss": [(s, 2.0 / s + seed * 0.01 + offset)
                                      for s in range(1, 101)]}
    return rows, hist


def test_one_panel_when_the_backends_agree_and_one_each_when_they_differ(tmp_path):
    rows, hist = _rows_hist({"numpy": 0.0, "torch": 0.0, "jax": 0.0})
    assert _panels(hist, rows, "train/loss") == ["numpy"]
    # 0.05 on a range of about 2: 2.5% of the axis, a visible gap
    rows, hist = _rows_hist({"numpy": 0.0, "torch": 0.05, "jax": 0.0})
    assert _panels(hist, rows, "train/loss") == ["numpy", "torch", "jax"]
    curves(hist, {}, rows, "train/loss", tmp_path / "c.png", "t")  # draws, either way
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_a_log_axis_only_over_a_decade():
    assert spans_a_decade([[2.0, 0.1]]) and not spans_a_decade([[0.9, 0.12]])
    assert not spans_a_decade([[np.inf, np.nan]])


def test_float32_rounding_too_small_to_see_is_one_panel_that_says_how_close():
    # 1e-3 on a range of about 2 (0.05% of the axis): drawn apart they look identical
    rows, hist = _rows_hist({"numpy": 0.0, "torch": 1e-3, "jax": 0.0})
    assert _panels(hist, rows, "train/loss") == ["numpy"]
    share = _agreement(hist, rows, "train/loss")
    lo, hi = 2.0 / 100 + 0.005, 2.0 + 0.005 + 1e-3  # the means over seeds 0 and 1
    assert share == pytest.approx(1e-3 / (hi - lo), rel=1e-6)
    assert _same_title(hist, rows, "train/loss").startswith(
        "the same on numpy, torch, jax to 0.05% of the axis")
    rows, hist = _rows_hist({"numpy": 0.0, "torch": 0.0})
    assert _same_title(hist, rows, "train/loss") == "identical on numpy, torch"
