"""A tiny denoiser problem with every layer non-zero, class text and features (export, models and
runtime tests; the `tiny` / `stats` fixtures of tests/export and tests/models wrap it)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import torch

from tdsm_edge.config import DenoiserConfig
from tdsm_edge.data.features import FeatureStats
from tdsm_edge.models.denoiser import TDSMDenoiser

# hidden 32, depth 2, heads 4, Dz 16, Dc 24, L 6
TINY = DenoiserConfig(hidden_size=32, depth=2, num_heads=4, z_dim=16, cond_dim=24, num_tokens=6, mask_text_padding=True)
T_SCORE = 25


def randomized_model(**overrides) -> TDSMDenoiser:
    """TINY (with overrides) whose zero-initialised layers (adaLN, final linear) are made non-zero."""
    torch.manual_seed(0)
    m = TDSMDenoiser(replace(TINY, **overrides))
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def class_text(K: int, seed: int = 1, masked: bool = True):
    """fc (K, Dc), fl (K, L, Dc), mask (K, L) bool with padding in the first classes (or None)."""
    g = torch.Generator().manual_seed(seed)
    fc = torch.randn(K, TINY.cond_dim, generator=g)
    fl = torch.randn(K, TINY.num_tokens, TINY.cond_dim, generator=g)
    if not masked:
        return fc, fl, None
    mask = torch.ones(K, TINY.num_tokens, dtype=torch.bool)
    mask[0, 3:] = False
    if K > 1:
        mask[1, 1:] = False
    return fc, fl, mask


def features(B: int, seed: int = 2) -> torch.Tensor:
    """Raw (un-standardised) features (B, Dz): offset and scaled so the standardisation matters."""
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(B, TINY.z_dim, generator=g) + 0.7


def feature_stats() -> FeatureStats:
    rng = np.random.default_rng(0)
    return FeatureStats(
        rng.normal(0.7, 0.2, TINY.z_dim).astype(np.float32), rng.uniform(1.0, 2.0, TINY.z_dim).astype(np.float32)
    )


def tiny_problem() -> SimpleNamespace:
    """`tiny.cfg`, `tiny.t`, `tiny.model(**overrides)`, `tiny.text(K, seed, masked)`, `tiny.features(B, seed)`."""
    return SimpleNamespace(cfg=TINY, t=T_SCORE, model=randomized_model, text=class_text, features=features)
