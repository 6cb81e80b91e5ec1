"""Tests for tdsm_edge.training.metrics: ZSL accuracies, confusion, GZSL calibration, mean ± std."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tdsm_edge.errors import InputError
from tdsm_edge.training.metrics import (
    _gzsl_sweep,  # internal: checked against the reference
    choose_gamma,
    confusion_matrix,
    format_mean_std,
    gzsl_accuracies,
    gzsl_report,
    mean_class_accuracy,
    mean_std,
    per_class_accuracy,
    topk_accuracy,
    zsl_report,
)


def test_topk_matches_argmin_and_brute_force():
    rng = np.random.default_rng(0)
    errors = rng.normal(size=(200, 7))
    labels = rng.integers(0, 7, size=200)
    assert topk_accuracy(errors, labels, 1) == pytest.approx((errors.argmin(1) == labels).mean())
    ranks = (errors < errors[np.arange(200), labels][:, None]).sum(1)  # no ties in continuous data
    for k in (1, 3, 7):
        assert topk_accuracy(errors, labels, k) == pytest.approx((ranks < k).mean())
    assert topk_accuracy(errors, labels, 7) == 1.0


def test_topk_ties_follow_argmin_and_bad_k_raises():
    errors = np.zeros((3, 4))
    labels = np.array([0, 1, 3])
    assert topk_accuracy(errors, labels, 1) == pytest.approx(1 / 3)  # argmin picks column 0
    with pytest.raises(InputError):
        topk_accuracy(errors, labels, 5)
    with pytest.raises(InputError):
        topk_accuracy(errors, np.array([0, 1, 4]), 1)
    with pytest.raises(InputError):
        topk_accuracy(np.full((3, 4), np.nan), labels, 1)


def test_per_class_and_confusion():
    pred = np.array([0, 0, 1, 2, 2, 2])
    labels = np.array([0, 1, 1, 2, 2, 0])
    acc = per_class_accuracy(pred, labels, 4)
    np.testing.assert_allclose(acc[:3], [0.5, 0.5, 1.0])
    assert np.isnan(acc[3])
    assert mean_class_accuracy(pred, labels, 4) == pytest.approx(2 / 3)
    cm = confusion_matrix(pred, labels, 4)
    assert cm.dtype == np.int64 and cm.shape == (4, 4)
    assert cm[0, 0] == 1 and cm[0, 2] == 1 and cm[1, 0] == 1 and cm[1, 1] == 1 and cm[2, 2] == 2
    assert cm.sum() == 6 and np.trace(cm) == 4


def test_zsl_report_is_json_ready_and_handles_small_k():
    errors = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.4]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    rep = zsl_report(errors, labels, ["wave", "kick"])
    json.dumps(rep)  # must not raise
    assert rep["n"] == 3 and rep["top1"] == pytest.approx(2 / 3) and rep["top5"] == 1.0 and rep["top5_k"] == 2
    assert rep["per_class"] == {"wave": 1.0, "kick": 0.5}
    assert rep["mean_class_accuracy"] == pytest.approx(0.75)
    assert rep["confusion"] == [[1, 0], [1, 1]]
    rep1 = zsl_report(np.zeros((2, 1)), np.array([0, 0]), ["only"])
    assert rep1["top1"] == 1.0 and rep1["top5_k"] == 1
    with pytest.raises(InputError):
        zsl_report(errors, labels, ["a"])


def _gzsl_problem(seed: int, n: int = 300, k_all: int = 8, bias: float = 0.5):
    """Seen classes 0..4, unseen 5..7; seen columns get a systematic advantage of `bias`."""
    rng = np.random.default_rng(seed)
    seen_mask = np.arange(k_all) < 5
    labels = rng.integers(0, k_all, size=n)
    errors = rng.normal(1.0, 0.3, size=(n, k_all))
    errors[np.arange(n), labels] -= 0.8  # the true class is usually best ...
    errors[:, seen_mask] -= bias  # ... but seen classes are favoured
    return errors, labels, seen_mask


def test_gzsl_accuracies_by_hand():
    seen_mask = np.array([True, True, False])
    errors = np.array(
        [
            [0.0, 1.0, 0.5],  # true 0 (seen)
            [0.0, 1.0, 0.2],  # true 2 (unseen), seen col 0 wins unless gamma > 0.2
            [1.0, 0.0, 0.9],
        ]
    )  # true 1 (seen)
    labels = np.array([0, 2, 1])
    assert gzsl_accuracies(errors, labels, seen_mask, 0.0) == (1.0, 0.0, 0.0)
    s, u, h = gzsl_accuracies(errors, labels, seen_mask, 0.3)
    assert (s, u) == (1.0, 1.0) and h == pytest.approx(1.0)
    s, u, h = gzsl_accuracies(errors, labels, seen_mask, 0.7)  # now sample 0 flips to unseen
    assert (s, u) == (0.5, 1.0) and h == pytest.approx(2 * 0.5 / 1.5)
    g = choose_gamma(errors, labels, seen_mask)
    assert 0.2 < g < 0.5 and gzsl_accuracies(errors, labels, seen_mask, g)[2] == pytest.approx(1.0)


def test_choose_gamma_is_optimal_on_grid_and_prefers_small_abs():
    errors, labels, seen_mask = _gzsl_problem(1)
    g = choose_gamma(errors, labels, seen_mask)
    h_best = gzsl_accuracies(errors, labels, seen_mask, g)[2]
    dense = np.linspace(-3, 3, 601)
    assert h_best >= max(gzsl_accuracies(errors, labels, seen_mask, x)[2] for x in dense) - 1e-12
    assert h_best > gzsl_accuracies(errors, labels, seen_mask, 0.0)[2]  # calibration helps here
    assert g > 0  # seen classes were favoured, so they must be penalised
    # H is 0 on every one of these (all predictions on one side) -> the smallest |gamma| wins
    assert choose_gamma(errors, labels, seen_mask, grid=[5.0, -5.0, 4.0]) == 4.0


def test_vectorised_sweep_matches_reference_including_ties():
    errors, labels, seen_mask = _gzsl_problem(6, n=120)
    errors = np.round(errors, 1)  # many exact ties between seen and unseen minima
    is_seen = seen_mask[labels]
    gammas = np.round(np.linspace(-1.5, 1.5, 31), 1)
    s, u, h = _gzsl_sweep(errors.astype(np.float64), labels, seen_mask, is_seen, gammas)
    for i, g in enumerate(gammas):
        ref = gzsl_accuracies(errors, labels, seen_mask, float(g))
        assert (s[i], u[i]) == pytest.approx(ref[:2]) and h[i] == pytest.approx(ref[2])


def test_gzsl_report_gamma_ignores_test_data():
    ev, lv, mask = _gzsl_problem(2)
    et, lt, _ = _gzsl_problem(3)
    et2, lt2, _ = _gzsl_problem(4, n=123, bias=-1.0)
    r1 = gzsl_report(ev, lv, et, lt, mask)
    r2 = gzsl_report(ev, lv, et2, lt2, mask)
    assert r1["gamma"] == r2["gamma"] == choose_gamma(ev, lv, mask)
    assert (r1["seen"], r1["unseen"]) != (r2["seen"], r2["unseen"])
    assert (r1["seen"], r1["unseen"], r1["harmonic"]) == gzsl_accuracies(et, lt, mask, r1["gamma"])
    assert r1["uncalibrated"]["harmonic"] == gzsl_accuracies(et, lt, mask, 0.0)[2]
    assert r1["harmonic"] > r1["uncalibrated"]["harmonic"]
    assert r1["n_seen"] + r1["n_unseen"] == len(lt)
    json.dumps(r1)


def test_gzsl_rejects_seen_only_validation():
    errors, labels, mask = _gzsl_problem(5)
    keep = mask[labels]
    with pytest.raises(InputError, match="pseudo-unseen"):
        choose_gamma(errors[keep], labels[keep], mask)
    with pytest.raises(InputError):
        gzsl_accuracies(errors, labels, mask.astype(int), 0.0)


def test_mean_std_and_format():
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([0.4, 0.5, 0.6])
    assert m == pytest.approx(0.5) and s == pytest.approx(0.1)  # sample std (ddof=1)
    assert format_mean_std([0.4, 0.5, 0.6]) == "50.0 ± 10.0"
    assert format_mean_std([1.0, 3.0], pct=False, digits=2) == "2.00 ± 1.41"
    with pytest.raises(InputError):
        mean_std([])
