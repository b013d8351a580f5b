"""Tasks: registry, shapes and dtypes, determinism, training-only normalisation, splits,
the mnist1d cache and its offline generation, and the mario generative model."""

from __future__ import annotations

import random
import socket
import time
import urllib.request
from dataclasses import dataclass

import numpy as np
import pytest

from harness.data.tasks import TASKS, Dataset, load_task, register
from harness.data.tasks import mnist1d as mnist1d_module
from harness.data.tasks.mario import Physics, simulate

EXPECTED = {
    # name: (kind, loss, metric, input_shape, n_outputs, sizes)
    "mario": ("regression", "mse", "val/mae", (3,), 1, {"train": 4000, "val": 1000, "test": 1000}),
    "digits": (
        "classification",
        "cross_entropy",
        "val/accuracy",
        (1, 8, 8),
        10,
        {"train": 1200, "val": 297, "test": 300},
    ),
    "mnist1d": (
        "classification",
        "cross_entropy",
        "val/accuracy",
        (1, 40),
        10,
        {"train": 3500, "val": 500, "test": 1000},
    ),
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("harness-cache")


@pytest.fixture(scope="module")
def loaded(cache_dir):
    """Each task loaded once with default options (mnist1d generated into cache_dir)."""
    return {name: load_task(name, cache_dir=cache_dir) for name in EXPECTED}


# ---- registry ---------------------------------------------------------------------------


def test_registry_describes_each_task():
    assert set(EXPECTED) <= set(TASKS)
    for name, (kind, loss, metric, *_) in EXPECTED.items():
        info = TASKS[name]
        assert (info.name, info.kind, info.loss, info.metric) == (name, kind, loss, metric)
        assert info.metrics[0] == metric and info.description
    assert TASKS["mario"].options == {
        "n_train": 4000,
        "n_val": 1000,
        "n_test": 1000,
        "noise": 0.05,
        "frames": 64,
    }
    assert TASKS["digits"].options == {"n_train": None}
    assert TASKS["digits"].option_types == {"n_train": (int, type(None))}
    assert TASKS["mnist1d"].option_types["n_val"] == (int,)


def test_check_options_reports_every_problem():
    problems = [e.message for e in
                TASKS["mario"].check_options({"n_trian": 5, "noise": "big", "frames": True})]
    assert len(problems) == 3
    assert "did you mean 'n_train'" in problems[0]
    assert "expects float" in problems[1] and "str 'big'" in problems[1]
    assert "expects int" in problems[2]  # a YAML `true` is no int
    assert TASKS["mario"].check_options({"noise": 0}) == []  # an int is a fine float
    assert "n_train must be in" in TASKS["digits"].check_options({"n_train": 5000})[0].message
    with pytest.raises(ValueError, match="did you mean 'n_train'"):
        load_task("digits", n_trains=10)
    with pytest.raises(KeyError, match="did you mean 'digits'"):
        load_task("digit")


def test_a_new_task_is_one_registration():
    @dataclass(frozen=True)
    class ToyOptions:
        n: int = 8  # rows per split

    @register("toy", kind="regression", loss="l1", metrics=("val/mae",), options=ToyOptions)
    def load_toy(options, *, seed, cache_dir):
        """A toy task."""
        x = np.random.default_rng(seed).normal(size=(options.n, 2)).astype(np.float32)
        y = x[:, :1].copy()
        zero, one = np.zeros((), np.float32), np.ones((), np.float32)
        return Dataset("toy", "regression", x, y, x.copy(), y.copy(), 1, zero, one)

    try:
        data = load_task("toy", seed=3, n=5)
        assert TASKS["toy"].options == {"n": 8} and TASKS["toy"].description == "A toy task."
        assert data.sizes == {"train": 5, "val": 5} and data.input_shape == (2,)
        with pytest.raises(ValueError, match="registered twice"):
            register("toy", kind="regression", loss="l1", metrics=("val/mae",), options=ToyOptions)(
                load_toy
            )
    finally:
        del TASKS["toy"]


def test_dataset_rejects_wrong_dtypes():
    x, y = np.zeros((4, 3), np.float32), np.zeros(4, np.int32)
    with pytest.raises(TypeError, match="int64"):
        Dataset("bad", "classification", x, y, x, y, 2, np.float32(0), np.float32(1))
    with pytest.raises(TypeError, match="float32"):
        Dataset("bad", "regression", x.astype(np.float64), y, x, y, 1, 0, 1)


# ---- every task -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shapes_dtypes_and_classes(loaded, name):
    kind, _, _, input_shape, n_outputs, sizes = EXPECTED[name]
    data = loaded[name]
    assert data.name == name and data.kind == kind
    assert data.input_shape == input_shape and data.n_outputs == n_outputs
    assert data.sizes == sizes
    for split, x, y in data._splits():
        assert x.dtype == np.float32 and x.shape == (sizes[split], *input_shape)
        assert np.isfinite(x).all() and not x.flags.writeable
        if kind == "classification":
            assert y.dtype == np.int64 and y.shape == (sizes[split],)
            assert set(np.unique(y)) == set(range(n_outputs))  # every class in every split
        else:
            assert y.dtype == np.float32 and y.shape == (sizes[split], n_outputs)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_normalised_with_training_statistics_only(loaded, name):
    data = loaded[name]
    axes = (0,) + tuple(range(2, data.x_train.ndim)) if data.x_train.ndim > 2 else (0, 1)
    np.testing.assert_allclose(data.x_train.mean(axis=axes), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=axes), 1.0, atol=1e-4)
    # The other splits carry the training statistics, so they are near, never exactly, 0/1.
    assert 1e-6 < abs(float(data.x_val.mean())) < 0.3
    assert abs(float(data.x_val.std()) - 1.0) < 0.3


def test_digits_stats_come_from_the_training_images(loaded):
    from sklearn.datasets import load_digits

    data, images = loaded["digits"], load_digits().images / 16.0
    train, val = data.info["train_indices"], data.info["val_indices"]
    np.testing.assert_allclose(data.x_mean.ravel(), images[train].mean(), rtol=1e-5)
    np.testing.assert_allclose(data.x_std.ravel(), images[train].std(), rtol=1e-5)
    restored = data.x_val[:, 0] * data.x_std[0] + data.x_mean[0]  # (N, 8, 8)
    np.testing.assert_allclose(restored, images[val], atol=1e-5)
    np.testing.assert_array_equal(data.y_val, load_digits().target[val])


@pytest.mark.parametrize("name", list(EXPECTED))
def test_same_seed_same_arrays(loaded, cache_dir, name):
    again = load_task(name, seed=0, cache_dir=cache_dir)
    other = load_task(name, seed=1, cache_dir=cache_dir)
    for (_, x, y), (_, x2, y2), (_, x3, _y3) in zip(
        loaded[name]._splits(), again._splits(), other._splits()
    ):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
        if name == "mario":  # the seed drives mario's generator ...
            assert not np.array_equal(x, x3)
        else:  # ... but digits and mnist1d have one fixed split for every trial
            np.testing.assert_array_equal(x, x3)


# ---- digits -----------------------------------------------------------------------------


def test_digits_splits_are_disjoint_and_cover_everything(loaded):
    info = loaded["digits"].info
    parts = [info["train_indices"], info["val_indices"], info["test_indices"]]
    every = np.concatenate(parts)
    assert len(every) == len(np.unique(every)) == 1797


def test_digits_small_training_sets_are_stratified_and_nested(loaded, cache_dir):
    small = load_task("digits", n_train=100, cache_dir=cache_dir)
    bigger = load_task("digits", n_train=200, cache_dir=cache_dir)
    assert small.sizes == {"train": 100, "val": 297, "test": 300}
    assert np.bincount(small.y_train, minlength=10).min() >= 8
    assert np.bincount(small.y_train, minlength=10).max() <= 12
    np.testing.assert_array_equal(small.info["train_indices"], bigger.info["train_indices"][:100])
    # Validation and test do not move when the training set shrinks; only the stats do.
    np.testing.assert_array_equal(small.info["val_indices"], loaded["digits"].info["val_indices"])
    np.testing.assert_allclose(small.x_train.mean(), 0.0, atol=1e-5)


# ---- mnist1d ----------------------------------------------------------------------------


def test_mnist1d_generates_offline_and_then_hits_the_cache(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("mnist1d tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    np_state, py_state = np.random.get_state(), random.getstate()
    start = time.perf_counter()
    first = load_task("mnist1d", cache_dir=tmp_path)
    generate_s = time.perf_counter() - start
    assert first.info["cache_hit"] is False
    cached = mnist1d_module.cache_path(tmp_path)
    assert cached.exists() and [p.name for p in tmp_path.iterdir()] == [cached.name]
    # make_dataset seeds the global generators; loading must leave them as they were.
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert random.getstate() == py_state

    start = time.perf_counter()
    second = load_task("mnist1d", cache_dir=tmp_path)
    hit_s = time.perf_counter() - start
    assert second.info["cache_hit"] is True and hit_s < generate_s
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_mnist1d_raw_sizes_and_split(loaded, cache_dir):
    from mnist1d.data import get_dataset_args

    package_args = get_dataset_args(as_dict=True)
    assert mnist1d_module.DATASET_ARGS == {k: v for k, v in package_args.items() if k != "url"}
    with np.load(mnist1d_module.cache_path(cache_dir)) as raw:
        assert raw["x"].shape == (4000, 40) and raw["x_test"].shape == (1000, 40)
        assert raw["y"].shape == (4000,) and raw["t"].shape == (40,)
        info = loaded["mnist1d"].info
        train, val = info["train_indices"], info["val_indices"]
        assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 4000
        np.testing.assert_array_equal(loaded["mnist1d"].y_val, raw["y"][val])
        np.testing.assert_array_equal(loaded["mnist1d"].y_test, raw["y_test"])
    small = load_task("mnist1d", n_train=400, cache_dir=cache_dir)
    assert small.sizes == {"train": 400, "val": 500, "test": 1000}
    np.testing.assert_allclose(
        small.x_val * small.x_std + small.x_mean,
        loaded["mnist1d"].x_val * loaded["mnist1d"].x_std + loaded["mnist1d"].x_mean,
        atol=1e-5,
    )  # the same raw validation signals, whatever n_train


def test_cache_dir_defaults_to_harness_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    assert load_task("digits").info["cache_hit"] is False
    assert [p.name for p in tmp_path.iterdir()][0].startswith("digits-sklearn-")


# ---- mario ------------------------------------------------------------------------------


def test_mario_targets_follow_inputs(loaded):
    data = loaded["mario"]
    x, y = data.x_val.astype(np.float64), data.y_val[:, 0].astype(np.float64)  # (N, 3), (N,)
    extrapolated = 2.0 * x[:, 2] - x[:, 1]  # constant speed: x_{t+1} = x_t + (x_t - x_{t-1})
    mse_linear = np.mean((extrapolated - y) ** 2)
    mse_mean = np.mean((y - data.y_train.mean()) ** 2)
    assert mse_linear < 1e-3 * mse_mean
    # In pixels, the error is about the observation noise and the occasional speed change.
    assert np.mean(np.abs(extrapolated - y)) * data.y_std < 0.5


def test_mario_trajectories_run_stop_jump_and_turn():
    p = Physics()
    traj = simulate(1000, 64, np.random.default_rng(0), p)
    v, grounded = traj.v, traj.grounded  # (N, T)
    np.testing.assert_allclose(np.diff(traj.x, axis=1), v[:, :-1], atol=1e-9)
    assert np.abs(v).max() <= p.run_speed + 1e-12
    assert (v == 0).mean() > 0.02  # stops
    assert 0.05 < (~grounded).mean() < 0.5  # jumps
    dv = np.diff(v, axis=1)  # (N, T-1): change from frame t to t+1
    assert np.all(dv[~grounded[:, 1:]] == 0)  # no speed change mid-air
    assert np.abs(dv).max() <= max(p.accel, p.friction, p.skid) + 1e-12  # gradual
    assert 0 < np.mean(dv > 0) and 0 < np.mean(dv < 0)  # accelerates and decelerates
    turns = (np.diff(np.sign(v), axis=1) != 0).any(axis=1) & (v < 0).any(1) & (v > 0).any(1)
    assert turns.mean() > 0.2  # direction changes
    assert (np.abs(v) > p.walk_speed + 0.5).mean() > 0.05  # running speed reached


def test_mario_validation_set_does_not_depend_on_n_train(loaded):
    small = load_task("mario", n_train=100, n_test=0)
    assert small.x_test is None and small.sizes == {"train": 100, "val": 1000}
    raw_small = small.x_val * small.x_std + small.x_mean
    raw_full = loaded["mario"].x_val * loaded["mario"].x_std + loaded["mario"].x_mean
    np.testing.assert_allclose(raw_small, raw_full, rtol=1e-5, atol=1e-3)
