"""Text ablations used by `evaluate --ablations` (tdsm_edge/training/evaluation.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tdsm_edge.text.prompts import ClassText
from tdsm_edge.training.evaluation import text_ablation


def _text(K=4, L=3, D=5):
    rng = np.random.default_rng(0)
    mask = np.ones((K, L), bool)
    mask[0, 2] = False
    local = rng.normal(size=(K, L, D)).astype(np.float32) * mask[..., None]
    return ClassText(rng.normal(size=(K, D)).astype(np.float32), local, mask, tuple("abcd"), "test", ("label",))


def test_fc_ablation_empties_only_the_global_vector():
    t = _text()
    a = text_ablation(t, "fc")
    assert np.allclose(a.global_, t.global_.mean(0)) and a.global_.shape == t.global_.shape
    assert a.local is t.local and a.mask is t.mask and a.names == t.names
    assert np.array_equal(t.global_, _text().global_)  # the original is untouched


def test_fl_ablation_empties_only_the_local_tokens():
    t = _text()
    a = text_ablation(t, "fl")
    assert np.allclose(a.local, t.local.mean(0)) and a.mask.all()  # the union of the masks
    assert a.global_ is t.global_
    with pytest.raises(ValueError):
        text_ablation(t, "both")
