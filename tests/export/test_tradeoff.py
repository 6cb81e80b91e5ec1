"""Trade-off measurement on a tiny fake trained seed folder: keys, accuracy, plot."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from export.tradeoff import default_configs, format_table, measure_tradeoff, plot_tradeoff
from tdsm_edge.config import EncoderConfig, RunConfig, TextConfig
from tdsm_edge.data.features import FeatureFolder, save_feature_folder
from tdsm_edge.data.synthact import load_split
from tdsm_edge.models.folders import save_denoiser
from tdsm_edge.text.prompts import ClassText

pytest.importorskip("matplotlib")


@pytest.fixture
def seed_dir(tmp_path, tiny, stats):
    """runs/<name>/ru5/seed1 with a tiny denoiser, class text for every synthact class, ztest features."""
    cfg = tiny.cfg
    run = RunConfig(
        denoiser=cfg,
        text=TextConfig(num_tokens=cfg.num_tokens),
        encoder=replace(EncoderConfig(), feature_dim=cfg.z_dim),
    )
    unseen, seen = load_split("ru5")
    n_classes = len(unseen) + len(seen)
    fc, fl, mask = tiny.text(n_classes)
    text = ClassText(
        fc.numpy(),
        (fl * mask[..., None]).numpy(),
        mask.numpy(),
        tuple(f"c{i}" for i in range(n_classes)),
        "test",
        ("label",),
    )
    root = tmp_path / "run"
    text.save(root / "text" / "class_text.safetensors")
    seed = root / "ru5" / "seed1"
    save_denoiser(seed / "denoiser", tiny.model(), run, seen, stats, history={})
    rng = np.random.default_rng(0)
    z = lambda n: rng.normal(0.7, 1.5, (n, cfg.z_dim)).astype(np.float32)  # noqa: E731
    zl = np.repeat(unseen, 4)
    save_feature_folder(seed / "features", FeatureFolder(z(10), np.repeat(seen[:5], 2), z(len(zl)), zl, z(len(zl)), zl))
    return seed


def test_measure_tradeoff_keys_and_plot(seed_dir, tmp_path):
    configs = [(3, 25, 5), (3, 25, 2), (1, 10, 5)]
    results = measure_tradeoff(seed_dir, configs, batch_sizes=(1, 4), repeats=2)
    assert [(r["J"], r["t"], r["keep"]) for r in results] == configs
    want = {
        "J",
        "t",
        "keep",
        "K",
        "rows_per_sample",
        "top1",
        "n",
        "label",
        "latency_ms_b1",
        "latency_ms_b4",
        "device",
        "threads",
        "precision",
        "torch",
        "machine",
    }
    for r in results:
        assert set(r) == want
        assert r["K"] == 5 and r["n"] == 20 and 0.0 <= r["top1"] <= 1.0
        assert r["latency_ms_b1"] > 0 and r["latency_ms_b4"] > 0
    assert [r["rows_per_sample"] for r in results] == [15, 11, 5]
    png = plot_tradeoff(results, tmp_path / "plots" / "tradeoff.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert format_table(results).count("\n") == 1 + len(results)


def test_default_grid():
    grid = default_configs(5)
    assert len(grid) == 3 * 3 + 2 * 3 * 2  # J=1 only unpruned
    assert (3, 25, 5) in grid and (5, 40, 2) in grid and (1, 25, 2) not in grid
    assert default_configs(2) == [(J, t, 2) for J in (1, 3, 5) for t in (10, 25, 40)]  # keep clamps to K
