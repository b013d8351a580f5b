"""3D tasks and augmentation: shapes3d and sdf generators against analytic distances, the
camera's partial view against the complete field, sdf metrics on hand-made arrays, exact
cube rotations, resampled rotations against np.rot90, jitter, augment_pair, and pictures."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.data.augment import (
    AUGMENTATIONS,
    apply_augmentations,
    augment_pair,
    check_augmentations,
)
from harness.data.augment.ops3d import (
    CUBE_ROTATIONS,
    axis_angle_matrices,
    cube_rotate,
    jitter,
    rotate,
    rotate_volume,
)
from harness.data.tasks import TASKS, load_task, shapes3d
from harness.data.tasks import sdf as sdf_task
from harness.data.tasks.primitives import (
    CLASSES,
    SDFS,
    Primitives,
    random_rotations,
    scene_sdf,
    voxel_centres,
)

TRUNC = 3.0


def one_primitive(kind: int, centre, dims, rotation=None) -> Primitives:
    """A single scene holding one primitive."""
    rotation = np.eye(3) if rotation is None else rotation
    return Primitives(
        kind=np.array([[kind]]),
        centre=np.asarray(centre, float).reshape(1, 1, 3),
        rotation=np.asarray(rotation, float).reshape(1, 1, 3, 3),
        dims=np.asarray(dims, float).reshape(1, 1, 3),
        valid=np.ones((1, 1), bool),
    )


@pytest.fixture(scope="module")
def sdf_split():
    """64 scenes of the sdf task with the complete SDF before truncation, and the views."""
    rng = np.random.default_rng(5)
    o = sdf_task.SdfOptions()
    prims = sdf_task.make_scenes(64, o.size, o.max_primitives, rng)
    origin = sdf_task.camera_origins(64, o.size, rng)
    complete = scene_sdf(voxel_centres(o.size), prims)  # (64, S^3)
    split = sdf_task.make_split(o, 64, np.random.default_rng(5))
    return prims, origin, complete, split


# ---- analytic distances -----------------------------------------------------------------


def test_sphere_sdf_is_the_distance_to_the_centre_at_voxel_centres():
    rng = np.random.default_rng(0)
    centre, radius = np.array([7.3, 8.1, 6.6]), 4.2
    prims = one_primitive(0, centre, [radius, 0, 0], random_rotations(1, rng)[0])
    points = voxel_centres(16)
    want = np.linalg.norm(points - centre, axis=1) - radius
    np.testing.assert_allclose(scene_sdf(points, prims)[0], want, rtol=0, atol=1e-12)


def test_box_sdf_at_hand_computed_points():
    half = [2.0, 1.0, 0.5]
    points = np.array([[3, 0, 0], [3, 2, 0], [3, 2, 1.5], [0, 0, 0], [1, 0.5, 0], [0, 0, 2]])
    want = [1.0, np.sqrt(2), np.sqrt(3), -0.5, -0.5, 1.5]
    np.testing.assert_allclose(scene_sdf(points, one_primitive(1, [0, 0, 0], half))[0], want)
    quarter = axis_angle_matrices(np.array([[0.0, 0.0, 1.0]]), np.array([90.0]))[0]
    moved = one_primitive(1, [10, 10, 10], half, quarter)  # long side now along axis 1
    got = scene_sdf(np.array([[10, 13, 10], [11, 10, 10]]), moved)[0]
    np.testing.assert_allclose(got, [1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("kind", range(len(CLASSES)), ids=CLASSES)
def test_every_sdf_matches_the_distance_to_its_sampled_surface(kind):
    """|sdf| against the nearest boundary point of a fine occupancy grid (spacing h).

    A boundary sample is inside with an outside neighbour, so within h of the surface, and
    every surface point has one within a cell's diagonal: they agree to h sqrt(3).
    """
    from scipy.spatial import cKDTree

    dims = np.array([[1.0, 0, 0], [0.6, 0.8, 0.4], [0.7, 0.5, 0], [0.8, 0.9, 0], [0.7, 0.25, 0]])
    h, axis = 0.02, np.arange(-1.2, 1.2, 0.02)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)  # (G, G, G, 3)
    inside = SDFS[kind](grid, dims[kind]) <= 0
    interior = inside.copy()
    for ax in range(3):
        interior &= np.roll(inside, 1, ax) & np.roll(inside, -1, ax)
    tree = cKDTree(grid[inside & ~interior])  # (B, 3) boundary samples
    points = np.random.default_rng(kind).uniform(-1.15, 1.15, size=(500, 3))
    dist, _ = tree.query(points)
    np.testing.assert_allclose(np.abs(SDFS[kind](points, dims[kind])), dist, atol=h * 3**0.5)


# ---- shapes3d ---------------------------------------------------------------------------


def test_shapes3d_generation_is_seeded_balanced_and_fast():
    start = time.perf_counter()
    x, y = shapes3d.make_split(1000, 16, np.random.default_rng(0))
    elapsed = time.perf_counter() - start
    print(f"\nshapes3d: 1000 scenes of 16^3 in {elapsed:.2f} s")
    assert x.shape == (1000, 1, 16, 16, 16) and x.dtype == np.float32
    assert set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(np.bincount(y), [200] * len(CLASSES))
    assert x.reshape(1000, -1).sum(axis=1).min() > 0  # no scene is empty
    border = np.ones((16, 16, 16), bool)
    border[1:-1, 1:-1, 1:-1] = False
    assert not x[:, 0, border].any()  # primitives keep one voxel clear of the border
    again, y_again = shapes3d.make_split(1000, 16, np.random.default_rng(0))
    np.testing.assert_array_equal(again, x)
    np.testing.assert_array_equal(y_again, y)
    other, _ = shapes3d.make_split(1000, 16, np.random.default_rng(1))
    assert not np.array_equal(other, x)


def test_shapes3d_task_loads_normalised_and_seed_driven(tmp_path):
    info = TASKS["shapes3d"]
    assert (info.kind, info.loss, info.metric, info.extra_metrics) == (
        "classification",
        "cross_entropy",
        "val/accuracy",
        None,
    )
    assert info.options == {"n_train": 2000, "n_val": 500, "n_test": 500, "size": 16}
    assert "size must be in" in info.check_options({"size": 100})[0].message
    sizes = {"n_train": 100, "n_val": 50, "n_test": 0}
    data = load_task("shapes3d", seed=0, cache_dir=tmp_path, **sizes, size=32)
    assert data.input_shape == (1, 32, 32, 32) and data.n_outputs == 5 and data.x_test is None
    assert data.y_train.dtype == np.int64 and set(data.y_train) == set(range(5))
    assert abs(float(data.x_train.mean())) < 1e-4 and abs(float(data.x_train.std()) - 1) < 1e-3
    same = load_task("shapes3d", seed=0, cache_dir=tmp_path, **sizes, size=32)
    np.testing.assert_array_equal(same.x_val, data.x_val)
    other = load_task("shapes3d", seed=1, cache_dir=tmp_path, **sizes, size=32)
    assert not np.array_equal(other.x_val, data.x_val)
    more = load_task("shapes3d", seed=0, cache_dir=tmp_path, **{**sizes, "n_train": 200}, size=32)
    np.testing.assert_array_equal(more.y_val, data.y_val)  # val does not depend on n_train


# ---- sdf: complete field and partial view ------------------------------------------------


def test_sdf_target_is_the_truncated_union_of_the_primitives(sdf_split):
    prims, _, complete, split = sdf_split
    y = split["y"].reshape(64, -1)  # (64, S^3)
    np.testing.assert_allclose(y, np.clip(complete, -TRUNC, TRUNC), atol=1e-6)
    for n in range(3):  # the union is the minimum over the scene's own primitives
        singles = [
            scene_sdf(voxel_centres(16), one_primitive(*args))[0]
            for k in np.flatnonzero(prims.valid[n])
            for args in [
                (prims.kind[n, k], prims.centre[n, k], prims.dims[n, k], prims.rotation[n, k])
            ]
        ]
        np.testing.assert_allclose(complete[n], np.min(singles, axis=0), atol=1e-12)
    counts = prims.valid.sum(axis=1)
    assert set(counts) == {1, 2, 3} and (y.min(axis=1) < 0).all()  # every scene has a surface


def test_known_region_agrees_with_the_complete_field(sdf_split):
    _, _, complete, split = sdf_split
    x = split["x"].reshape(64, 2, -1)  # (64, 2, S^3)
    known, observed = x[:, 1] == 1, x[:, 0] * TRUNC
    assert set(np.unique(x[:, 1])) == {0.0, 1.0}
    assert (x[:, 0][~known] == 0).all()  # unknown: 0 in the TSDF channel
    true = np.minimum(complete, TRUNC)
    # Seen from the camera, a known voxel is outside every primitive, and its projective
    # distance to the hit surface is never less than the true distance (up to the hit eps).
    assert (complete[known] > 0).all() and (complete <= 0)[~known].any()
    assert (observed[known] <= TRUNC + 1e-6).all()
    assert (observed[known] >= true[known] - sdf_task.HIT_EPS - 1e-5).all()
    far = known & (true >= TRUNC)
    np.testing.assert_allclose(observed[far], TRUNC, atol=1e-6)  # both truncated: equal
    assert (observed[known] < TRUNC).sum() > 0.02 * known.sum()  # the surface band is seen


def test_unknown_region_is_neither_empty_nor_everything(sdf_split):
    _, _, complete, split = sdf_split
    unknown = 1.0 - split["x"][:, 1].reshape(64, -1).mean(axis=1)  # (64,) fraction
    print(f"\nsdf: unknown fraction per scene {unknown.min():.3f}..{unknown.max():.3f}")
    assert ((unknown > 0.01) & (unknown < 0.95)).all()
    assert 0.1 < np.median(unknown) < 0.6
    inside = (complete <= 0).mean(axis=1)  # (64,) the inside alone is always unknown
    assert (unknown > inside).all()  # and the shadow behind the seen surface too


def test_sdf_task_loads_cached_and_seed_driven(tmp_path):
    info = TASKS["sdf"]
    assert (info.kind, info.loss) == ("dense_regression", "l1")
    assert info.metrics == ("val/mae", "val/mae_unknown", "val/iou")
    assert info.extra_metrics is sdf_task.extra_metrics
    sizes = {"n_train": 6, "n_val": 4}
    data = load_task("sdf", seed=0, cache_dir=tmp_path, **sizes)
    assert data.input_shape == (2, 16, 16, 16) and data.output_shape == (1, 16, 16, 16)
    assert data.y_mean is None and data.y_std is None and data.x_test is None
    assert data.x_std.reshape(-1).tolist() == [TRUNC, 1.0] and not data.info["cache_hit"]
    assert set(data.info["baseline"]) == {"val/mae", "val/mae_unknown", "val/iou"}
    again = load_task("sdf", seed=0, cache_dir=tmp_path, **sizes)
    assert again.info["cache_hit"]
    np.testing.assert_array_equal(again.x_train, data.x_train)
    np.testing.assert_array_equal(again.y_val, data.y_val)
    other = load_task("sdf", seed=1, cache_dir=tmp_path, **sizes)
    assert not np.array_equal(other.y_train, data.y_train)


def test_trivial_baseline_is_the_input_where_known_and_trunc_elsewhere(sdf_split):
    _, _, _, split = sdf_split
    x, y = split["x"], split["y"]
    pred = sdf_task.trivial_baseline(x, TRUNC)
    known = x[:, 1:2] == 1
    assert pred.shape == y.shape and pred.dtype == np.float32
    np.testing.assert_array_equal(pred[known], x[:, 0:1][known] * TRUNC)
    assert (pred[~known] == TRUNC).all()
    scores = sdf_task.extra_metrics(x, pred, y, "val")
    mae = float(np.mean(np.abs(pred - y)))
    assert 0 < mae < scores["val/mae_unknown"]  # the unknown region is the hard part
    assert 0 <= scores["val/iou"] < 0.5


def test_extra_metrics_on_hand_made_arrays():
    x = np.zeros((2, 2, 2, 2, 2), np.float32)
    x[:, 1, 0] = 1  # the first of two slabs is known in both scenes
    y = np.full((2, 1, 2, 2, 2), 3.0, np.float32)
    y[:, 0, 1, 0] = 0.5  # a surface voxel in each scene's unknown slab
    m = sdf_task.extra_metrics(x, y.copy(), y, "val")
    assert m == {"val/mae_unknown": 0.0, "val/iou": 1.0}
    off = y.copy()
    off[:, 0, 0] += 2.0  # errors in the known slab only
    assert sdf_task.extra_metrics(x, off, y, "train")["train/mae_unknown"] == 0.0
    off = y.copy()
    off[:, 0, 1] -= 1.0  # 4 unknown voxels per scene, each off by 1
    assert sdf_task.extra_metrics(x, off, y, "val")["val/mae_unknown"] == 1.0
    disjoint = np.full_like(y, 3.0)
    disjoint[:, 0, 0, 0] = -0.5  # a surface where the target has none
    assert sdf_task.extra_metrics(x, disjoint, y, "val")["val/iou"] == 0.0
    half = y.copy()
    half[0] = 3.0  # scene 0 misses its surface, scene 1 finds it
    assert sdf_task.extra_metrics(x, half, y, "val")["val/iou"] == 0.5


# ---- 3D augmentation --------------------------------------------------------------------


def volumes(n=4, c=1, s=6, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, c, s, s, s)).astype(np.float32)


def test_3d_ops_are_registered_for_three_spatial_axes_only():
    assert {"rotate", "jitter"} <= set(AUGMENTATIONS)
    assert check_augmentations(["rotate", "jitter"], input_shape=(1, 16, 16, 16)) == []
    problems = check_augmentations(["rotate", "jitter"], input_shape=(1, 8, 8))
    assert len(problems) == 2 and all("3 spatial axes" in p.message for p in problems)
    assert (
        "expected a value in [0.0, 180.0]"
        in check_augmentations([{"name": "rotate", "degrees": 270.0}])[0].message
    )
    assert "did you mean 'cube'?" in check_augmentations(
        [{"name": "rotate", "mode": "cubic"}])[0].message
    with pytest.raises(ValueError, match="expected one of 'cube', 'any'"):
        apply_augmentations(
            volumes(), [{"name": "rotate", "mode": "cubic"}], np.random.default_rng()
        )


def test_cube_rotations_are_the_24_distinct_ones_and_exact():
    x = volumes(1)
    results = {cube_rotate(x, i).tobytes() for i in range(len(CUBE_ROTATIONS))}
    assert len(CUBE_ROTATIONS) == 24 and len(results) == 24
    once = x
    for _ in range(4):  # [1] is a quarter turn about axis 0
        once = cube_rotate(once, 1)
        assert once.shape == x.shape
    np.testing.assert_array_equal(once, x)
    occ = (volumes(64, 2, 8) > 0.5).astype(np.float32)
    out = rotate(occ, np.random.default_rng(3), mode="cube", degrees=0.0, border="edge", fill=0)
    np.testing.assert_array_equal(out.sum(axis=(2, 3, 4)), occ.sum(axis=(2, 3, 4)))
    assert not np.array_equal(out, occ)
    again = rotate(occ, np.random.default_rng(3), mode="cube", degrees=0.0, border="edge", fill=0)
    np.testing.assert_array_equal(out, again)
    with pytest.raises(ValueError, match="cubic grid"):
        rotate(
            np.zeros((1, 1, 4, 4, 6), np.float32),
            np.random.default_rng(),
            mode="cube",
            degrees=0.0,
            border="edge",
            fill=0.0,
        )


def test_rotate_any_by_zero_is_identity_and_by_90_degrees_is_rot90():
    x = volumes(3, 2, 7)
    out = rotate(x, np.random.default_rng(0), mode="any", degrees=0.0, border="edge", fill=0.0)
    np.testing.assert_allclose(out, x, atol=1e-6)
    quarter = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees in the (d, h) plane
    out = rotate_volume(x, np.repeat(quarter[None], 3, axis=0), border="constant")
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    want = np.rot90(x, 1, axes=(2, 3))
    np.testing.assert_allclose(out[inner], want[inner], atol=1e-5)
    np.testing.assert_allclose(out, want, atol=1e-5)  # voxel centres land on voxel centres
    via_rodrigues = axis_angle_matrices(np.array([[0.0, 0.0, 1.0]]), np.array([90.0]))
    np.testing.assert_allclose(via_rodrigues[0], quarter, atol=1e-12)


def test_rotate_any_keeps_a_centred_sphere():
    axis = np.arange(16) - 7.5
    d = np.sqrt(sum(a**2 for a in np.meshgrid(axis, axis, axis, indexing="ij")))
    ball = (d < 5).astype(np.float32)[None, None].repeat(8, axis=0)  # (8, 1, 16, 16, 16)
    out = rotate(ball, np.random.default_rng(1), mode="any", degrees=180.0, border="edge", fill=0.0)
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3, 4)), ball[0].sum(), rtol=0.03)


def test_jitter_keeps_shape_and_shifts_content():
    x = np.zeros((200, 1, 9, 9, 9), np.float32)
    x[:, 0, 4, 4, 4] = 1.0  # one voxel at the centre
    out = jitter(x, np.random.default_rng(0), shift=2, border="edge", fill=0.0)
    assert out.shape == x.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out.sum(axis=(1, 2, 3, 4)), 1.0)  # moved, not lost
    where = np.argwhere(out[:, 0] == 1)[:, 1:] - 4  # (200, 3) shifts
    assert np.abs(where).max() == 2 and len({tuple(w) for w in where}) > 50
    np.testing.assert_array_equal(
        jitter(x, np.random.default_rng(0), shift=0, border="edge", fill=0.0), x
    )
    ones = np.ones((50, 1, 5, 5, 5), np.float32)
    padded = jitter(ones, np.random.default_rng(1), shift=2, border="constant", fill=-1.0)
    assert set(np.unique(padded)) == {-1.0, 1.0}
    assert (jitter(ones, np.random.default_rng(1), shift=2, border="edge", fill=-1.0) == 1).all()


@pytest.mark.parametrize(
    "specs",
    [
        ["rotate"],
        ["jitter"],
        [{"name": "rotate", "mode": "any", "degrees": 45.0}, "jitter"],
        ["jitter", "noise"],
    ],
)
def test_augment_pair_moves_x_and_a_dense_y_identically(specs):
    x = volumes(16, 2, 8)
    y = x[:, :1].copy()  # a dense target equal to x's first channel
    xa, ya = augment_pair(x, y, specs, np.random.default_rng(4))
    assert ya.shape == y.shape and xa.shape == x.shape
    if "noise" in specs:  # photometric: changes x only
        np.testing.assert_array_equal(
            ya, jitter(y, np.random.default_rng(4), shift=2, border="edge", fill=0.0)
        )
    else:
        np.testing.assert_array_equal(ya, xa[:, :1])
    labels = np.arange(16)
    xl, yl = augment_pair(x, labels, specs, np.random.default_rng(4))
    assert yl is labels  # a class label is left alone ...
    np.testing.assert_array_equal(xl, apply_augmentations(x, specs, np.random.default_rng(4)))
    np.testing.assert_array_equal(xl, xa)  # ... and x sees the very same draws


def test_augment_pair_pads_y_with_its_own_fill():
    x = np.zeros((20, 2, 6, 6, 6), np.float32)
    y = np.zeros((20, 1, 6, 6, 6), np.float32)
    spec = [{"name": "jitter", "shift": 2, "border": "constant", "fill": 0.0}]
    xa, ya = augment_pair(x, y, spec, np.random.default_rng(0), y_fill=TRUNC)
    assert set(np.unique(xa)) == {0.0} and set(np.unique(ya)) == {0.0, TRUNC}


# ---- pictures ---------------------------------------------------------------------------


def test_pictures_are_written(tmp_path, sdf_split):
    from harness.draw import volumes as plots3d

    _, _, _, split = sdf_split
    x, y = split["x"][:3], split["y"][:3]
    pred = sdf_task.trivial_baseline(x, TRUNC)  # no zero crossing: an empty panel
    plots3d.slices(x, pred, y, tmp_path / "slices.png", "baseline")
    plots3d.surfaces(y[0], y[0], tmp_path / "surfaces.png", "scene 0")
    plots3d.surfaces(pred, y, tmp_path / "empty.png", "baseline")
    for name in ("slices.png", "surfaces.png", "empty.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_pictures_set_several_models_side_by_side(tmp_path, sdf_split):
    import matplotlib.image

    from harness.draw import volumes as plots3d

    _, _, _, split = sdf_split
    x, y = split["x"][:2], split["y"][:2]
    pred = sdf_task.trivial_baseline(x, TRUNC)
    plots3d.slices(x, pred, y, tmp_path / "one.png", "one")
    plots3d.slices(x, {"skips=True augment=none": pred, "skips=False": y}, y,
                   tmp_path / "two.png", "two")
    plots3d.surfaces({"a": y[0], "b": y[0]}, y[0], tmp_path / "three.png", "three")
    one, two, three = (matplotlib.image.imread(tmp_path / f"{n}.png")
                       for n in ("one", "two", "three"))
    assert one.shape[0] == two.shape[0] and two.shape[1] > one.shape[1]  # a column more
    assert three.shape[1] > 2.5 * three.shape[0]  # three surfaces in a row
    assert plots3d._wrap("skips=True augment=rotate", 12) == "skips=True\naugment=rotate"
