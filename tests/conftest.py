"""Fixtures shared across test folders. Heavy imports happen inside the fixtures, on first use."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def stats():
    """FeatureStats of the tiny denoiser problem (tests/helpers/tiny_denoiser.py)."""
    from helpers.tiny_denoiser import feature_stats

    return feature_stats()


@pytest.fixture(scope="session")
def tiny():
    """`tiny.cfg`, `tiny.t`, `tiny.model(**overrides)`, `tiny.text(K, seed, masked)`, `tiny.features(B, seed)`."""
    from helpers.tiny_denoiser import tiny_problem

    return tiny_problem()
