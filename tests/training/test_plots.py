"""Tests for the evaluation figures (tdsm_edge.training.plots): valid PNGs, edge cases, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from tdsm_edge.errors import InputError  # noqa: E402
from tdsm_edge.training.plots import plot_confusion, plot_sweep, plot_training_curves  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LONG = "put on a shoe while hopping on one leg and waving both arms wildly"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data[:8] == PNG_MAGIC


def _no_temp_files(folder) -> bool:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_confusion_png(tmp_path):
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 20, size=(6, 6)) + np.diag([30] * 6)
    cm[5] = 0  # a class with no samples must not produce NaN colours or errors
    names = ["wave", "kick", LONG, "sit down", "stand up", "clap"]
    out = plot_confusion(cm, names, tmp_path / "cm.png", "ZSL test")
    assert out == tmp_path / "cm.png" and _is_png(out) and _no_temp_files(tmp_path)


def test_confusion_k1_and_large_k(tmp_path):
    assert _is_png(plot_confusion(np.array([[7]]), [LONG], tmp_path / "k1.png", "one class"))
    cm = np.random.default_rng(1).integers(0, 5, size=(40, 40))
    assert _is_png(plot_confusion(cm, [f"class {i}" for i in range(40)], tmp_path / "k40.png", "40"))
    with pytest.raises(InputError):
        plot_confusion(np.ones((2, 3)), ["a", "b"], tmp_path / "bad.png", "bad")
    with pytest.raises(InputError):
        plot_confusion(np.ones((2, 2)), ["a"], tmp_path / "bad.png", "bad")
    assert not (tmp_path / "bad.png").exists()


def test_sweep_png_with_bands_and_chance(tmp_path):
    xs = [1, 3, 5]
    ys = {
        "TDSM": [[0.50, 0.55, 0.56], [0.48, 0.57, 0.58], [0.52, 0.56, 0.55]],  # runs x points -> band
        "baseline": [0.40, 0.40, 0.40],
        LONG: {"mean": [0.3, 0.35, 0.36], "std": [0.02, 0.01, 0.03]},
    }
    out = plot_sweep(xs, ys, tmp_path / "sub" / "sweep.png", "noises J", "top-1", "accuracy vs J", chance=0.2)
    assert _is_png(out) and _no_temp_files(tmp_path / "sub")
    assert _is_png(plot_sweep([25], {"TDSM": [0.5]}, tmp_path / "one.png", "t", "acc", "single point"))
    with pytest.raises(InputError):
        plot_sweep(xs, {"TDSM": [0.5, 0.6]}, tmp_path / "bad.png", "x", "y", "t")


def test_training_curves_png(tmp_path):
    steps = np.arange(0, 3000, 10)
    loss = np.exp(-steps / 500) * 10 + 0.01 + 0.01 * np.random.default_rng(0).random(steps.size)
    hist = {
        "step": steps.tolist(),
        "loss": loss.tolist(),
        "diffusion": (loss * 0.5).tolist(),
        "triplet": (loss * 0.1).tolist(),
    }
    assert _is_png(plot_training_curves(hist, tmp_path / "curves.png"))
    assert _is_png(plot_training_curves({"loss": [1.0, 0.5]}, tmp_path / "short.png"))
    with pytest.raises(InputError):
        plot_training_curves({"loss": []}, tmp_path / "empty.png")


def test_overwrite_is_atomic_replace(tmp_path):
    target = tmp_path / "cm.png"
    target.write_bytes(b"old")
    plot_confusion(np.eye(3, dtype=int), ["a", "b", "c"], target, "overwrite")
    assert _is_png(target) and _no_temp_files(tmp_path)
