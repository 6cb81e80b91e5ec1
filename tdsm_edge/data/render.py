"""Stick-figure rendering of skeleton sequences (matplotlib, Agg canvas; no display needed).

View convention: the CAMERA view. The horizontal image axis is -x and the vertical one is y, so a
subject facing the camera is drawn as the camera sees it: the subject's LEFT side (NTU "...Left"
joints, at -x in Kinect camera coordinates) appears on the image RIGHT. Left-side bones are drawn
in blue, right-side bones in red, the trunk in grey; a second body is drawn paler. Missing joints
(all three coordinates exactly 0) and the bones touching them are skipped.

`view="side"` draws -z horizontally instead (toward the camera = image right), so a subject facing
the camera faces the image right; useful to see forward motions (kicks, punches, bows).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError, require
from ..figures import new_figure
from ..skeleton.layout import NTU25, SkeletonLayout

_COLORS = {"left": "#1f5fd1", "right": "#d62728", "mid": "#555555"}


def _as_bodies(seq: np.ndarray, layout: SkeletonLayout) -> np.ndarray:
    """Accept `(M, T, V, 3)`, `(T, V, 3)` or a preprocessed `(3, T, V, M)`; return `(M, T, V, 3)` float64."""
    a = np.asarray(seq, dtype=np.float64)
    if a.ndim == 3:
        a = a[None]
    elif a.ndim == 4 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(3, 1, 2, 0)  # (C, T, V, M) -> (M, T, V, C)
    if a.ndim != 4 or a.shape[-1] != 3 or a.shape[2] != layout.num_joints:
        raise InputError(
            f"render expects (M, T, V, 3), (T, V, 3) or (3, T, V, M) with V="
            f"{layout.num_joints} ({layout.name}), got shape {np.shape(seq)}."
        )
    if not np.isfinite(a).all():
        raise InputError("render got NaN or infinite coordinates; mark missing joints with zeros.")
    return a


def _bone_colors(layout: SkeletonLayout) -> list[str]:
    out = []
    for a, b in layout.bones:
        names = layout.joint_names[a] + layout.joint_names[b]
        out.append(_COLORS["left"] if "Left" in names else _COLORS["right"] if "Right" in names else _COLORS["mid"])
    return out


_VIEWS = {"front": 0, "side": 2}  # coordinate drawn (negated) on the horizontal axis


def _horizontal(view: str) -> int:
    if view not in _VIEWS:
        raise InputError(f"unknown view {view!r}; use one of {', '.join(_VIEWS)}.")
    return _VIEWS[view]


def _limits(bodies: np.ndarray, hax: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Shared (horizontal, vertical) plot limits over every tracked joint, with a margin."""
    ok = np.any(bodies != 0, axis=-1)
    if not ok.any():
        return (-1.0, 1.0), (-1.0, 1.0)
    pts = bodies[ok]
    h, v = -pts[:, hax], pts[:, 1]
    pad = 0.1 * max(np.ptp(h), np.ptp(v), 0.5)
    return (h.min() - pad, h.max() + pad), (v.min() - pad, v.max() + pad)


def _draw(ax, frame: np.ndarray, layout: SkeletonLayout, colors: list[str], hax: int) -> None:
    """Draw one frame `(M, V, 3)` of every body into a matplotlib Axes."""
    for m, body in enumerate(frame):
        ok = np.any(body != 0, axis=-1)
        if not ok.any():
            continue
        alpha = 1.0 if m == 0 else 0.35
        for (a, b), c in zip(layout.bones, colors):
            if ok[a] and ok[b]:
                ax.plot([-body[a, hax], -body[b, hax]], [body[a, 1], body[b, 1]], color=c, lw=2, alpha=alpha)
        ax.scatter(-body[ok, hax], body[ok, 1], s=6, color="k", alpha=alpha, zorder=3)


def _frame(ax, bodies: np.ndarray, layout: SkeletonLayout, colors, hax: int, limits, title: str) -> None:
    """Draw one frame `(M, V, 3)` on `ax` with fixed limits, no ticks and a small title."""
    _draw(ax, bodies, layout, colors, hax)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def render_strip(
    seq: np.ndarray,
    path: str | Path,
    n_frames: int = 8,
    title: str | None = None,
    layout: SkeletonLayout = NTU25,
    view: str = "front",
) -> Path:
    """Save a strip of `n_frames` evenly spaced frames as an image (PNG, or any matplotlib format).

    Args:
        seq: `(M, T, V, 3)` or `(T, V, 3)` camera coordinates (or a preprocessed `(3, T, V, M)`).
        path: output file; its suffix picks the format.
        n_frames: number of panels (at most T).
        title: optional figure title.
        view: "front" (camera view) or "side".

    Returns:
        The path written.
    """
    hax = _horizontal(view)
    bodies = _as_bodies(seq, layout)  # (M, T, V, 3)
    T = bodies.shape[1]
    idx = np.unique(np.linspace(0, T - 1, max(1, min(n_frames, T))).round().astype(int))
    limits, colors = _limits(bodies[:, idx], hax), _bone_colors(layout)
    fig = new_figure(1.6 * len(idx), 3.2 if title else 3.0, dpi=None)
    axes = fig.subplots(1, len(idx), squeeze=False)[0]
    for ax, t in zip(axes, idx):
        _frame(ax, bodies[:, t], layout, colors, hax, limits, f"t={t}")
    if title:
        note = "camera view: subject's left = blue, on the image right" if view == "front" else "side view"
        fig.suptitle(f"{title}   ({note})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def render_gif(
    seq: np.ndarray,
    path: str | Path,
    fps: int = 15,
    title: str | None = None,
    layout: SkeletonLayout = NTU25,
    view: str = "front",
) -> Path:
    """Save an animated GIF of every frame (matplotlib's PillowWriter; pillow comes with matplotlib).

    Args:
        seq: as in `render_strip`.
        path: output `.gif` file.
        fps: frames per second of the animation.
        view: "front" (camera view) or "side".

    Returns:
        The path written.
    """
    hax = _horizontal(view)
    require("PIL", package="pillow")
    from matplotlib.animation import PillowWriter

    bodies = _as_bodies(seq, layout)
    limits, colors = _limits(bodies, hax), _bone_colors(layout)
    fig = new_figure(3.0, 3.6, dpi=None)
    ax = fig.subplots()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=80):
        for t in range(bodies.shape[1]):
            ax.clear()
            _frame(ax, bodies[:, t], layout, colors, hax, limits, f"{title + '  ' if title else ''}t={t}")
            writer.grab_frame()
    return path
