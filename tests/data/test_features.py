import numpy as np
import pytest

from tdsm_edge.data.features import FeatureFolder, FeatureStats, load_feature_folder, save_feature_folder
from tdsm_edge.errors import DataError


def _folder(rng):
    return FeatureFolder(
        train=rng.normal(size=(20, 8)).astype(np.float32),
        train_label=np.repeat(np.arange(4), 5),
        ztest=rng.normal(size=(6, 8)).astype(np.float32),
        z_label=np.repeat([4, 5], 3),
        gtest=rng.normal(size=(9, 8)).astype(np.float32),
        g_label=np.array([0, 1, 2, 3, 4, 5, 4, 5, 0]),
    )


def test_roundtrip(tmp_path):
    f = _folder(np.random.default_rng(0))
    save_feature_folder(tmp_path, f)
    g = load_feature_folder(tmp_path, num_classes=6, unseen=np.array([4, 5]))
    np.testing.assert_array_equal(g.train, f.train)
    assert g.val is None and g.dim == 8 and g.z_label.dtype == np.int64


def test_errors(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="does not exist"):
        load_feature_folder(tmp_path / "nope")
    save_feature_folder(tmp_path, _folder(rng))
    with pytest.raises(DataError, match="outside"):
        load_feature_folder(tmp_path, num_classes=5)
    with pytest.raises(DataError, match="unseen classes"):
        load_feature_folder(tmp_path, num_classes=6, unseen=np.array([0, 4, 5]))
    with pytest.raises(DataError, match="not in the unseen split"):
        load_feature_folder(tmp_path, num_classes=6, unseen=np.array([4]))
    np.save(tmp_path / "z_label.npy", np.zeros(5, np.int64))
    with pytest.raises(DataError, match="6 rows but"):
        load_feature_folder(tmp_path)
    (tmp_path / "gtest.npy").unlink()
    with pytest.raises(DataError, match="gtest.npy' is missing"):
        load_feature_folder(tmp_path)


def test_width_and_nan(tmp_path):
    f = _folder(np.random.default_rng(1))
    save_feature_folder(tmp_path, f)
    np.save(tmp_path / "ztest.npy", np.zeros((6, 7), np.float32))
    with pytest.raises(DataError, match="widths differ"):
        load_feature_folder(tmp_path)
    bad = f.ztest.copy()
    bad[0, 0] = np.nan
    np.save(tmp_path / "ztest.npy", bad)
    with pytest.raises(DataError, match="NaN"):
        load_feature_folder(tmp_path)


def test_stats():
    z = np.random.default_rng(0).normal(3, 2, size=(500, 4)).astype(np.float32)
    s = FeatureStats.fit(z).apply(z)
    np.testing.assert_allclose(s.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(s.std(0), 1, atol=1e-4)
