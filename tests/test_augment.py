"""Augmentation: reproducible, never in place, and each op's statistics as documented."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.data.augment import (
    AUGMENTATIONS,
    apply_augmentations,
    augmentation,
    check_augmentations,
    resolve_augmentations,
)
from harness.data.augment.ops2d import brightness, crop, flip, noise
from harness.data.augment.registry import BOUNDS, SPATIAL_DIMS


def problems_of(*args, **kwargs) -> list[str]:
    """check_augmentations' errors (ConfigError values) as the lines a user reads."""
    return [str(e) for e in check_augmentations(*args, **kwargs)]

ALL_OPS = ["flip", "crop", "brightness", "noise"]


def batch(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


shapes = st.tuples(
    st.integers(1, 6),  # N
    st.integers(1, 3),  # C
    st.lists(st.integers(1, 7), min_size=1, max_size=3),  # spatial: (L,), (H, W), (D, H, W)
).map(lambda t: (t[0], t[1], *t[2]))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**32 - 1), op=st.sampled_from(ALL_OPS))
def test_every_op_keeps_shape_and_input_and_is_reproducible(shape, seed, op):
    x = batch(shape)
    x.flags.writeable = False  # tasks hand out read-only arrays; a write would raise
    before = x.copy()
    fn, defaults = AUGMENTATIONS[op].fn, AUGMENTATIONS[op].defaults
    out = fn(x, np.random.default_rng(seed), **defaults)
    again = fn(x, np.random.default_rng(seed), **defaults)
    assert out.shape == x.shape and out.dtype == np.float32
    assert out is not x and not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(out, again)


def test_pipeline_is_reproducible_and_seed_dependent():
    x = batch((16, 1, 8, 8))
    specs = ["flip", {"name": "crop", "pad": 2}, "brightness", {"name": "noise", "std": 0.1}]
    a = apply_augmentations(x, specs, np.random.default_rng(7))
    b = apply_augmentations(x, specs, np.random.default_rng(7))
    c = apply_augmentations(x, specs, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert apply_augmentations(x, [], np.random.default_rng(0)) is x


@pytest.mark.parametrize("shape", [(2000, 1, 40), (2000, 2, 5, 6), (2000, 1, 3, 4, 5)])
def test_flip_mirrors_about_half_along_the_last_axis(shape):
    x = batch(shape)
    out = flip(x, np.random.default_rng(0), p=0.5)
    axes = tuple(range(1, x.ndim))
    same = np.all(out == x, axis=axes)  # (N,)
    mirrored = np.all(out == x[..., ::-1], axis=axes)
    assert np.all(same | mirrored)  # each sample is itself or its width-mirror, nothing else
    assert 0.45 < mirrored.mean() < 0.55
    np.testing.assert_array_equal(flip(x, np.random.default_rng(0), p=0.0), x)
    np.testing.assert_array_equal(flip(x, np.random.default_rng(0), p=1.0), x[..., ::-1])


def test_crop_matches_a_hand_computed_crop():
    n, pad = 50, 2
    x = np.arange(n * 1 * 6 * 5, dtype=np.float32).reshape(n, 1, 6, 5) + 1.0  # no zeros
    out = crop(x, np.random.default_rng(3), pad=pad, border="constant", fill=0.0)
    offsets = np.random.default_rng(3).integers(0, 2 * pad + 1, size=(n, 2))  # same draws
    padded = np.zeros((n, 1, 6 + 2 * pad, 5 + 2 * pad), np.float32)
    padded[:, :, pad:-pad, pad:-pad] = x
    for i, (oy, ox) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], padded[i, :, oy : oy + 6, ox : ox + 5])
    assert len({tuple(o) for o in offsets}) > 10  # per-sample offsets, not one for the batch
    # Sample 0 by hand: shifted by (dy, dx); out[y, x] = x[y + dy, x + dx] where inside.
    dy, dx = offsets[0] - pad
    for yy in range(6):
        for xx in range(5):
            inside = 0 <= yy + dy < 6 and 0 <= xx + dx < 5
            want = x[0, 0, yy + dy, xx + dx] if inside else 0.0
            assert out[0, 0, yy, xx] == want


def test_crop_with_edge_border_repeats_the_nearest_value():
    n, pad = 40, 2
    x = batch((n, 2, 6, 5))
    out = crop(x, np.random.default_rng(5), pad=pad, border="edge", fill=0.0)
    offsets = np.random.default_rng(5).integers(0, 2 * pad + 1, size=(n, 2)) - pad
    for i, (dy, dx) in enumerate(offsets):  # out[y, x] = x[clip(y + dy), clip(x + dx)]
        rows = np.clip(np.arange(6) + dy, 0, 5)
        cols = np.clip(np.arange(5) + dx, 0, 4)
        np.testing.assert_array_equal(out[i], x[i][:, rows][:, :, cols])
    background = np.full((3, 1, 8, 8), -0.8, np.float32)  # a normalised digit's background
    background[:, :, 3:5, 3:5] = 2.0
    shifted = crop(background, np.random.default_rng(0), pad=1, border="edge", fill=0.0)
    assert set(np.unique(shifted)) == {np.float32(-0.8), np.float32(2.0)}  # no grey border


def test_crop_on_1d_shifts_along_length_and_keeps_content():
    x = batch((200, 3, 40))
    out = crop(x, np.random.default_rng(0), pad=4, border="constant", fill=0.0)
    for i in range(len(x)):
        shifts = [s for s in range(-4, 5) if np.array_equal(out[i], _shift1d(x[i], s))]
        assert len(shifts) == 1  # all channels move together, by one shift in -4..4
    same = crop(x, np.random.default_rng(0), pad=0, border="edge", fill=0.0)
    np.testing.assert_array_equal(same, x)


def _shift1d(sample, s):  # (C, L) -> out[:, i] = sample[:, i + s], zero outside
    out = np.zeros_like(sample)
    length = sample.shape[-1]
    lo, hi = max(0, -s), min(length, length - s)
    out[:, lo:hi] = sample[:, lo + s : hi + s]
    return out


@pytest.mark.parametrize("std", [0.1, 0.5])
def test_noise_has_the_requested_std(std):
    x = batch((64, 1, 8, 8))
    diff = noise(x, np.random.default_rng(0), std=std) - x
    assert abs(diff.std() / std - 1.0) < 0.1
    assert abs(diff.mean()) < 0.1 * std


def test_brightness_shifts_each_sample_within_range():
    x = batch((2000, 1, 8, 8))
    out = brightness(x, np.random.default_rng(0), brightness=0.3, contrast=0.0, per_channel=False)
    shift = (out - x).reshape(len(x), -1)  # (N, 64), constant within each sample
    assert np.abs(shift - shift[:, :1]).max() < 1e-5
    assert shift.min() >= -0.3 - 1e-5 and shift.max() <= 0.3 + 1e-5
    assert shift.min() < -0.27 and shift.max() > 0.27  # spread over the whole range
    assert abs(shift.mean()) < 0.03


def test_contrast_scales_about_the_sample_mean_within_range():
    x = batch((2000, 2, 4, 4))
    out = brightness(x, np.random.default_rng(0), brightness=0.0, contrast=0.4, per_channel=False)
    m_in = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3), keepdims=True), m_in, atol=1e-5)
    # One gain per sample: (out - m) = c (x - m); least squares per sample, then residuals.
    centred, scaled = (x - m_in).reshape(len(x), -1), (out - m_in).reshape(len(x), -1)
    gain = (centred * scaled).sum(1) / (centred**2).sum(1)  # (N,)
    assert np.abs(scaled - gain[:, None] * centred).max() < 1e-5
    assert gain.min() >= 0.6 - 1e-3 and gain.max() <= 1.4 + 1e-3
    assert gain.min() < 0.65 and gain.max() > 1.35


def test_per_channel_brightness_changes_the_colour_balance():
    x = batch((500, 3, 4, 4))
    out = brightness(x, np.random.default_rng(0), brightness=0.3, contrast=0.0, per_channel=True)
    shift = (out - x).mean(axis=(2, 3))  # (N, C)
    assert np.std(shift[:, 0] - shift[:, 1]) > 0.1  # channels get different shifts


def test_specs_are_checked_all_at_once_and_resolved_with_defaults():
    problems = problems_of(
        [
            "flp",
            {"name": "noise", "sd": 1},
            {"name": "crop", "pad": -1},
            {"name": "crop", "pad": 1.5},
            3,
        ]
    )
    assert len(problems) == 5
    assert "did you mean 'flip'" in problems[0] and "did you mean 'std'" in problems[1]
    assert ">= 0" in problems[2] and "expected int" in problems[3]
    assert check_augmentations("flip") != []  # a bare string is not a list
    assert resolve_augmentations(["flip", {"name": "noise", "std": 1}]) == [
        ("flip", {"p": 0.5}),
        ("noise", {"std": 1}),
    ]
    with pytest.raises(ValueError, match="unknown augmentation"):
        apply_augmentations(batch((2, 1, 4)), ["shear"], np.random.default_rng(0))


def test_a_3d_op_registers_in_one_decorator():
    @augmentation("shift3d", spatial_dims=(3,), bounds={"by": (0, None)}, by=1)
    def shift3d(x, rng, *, by):
        del rng
        return np.roll(x, by, axis=-1)

    try:
        assert check_augmentations(["shift3d"], input_shape=(1, 8, 8, 8)) == []
        assert "3 spatial axes" in problems_of(["shift3d"], input_shape=(1, 8, 8))[0]
        out = apply_augmentations(batch((2, 1, 2, 2, 3)), ["shift3d"], np.random.default_rng(0))
        assert out.shape == (2, 1, 2, 2, 3)
    finally:
        for registry in (AUGMENTATIONS, SPATIAL_DIMS, BOUNDS):
            del registry["shift3d"]
