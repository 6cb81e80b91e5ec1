"""Evaluation figures: confusion matrix, accuracy sweeps, training curves (PNG).

Drawn on `tdsm_edge.figures.new_figure` (no pyplot) and written by `save_png` (atomically).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..figures import new_figure, save_png

__all__ = ["plot_confusion", "plot_sweep", "plot_training_curves"]

_MAX_NAME = 32  # longer class names are shortened with an ellipsis on the axes


def _short(name: str, limit: int = _MAX_NAME) -> str:
    """Name cut to `limit` characters (with an ellipsis) for tick labels and legends."""
    name = str(name)
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_confusion(
    cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "Confusion matrix"
) -> Path:
    """Confusion matrix PNG: colours are row-normalised (recall per true class).

    cm: (K, K) int counts, rows = true class, columns = predicted class; class_names: K names.
    Cells show the count and the row percentage when K <= 20.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise InputError(f"cm must be a non-empty square (K, K) matrix, got shape {cm.shape}")
    K = cm.shape[0]
    if len(class_names) != K:
        raise InputError(f"got {len(class_names)} class names for a {K}x{K} confusion matrix")
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)  # (K, 1)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)  # (K, K)

    side = float(np.clip(0.45 * K + 2.5, 4.0, 18.0))
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    names = [_short(n) for n in class_names]
    fontsize = 9 if K <= 20 else max(4, int(9 - (K - 20) / 15))
    ax.set_xticks(range(K), labels=names, rotation=60, ha="right", rotation_mode="anchor", fontsize=fontsize)
    ax.set_yticks(range(K), labels=names, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title}\n(top-1 {100 * acc:.1f}%, n={int(cm.sum())})")
    if K <= 20:
        for i in range(K):
            for j in range(K):
                if cm[i, j] == 0:
                    continue
                colour = "white" if norm[i, j] > 0.5 else "black"
                ax.text(
                    j,
                    i,
                    f"{int(cm[i, j])}\n{100 * norm[i, j]:.0f}%",
                    ha="center",
                    va="center",
                    fontsize=max(5, fontsize - 2),
                    color=colour,
                )
    fig.tight_layout()
    return save_png(fig, path)


def _mean_band(values: Any, n: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalise one method's values to (mean (n,), std (n,) or None).

    Accepts a list of n floats, a (runs, n) nested list (mean and sample std over runs), or a mapping
    {"mean": [...], "std": [...]}.
    """
    if isinstance(values, Mapping):
        if "mean" not in values:
            raise InputError(f"sweep values for {name!r} given as a mapping need a 'mean' key (and optional 'std')")
        mean = np.asarray(values["mean"], dtype=np.float64)
        std = None if values.get("std") is None else np.asarray(values["std"], dtype=np.float64)
    else:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim == 2:
            mean = arr.mean(axis=0)
            std = arr.std(axis=0, ddof=1) if arr.shape[0] > 1 else None
        else:
            mean, std = arr, None
    if mean.shape != (n,) or (std is not None and std.shape != (n,)):
        raise InputError(
            f"sweep values for {name!r} must have {n} points (one per x), got mean {mean.shape}"
            + ("" if std is None else f", std {std.shape}")
        )
    return mean, std


def plot_sweep(
    xs: Sequence[float],
    ys_by_method: Mapping[str, Any],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str,
    chance: float | None = None,
) -> Path:
    """Line plot of a metric against a swept setting, one line (with markers) per method.

    xs: (n,) swept values; ys_by_method: name -> n floats, or (runs, n) per-seed values (drawn as
    mean ± sample-std band), or {"mean": n floats, "std": n floats}; chance: dashed reference line.
    """
    xs_arr = np.asarray(xs, dtype=np.float64)
    if xs_arr.ndim != 1 or xs_arr.size == 0:
        raise InputError(f"xs must be a non-empty 1-D sequence, got shape {xs_arr.shape}")
    if not ys_by_method:
        raise InputError("ys_by_method is empty; pass at least one method's values")
    fig = new_figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    markers = "osD^vP*X"
    for i, (name, values) in enumerate(ys_by_method.items()):
        mean, std = _mean_band(values, xs_arr.size, name)
        (line,) = ax.plot(xs_arr, mean, marker=markers[i % len(markers)], label=_short(name, 48))
        if std is not None:
            ax.fill_between(xs_arr, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if chance is not None:
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.3g})")
    if np.all(np.mod(xs_arr, 1) == 0) and xs_arr.size <= 12:
        ax.set_xticks(xs_arr)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    # below the axes: never hides a line, however long the method names
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    return save_png(fig, path)


def plot_training_curves(
    history: Mapping[str, Sequence[float]], path: str | Path, title: str = "Training curves"
) -> Path:
    """One panel per logged quantity (e.g. loss, diffusion, triplet) against the logged step.

    history: name -> values per logged step; an optional "step" key gives the x values (else 0..n-1).
    Positive series spanning more than two decades get a log y-axis; long noisy series also show a
    moving average.
    """
    steps = history.get("step")
    series = {k: np.asarray(v, dtype=np.float64) for k, v in history.items() if k != "step" and len(v) > 0}
    if not series:
        raise InputError(f"history has no non-empty series to plot (keys: {sorted(history)})")
    n = len(series)
    cols = min(n, 3)
    rows_ = (n + cols - 1) // cols
    fig = new_figure(4.2 * cols, 3.2 * rows_)
    for i, (name, ys) in enumerate(series.items()):
        ax = fig.add_subplot(rows_, cols, i + 1)
        x = np.asarray(steps, dtype=np.float64) if steps is not None and len(steps) == ys.size else np.arange(ys.size)
        ax.plot(
            x,
            ys,
            linewidth=1,
            alpha=0.5 if ys.size >= 50 else 1.0,
            marker="o" if ys.size < 30 else None,
            markersize=3,
            label=name,
        )
        if ys.size >= 50:
            w = max(5, ys.size // 25)
            smooth = np.convolve(ys, np.ones(w) / w, mode="valid")
            ax.plot(x[w // 2 : w // 2 + smooth.size], smooth, linewidth=1.8, label=f"moving avg ({w})")
            ax.legend(fontsize=7, loc="best")  # centred window, so the average does not lag
        finite = ys[np.isfinite(ys)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return save_png(fig, path)
