"""Pictures of 3D tasks: central slices, and surfaces by marching cubes (sdf task).

Drawn with matplotlib's Agg backend; matplotlib and scikit-image are imported only when a
picture is drawn, so importing this module costs nothing.

    slices(x, pred, target, "slices.png", "unet, seed 0")     # a grid of central slices
    surfaces(pred[0], target[0], "surfaces.png", "scene 0")  # predicted | true surface
    slices(x, {"skips": p1, "no skips": p2}, target, ...)     # one column per model

A prediction is an array, or a mapping from a label to an array to set several models'
predictions of the same scenes side by side.

Distances are in voxels, drawn with a diverging colour map centred on the surface (0).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from harness.draw.curves import _pyplot


def _volume(a: np.ndarray) -> np.ndarray:
    """The first sample's first channel of (S, S, S), (C, S, S, S) or (N, C, S, S, S)."""
    v = np.asarray(a, dtype=np.float64)
    while v.ndim > 3:
        v = v[0]
    if v.ndim != 3:
        raise ValueError(f"expected a volume (..., D, H, W), got shape {np.shape(a)}")
    return v


def _predictions(pred) -> dict[str, np.ndarray]:
    if isinstance(pred, Mapping):
        return {name: np.asarray(p, dtype=np.float32) for name, p in pred.items()}
    return {"prediction": np.asarray(pred, dtype=np.float32)}


def _wrap(label: str, width: int = 22) -> str:
    """'skips=False augment=rotate' -> two lines, so that a column title fits its panel."""
    lines, line = [], ""
    for word in label.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def slices(
    x: np.ndarray,
    pred: np.ndarray | Mapping[str, np.ndarray],
    target: np.ndarray,
    path: str | Path,
    title: str,
    *,
    n: int = 4,
    axis: int = 0,
) -> None:
    """A PNG grid of central slices (perpendicular to spatial `axis`) for the first n scenes.

    x (N, C, D, H, W), the inputs (sdf: TSDF / trunc and the known mask); pred (or each of
    its values), target (N, 1, D, H, W) in voxels. One row per scene; columns: each input
    channel, each prediction, the target, each with a colour bar. Predictions and target
    share one symmetric colour scale.
    """
    plt = _pyplot()
    preds = _predictions(pred)
    x, target = (np.asarray(a, dtype=np.float32) for a in (x, target))
    rows = min(n, len(x))
    names = (
        ["input TSDF / trunc", "known mask"]
        if x.shape[1] == 2
        else [f"input channel {c}" for c in range(x.shape[1])]
    )
    names += [_wrap(name) for name in preds] + ["target"]
    mid = x.shape[2 + axis] // 2
    limit = float(max(np.abs(target[:rows]).max(), 1e-6))  # symmetric scale for the SDFs

    fig, axes = plt.subplots(
        rows, len(names), figsize=(2.6 * len(names), 2.4 * rows), squeeze=False
    )
    for r in range(rows):
        panels = [x[r, c] for c in range(x.shape[1])]
        panels += [p[r, 0] for p in preds.values()] + [target[r, 0]]
        for c, (ax, vol, name) in enumerate(zip(axes[r], panels, names)):
            img = np.take(vol, mid, axis=axis)  # (H, W) for axis 0
            is_sdf = c >= x.shape[1]
            kwargs = (
                {"cmap": "RdBu", "vmin": -limit, "vmax": limit} if is_sdf else {"cmap": "viridis"}
            )
            im = ax.imshow(img, origin="lower", **kwargs)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"scene {r}", fontsize=8)
    fig.suptitle(f"{title} (slice {mid} of axis {axis}; SDF in voxels)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _surface_panel(ax, volume: np.ndarray, name: str) -> None:
    """Marching cubes at level 0 into a 3D axis, or an empty panel saying why not."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # deferred with matplotlib

    size = volume.shape
    ax.set_xlim(0, size[0] - 1)
    ax.set_ylim(0, size[1] - 1)
    ax.set_zlim(0, size[2] - 1)
    ax.set_title(name, fontsize=9)
    if not volume.min() < 0.0 < volume.max():  # marching_cubes raises without a crossing
        ax.text2D(
            0.5,
            0.5,
            "no surface:\nno zero crossing",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=9,
            color="gray",
        )
        return
    from skimage.measure import marching_cubes  # deferred: ~1 s, only sdf surfaces need it

    verts, faces, _, _ = marching_cubes(volume, level=0.0)  # (V, 3) voxels, (F, 3) indices
    mesh = Poly3DCollection(verts[faces], alpha=0.8, linewidth=0.1, edgecolor="k")
    mesh.set_facecolor((0.35, 0.55, 0.85))
    ax.add_collection3d(mesh)


def surfaces(
    pred: np.ndarray | Mapping[str, np.ndarray], target: np.ndarray, path: str | Path, title: str
) -> None:
    """Predicted and true surfaces (zero level sets) side by side, as one PNG.

    pred (or each of its values), target: one scene's SDF (D, H, W), (1, D, H, W) or a
    batch, of which the first scene is drawn. A prediction without a zero crossing gets an
    empty panel with a note.
    """
    plt = _pyplot()
    panels = [*_predictions(pred).items(), ("target", target)]
    fig = plt.figure(figsize=(4.5 * len(panels), 4.5))
    for i, (name, vol) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        _surface_panel(ax, _volume(vol), _wrap(name, 30))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
