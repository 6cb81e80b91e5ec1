"""Published feature layouts (SynSE / PURLS / SMIE) -> FeatureFolder: values, detection, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tdsm_edge.data.feature_layouts import detect_layout, pool_features
from tdsm_edge.data.features import (
    FeatureFolder,
    load_feature_folder,
    load_features,
    save_feature_folder,
    validate_feature_folder,
)
from tdsm_edge.errors import ConfigError, DataError

K, D = 6, 4
UNSEEN = np.array([1, 4])


def _feats(labels, offset: float) -> np.ndarray:
    """(N, D) float32 rows that identify themselves: row i = offset + i + [0, .1, .2, .3]."""
    return (offset + np.arange(len(labels))[:, None] + np.arange(D)[None] / 10).astype(np.float32)


TR_Y = np.array([0, 1, 2, 3, 4, 5, 0, 2])
VA_Y = np.array([0, 4, 3])
TE_Y = np.array([5, 1, 4, 0, 1, 2, 4])


def _purls(folder, tr_y=TR_Y, te_y=TE_Y, val=True):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "train_feature.npy", _feats(tr_y, 0))
    np.save(folder / "train_labels.npy", tr_y)
    np.save(folder / "test_feature.npy", _feats(te_y, 100))
    np.save(folder / "test_labels.npy", te_y)
    if val:
        np.save(folder / "val_feature.npy", _feats(VA_Y, 50))
        np.save(folder / "val_labels.npy", VA_Y)
    return folder


def test_purls_all_classes_split_by_unseen(tmp_path, caplog):
    f = _purls(tmp_path / "shift_2_r")
    with caplog.at_level(logging.WARNING):
        got = load_features(f, "auto", num_classes=K, unseen=UNSEEN)
    seen_rows, z_rows = np.array([0, 2, 3, 5, 6, 7]), np.array([1, 2, 4, 6])
    np.testing.assert_array_equal(got.train, _feats(TR_Y, 0)[seen_rows])
    np.testing.assert_array_equal(got.train_label, [0, 2, 3, 5, 0, 2])
    np.testing.assert_array_equal(got.ztest, _feats(TE_Y, 100)[z_rows])
    np.testing.assert_array_equal(got.z_label, [1, 4, 1, 4])
    np.testing.assert_array_equal(got.gtest, _feats(TE_Y, 100))
    np.testing.assert_array_equal(got.g_label, TE_Y)
    np.testing.assert_array_equal(got.val, _feats(VA_Y, 50))
    np.testing.assert_array_equal(got.val_label, VA_Y)
    assert got.train.dtype == np.float32 and got.z_label.dtype == np.int64 and got.dim == D
    assert caplog.text == ""  # consistent split: nothing to warn about


def test_purls_presplit_files_and_label_encodings(tmp_path, caplog):
    # as PURLS publishes them: seen-only train/val, unseen-only test, labels as (names, labels) / floats
    tr_y, te_y = np.array([0, 2, 3, 5]), np.array([4, 1, 1])
    f = _purls(tmp_path, tr_y, te_y, val=False)
    names = np.array([f"S001A{y:03d}" for y in tr_y])
    np.save(f / "train_labels.npy", np.stack([names, tr_y.astype(str)]))  # (2, N) strings
    np.save(f / "test_labels.npy", te_y.astype(np.float64))
    with caplog.at_level(logging.WARNING):
        got = load_features(f, "purls", num_classes=K, unseen=UNSEEN)
    np.testing.assert_array_equal(got.train_label, tr_y)
    np.testing.assert_array_equal(got.train, _feats(tr_y, 0))
    np.testing.assert_array_equal(got.ztest, got.gtest)
    np.testing.assert_array_equal(got.z_label, te_y)
    assert got.val is None
    assert "no seen-class sample" in caplog.text and "GZSL" in caplog.text
    np.save(f / "test_labels.npy", np.array([4.0, 1.5, 1.0]))
    with pytest.raises(DataError, match="test_labels.npy: float labels that are not whole"):
        load_features(f, "purls", num_classes=K, unseen=UNSEEN)


def test_purls_per_position_features_and_zero_rows(tmp_path, caplog):
    rng = np.random.default_rng(0)
    f = _purls(tmp_path)
    x4 = rng.normal(size=(len(TR_Y), D, 3, 5)).astype(np.float32)  # (N, D, T', V)
    x4[1, :, 0, 0] = 0.0  # one empty position
    x4[3] = 0.0  # one padding row
    np.save(f / "train_feature.npy", x4)
    with pytest.raises(DataError, match=r"per-position features of shape \(8, 4, 3, 5\).*data.feature_pool: mean"):
        load_features(f, "purls", num_classes=K, unseen=UNSEEN)
    with caplog.at_level(logging.WARNING):
        got = load_features(f, num_classes=K, unseen=UNSEEN, pool="mean")
    keep = np.array([0, 2, 5, 6, 7])  # seen rows, minus the all-zero row 3
    np.testing.assert_allclose(got.train, x4[keep].mean(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(got.train_label, TR_Y[keep])
    assert "dropping 1 all-zero rows of train_feature.npy" in caplog.text
    v = x4.reshape(len(x4), D, 15).astype(np.float64)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    want = (v / np.where(norm > 0, norm, 1)).mean(2)
    np.testing.assert_allclose(pool_features(x4, "purls"), want, rtol=1e-5, atol=1e-7)
    assert np.isfinite(pool_features(x4, "purls")).all()
    with pytest.raises(ConfigError, match="unknown pool"):
        load_features(f, "purls", num_classes=K, unseen=UNSEEN, pool="max")


def _smie(folder, tr_y=(0, 2, 3, 5, 0), te_y=(1, 4, 4, 1)):
    tr_y, te_y = np.array(tr_y), np.array(te_y)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "train.npy", _feats(tr_y, 0))
    np.save(folder / "train_label.npy", tr_y)
    np.save(folder / "test.npy", _feats(te_y, 200))
    np.save(folder / "test_label.npy", te_y)
    return folder


def test_smie_from_parent_and_split_folder(tmp_path):
    _smie(tmp_path / "split_2")  # 2 = number of unseen classes
    _smie(tmp_path / "split_5", te_y=np.array([0, 0]))
    for where in (tmp_path, tmp_path / "split_2"):
        layout, folder = detect_layout(where, UNSEEN)
        assert (layout, folder) == ("smie", tmp_path / "split_2")
        got = load_features(where, "auto", num_classes=K, unseen=UNSEEN)
        np.testing.assert_array_equal(got.train, _feats([0, 2, 3, 5, 0], 0))
        np.testing.assert_array_equal(got.train_label, [0, 2, 3, 5, 0])
        np.testing.assert_array_equal(got.ztest, _feats([1, 4, 4, 1], 200))
        np.testing.assert_array_equal(got.z_label, [1, 4, 4, 1])
        assert got.val is None
    np.testing.assert_array_equal(load_features(tmp_path, "smie", K, UNSEEN).gtest, _feats([1, 4, 4, 1], 200))
    with pytest.raises(DataError, match=r"split_2, split_5\) but no split_3"):
        load_features(tmp_path, "smie", K, np.array([1, 4, 5]))
    with pytest.raises(DataError, match="pass unseen="):
        load_features(tmp_path, "auto", K)


def test_smie_local_labels_are_caught(tmp_path):
    _smie(tmp_path, te_y=np.array([0, 1, 1, 0]))  # local 0..1 instead of global [4, 5]
    with pytest.raises(DataError, match=r"test_label.npy\[unseen rows\] has no sample.*local"):
        load_features(tmp_path, "smie", K, np.array([4, 5]))


def test_auto_synse_equals_load_feature_folder(tmp_path):
    f = FeatureFolder(
        train=_feats(TR_Y[[0, 2, 3]], 0),
        train_label=TR_Y[[0, 2, 3]],
        ztest=_feats([1, 4], 1),
        z_label=np.array([1, 4]),
        gtest=_feats(TE_Y, 2),
        g_label=TE_Y,
        val=_feats(VA_Y, 3),
        val_label=VA_Y,
    )
    save_feature_folder(tmp_path, f)
    assert detect_layout(tmp_path) == ("synse", tmp_path)
    got, ref = load_features(tmp_path, num_classes=K, unseen=UNSEEN), load_feature_folder(tmp_path, K, UNSEEN)
    for name in ("train", "train_label", "ztest", "z_label", "gtest", "g_label", "val", "val_label"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
        np.testing.assert_array_equal(getattr(got, name), getattr(f, name))
    with pytest.raises(ConfigError, match="PURLS layout only"):
        load_features(tmp_path, num_classes=K, unseen=UNSEEN, pool="mean")
    with pytest.raises(ConfigError, match="unknown feature layout 'synSE'"):
        load_features(tmp_path, "synSE")


def test_detection_errors_list_found_and_needed(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_features(tmp_path / "nope")
    with pytest.raises(DataError, match=r"found no \.npy file\. synse needs train\.npy.*purls needs train_feature"):
        load_features(tmp_path)
    np.save(tmp_path / "train.npy", np.zeros((2, D), np.float32))
    np.save(tmp_path / "train_label.npy", np.zeros(2, np.int64))
    with pytest.raises(DataError) as e:
        load_features(tmp_path)
    msg = str(e.value)
    assert "found train.npy, train_label.npy" in msg
    assert "synse needs" in msg and "(missing ztest.npy, z_label.npy, gtest.npy, g_label.npy)" in msg
    assert "smie needs" in msg and "(missing test.npy, test_label.npy)" in msg
    _smie(tmp_path)
    for n in ("ztest", "z_label", "gtest", "g_label"):
        np.save(tmp_path / f"{n}.npy", np.zeros(2, np.int64))
    with pytest.raises(DataError, match=r"several layouts \(synse, smie"):
        load_features(tmp_path, unseen=UNSEEN)


def test_explicit_layout_missing_files_and_unseen(tmp_path):
    f = _purls(tmp_path)
    (f / "test_labels.npy").unlink()
    with pytest.raises(DataError, match=r"purls layout needs .* missing test_labels\.npy \(found"):
        load_features(f, "purls", K, UNSEEN)
    _purls(tmp_path)
    with pytest.raises(DataError, match="pass unseen="):
        load_features(f, "purls", K)
    (f / "val_labels.npy").unlink()  # half a val pair is an error, not "no val"
    with pytest.raises(DataError, match="val_feature.npy and val_labels.npy must both exist"):
        load_features(f, "purls", K, UNSEEN)


def test_labels_out_of_range_and_row_mismatch(tmp_path):
    f = _purls(tmp_path, te_y=np.array([5, 1, 4, 6]))
    with pytest.raises(DataError, match=r"test_labels.npy has labels in \[1, 6\], outside \[0, 6\)"):
        load_features(f, "purls", K, UNSEEN)
    np.save(f / "test_labels.npy", np.array([5, 1, 4]))
    with pytest.raises(DataError, match="test_feature.npy has 4 rows but test_labels.npy has 3 labels"):
        load_features(f, "purls", K, UNSEEN)
    with pytest.raises(DataError, match=r"outside \[0, 6\)"):
        load_features(_smie(tmp_path / "s", te_y=np.array([1, -1, 4, 4])), "smie", K, UNSEEN)


def _arrays(**over):
    a = {
        "train": _feats([0, 2], 0),
        "train_label": np.array([0, 2]),
        "ztest": _feats([1, 4], 1),
        "z_label": np.array([1, 4]),
        "gtest": _feats([0, 1, 4], 2),
        "g_label": np.array([0, 1, 4]),
    }
    a.update(over)
    return a


def test_validate_split_consistency(tmp_path, caplog):
    ok = validate_feature_folder(_arrays(), tmp_path, K, UNSEEN)
    np.testing.assert_array_equal(ok.g_label, [0, 1, 4])
    with pytest.raises(DataError, match=r"train_label.npy contains unseen classes \[4\]"):
        validate_feature_folder(_arrays(train_label=np.array([0, 4])), tmp_path, K, UNSEEN)
    with pytest.raises(DataError, match=r"z_label.npy contains classes \[2\] that are not in the unseen split"):
        validate_feature_folder(_arrays(z_label=np.array([1, 2])), tmp_path, K, UNSEEN)
    with pytest.raises(DataError, match="g_label.npy has no unseen-class sample"):
        validate_feature_folder(_arrays(g_label=np.array([0, 2, 3])), tmp_path, K, UNSEEN)
    with pytest.raises(DataError, match=r"unseen split .* outside \[0, 6\)"):
        validate_feature_folder(_arrays(), tmp_path, K, np.array([1, 6]))
    with pytest.raises(DataError, match=r"unseen classes \[4\] have no z_label.npy sample.*another split"):
        validate_feature_folder(_arrays(z_label=np.array([1, 1])), tmp_path, K, UNSEEN)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        validate_feature_folder(_arrays(g_label=np.array([1, 4, 4])), tmp_path, K, UNSEEN)
    assert "g_label.npy has no seen-class sample" in caplog.text
    with pytest.raises(DataError, match="gtest.npy and g_label.npy are missing"):
        validate_feature_folder(_arrays(gtest=None, g_label=None), tmp_path)
