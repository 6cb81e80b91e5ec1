"""The tiny synthact run shared by the export and runtime tests (~10 s of training on one core)."""

from __future__ import annotations

from pathlib import Path

import pytest

# a smaller sibling of tests/training/test_pipeline.py's TINY
TINY = {
    "name": "tiny",
    "data": {
        "dataset": "synthact",
        "split": "ru5",
        "samples_per_class": 4,
        "test_per_class": 6,
        "gzsl_seen_per_class": 1,
        "val_per_class": 1,
        "frames": 16,
        "seed": 0,
    },
    "encoder": {
        "preset": "small",
        "channels": [16, 32],
        "strides": [1, 2],
        "feature_dim": 32,
        "epochs": 1,
        "batch_size": 32,
    },
    "text": {"encoder": "minilm", "num_tokens": 8},
    "denoiser": {
        "preset": "tiny",
        "hidden_size": 32,
        "depth": 2,
        "num_heads": 2,
        "z_dim": 32,
        "cond_dim": 768,
        "num_tokens": 8,
    },
    "train": {"iterations": 20, "batch_size": 32, "lr": 0.001, "warmup_steps": 5, "checkpoint_every": 0},
    "eval": {"num_noises": 2, "timestep": 25},
    "baseline": {"enabled": False},
}


def train_tiny_run(root: Path) -> Path:
    """Train TINY (split ru5, seed 1) into `root/tiny`, caching text under `root/cache`; returns the run folder."""
    from tdsm_edge.config import config_from_dict
    from tdsm_edge.training.pipeline import run

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TDSM_CACHE_DIR", str(root / "cache"))
        run(config_from_dict(TINY), root / "tiny", ["ru5"], [1], progress=False)
    return root / "tiny"
