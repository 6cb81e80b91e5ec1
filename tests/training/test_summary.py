"""The seed summary (tdsm_edge/training/summary.py): means over seeds, Welch's test, twins told apart,
ablation rows, feature rank; and the metrics it reads (twin pairs, feature rank)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tdsm_edge.errors import InputError
from tdsm_edge.training.metrics import feature_rank, twin_pairs, twins_told_apart

NAMES = ["circle left leg", "circle right leg", "shake head", "jump in place", "turn around"]


def test_twin_pairs_only_pair_left_with_right():
    assert twin_pairs(NAMES) == [(0, 1)]
    assert twin_pairs(["wave left hand", "kick with right leg", "wave right hand"]) == [(0, 2)]
    assert twin_pairs(["leftover", "rightover", "shake head"]) == []  # whole words only


def test_twins_told_apart_counts_only_within_the_pair():
    c = np.zeros((5, 5), int)
    c[0, 0], c[0, 1], c[0, 2] = 6, 3, 100  # 100 samples lost to shake head do not count
    c[1, 1], c[1, 0] = 5, 2
    assert twins_told_apart(c, NAMES) == pytest.approx(11 / 16)
    assert twins_told_apart(np.eye(3, dtype=int), ["a", "b", "c"]) is None


def test_feature_rank_sees_a_subspace():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(500, 16))
    assert feature_rank(full)["rank"] == 16 and feature_rank(full)["effective"] > 14
    sub = full[:, :4] @ rng.normal(size=(4, 16)) + 3.0  # 16-d features filling a 4-d affine subspace
    r = feature_rank(sub.astype(np.float32))
    assert r["rank"] == 4 and r["effective"] < 4.01 and r["dim"] == 16
    assert feature_rank(np.ones((5, 3)))["rank"] == 0
    with pytest.raises(InputError):
        feature_rank(np.ones(5))
    with pytest.raises(InputError, match="D >= 1"):
        feature_rank(np.ones((5, 0)))
    with pytest.raises(InputError, match="finite"):
        feature_rank(np.array([[np.nan, 1.0], [2.0, 3.0], [4.0, 5.0]]))


def _metrics(top1_tdsm, top1_base, confusion, ablations=None, rank=60.0):
    def method(top1):
        return {"zsl": {"top1": top1, "top5": 1.0, "confusion": confusion, "class_names": NAMES}}

    m = {
        "num_unseen": 5,
        "chance": 0.2,
        "tdsm": method(top1_tdsm),
        "baseline": method(top1_base),
        "test_feature_rank": {"rank": 64, "effective": rank, "dim": 64},
    }
    if ablations:
        m["tdsm"]["ablations"] = ablations
    return m


def test_summary_welch_twins_ablations_and_rank(tmp_path):
    from scipy import stats

    from tdsm_edge.training.summary import summarize, summary_table, welch

    c = np.diag([10, 10, 10, 10, 10]).tolist()
    a, b = [0.70, 0.74, 0.78], [0.60, 0.71, 0.62]
    results = {"ru5": {s: _metrics(a[s - 1], b[s - 1], c, {"fc_mean": 0.5, "fl_mean": 0.6}) for s in (1, 2, 3)}}
    summary = summarize(results, tmp_path)
    row = summary["splits"]["ru5"]
    w = welch(a, b)
    assert row["welch"] == w
    assert w["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3  # Welch–Satterthwaite by hand
    assert w["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 2))
    assert w["diff"] == pytest.approx(np.mean(a) - np.mean(b)) and 0 < w["p"] < 0.2
    assert row["tdsm"]["twins_told_apart"]["mean"] == 1.0
    assert row["tdsm"]["ablation_fc_mean"]["mean"] == pytest.approx(0.5)
    assert row["feature_effective_rank"]["mean"] == 60.0 and row["feature_dim"] == 64
    table = summary_table(summary)
    assert f"| {100 * w['diff']:+.1f} (p={w['p']:.2g}) |" in table
    assert "| ru5 | 74.0 ± 4.0 | 50.0 ± 0.0 | 60.0 ± 0.0 |" in table  # the ablation table


def test_summary_of_one_seed_has_no_test_and_no_ablation_table(tmp_path):
    from tdsm_edge.training.summary import summarize, summary_table

    summary = summarize({"ru5": {1: _metrics(0.7, 0.6, np.eye(5, dtype=int).tolist())}}, tmp_path)
    assert "welch" not in summary["splits"]["ru5"]
    table = summary_table(summary)
    assert "| — |" in table and "fc → class mean" not in table
    assert not math.isnan(summary["splits"]["ru5"]["tdsm"]["zsl_top1"]["mean"])


def test_welch_without_spread_tests_nothing(tmp_path):
    from tdsm_edge.training.summary import summarize, summary_table, welch

    w = welch([0.5, 0.5], [0.6, 0.6])
    assert w["diff"] == pytest.approx(-0.1) and all(math.isnan(w[k]) for k in ("t", "df", "p"))
    c = np.eye(5, dtype=int).tolist()
    table = summary_table(summarize({"ru5": {s: _metrics(0.5, 0.6, c) for s in (1, 2)}}, tmp_path))
    assert "| -10.0 (no spread) |" in table and "nan" not in table
