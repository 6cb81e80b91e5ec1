"""Feature folders in the SynSE layout (as published for the SynSE / PURLS / SMIE settings).

    train.npy (N, Dz) float32   train_label.npy (N,) int64     seen-class training features
    ztest.npy (Nu, Dz) float32  z_label.npy (Nu,) int64        unseen-class test (ZSL)
    gtest.npy (Ng, Dz) float32  g_label.npy (Ng,) int64        all-class test (GZSL)
    val.npy / val_label.npy     optional: held-out validation features for GZSL calibration

Labels are GLOBAL class indices (0-based, into the dataset's class list).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import save_npy

REQUIRED = ("train", "train_label", "ztest", "z_label", "gtest", "g_label")
COMPLETE = "COMPLETE"  # written last by save_feature_folder: a folder without it is half-written
OPTIONAL = ("val", "val_label")


@dataclass(frozen=True)
class FeatureFolder:
    train: np.ndarray        # (N, Dz) float32
    train_label: np.ndarray  # (N,) int64
    ztest: np.ndarray        # (Nu, Dz)
    z_label: np.ndarray      # (Nu,)
    gtest: np.ndarray        # (Ng, Dz)
    g_label: np.ndarray      # (Ng,)
    val: np.ndarray | None = None        # (Nv, Dz)
    val_label: np.ndarray | None = None  # (Nv,)

    @property
    def dim(self) -> int:
        return int(self.train.shape[1])


def save_feature_folder(folder: str | Path, feats: FeatureFolder) -> None:
    """Write every array of `feats` as .npy (atomically) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE).unlink(missing_ok=True)
    for name in REQUIRED + OPTIONAL:
        arr = getattr(feats, name)
        if arr is not None:
            dtype = np.int64 if name.endswith("label") else np.float32
            save_npy(folder / f"{name}.npy", np.ascontiguousarray(arr, dtype=dtype))
    (folder / COMPLETE).write_text("all arrays written\n")


def is_complete(folder: str | Path) -> bool:
    """True when `save_feature_folder` finished writing `folder` (its marker file exists)."""
    return (Path(folder) / COMPLETE).is_file()


def load_feature_folder(folder: str | Path, num_classes: int | None = None,
                        unseen: np.ndarray | None = None) -> FeatureFolder:
    """Load and validate a SynSE-layout feature folder.

    Checks: required files exist; features are 2-D float with one width; labels are 1-D integers
    matching the feature rows, inside [0, num_classes); when `unseen` is given, train labels are all
    seen and ztest labels all unseen.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"feature folder {str(folder)!r} does not exist; run training (which extracts "
                        "features) or point to a SynSE-layout folder with train.npy, ztest.npy, gtest.npy.")
    arrays: dict[str, np.ndarray | None] = {}
    for name in REQUIRED + OPTIONAL:
        path = folder / f"{name}.npy"
        if not path.is_file():
            if name in REQUIRED:
                raise DataError(f"{str(path)!r} is missing: a feature folder needs {', '.join(n + '.npy' for n in REQUIRED)}.")
            arrays[name] = None
            continue
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except Exception as e:
            raise DataError(f"cannot read {str(path)!r}: {e}. The file is corrupt or not a .npy array.") from e
    dims = set()
    for feat, lab in (("train", "train_label"), ("ztest", "z_label"), ("gtest", "g_label"), ("val", "val_label")):
        x, y = arrays[feat], arrays[lab]
        if x is None and y is None:
            continue
        if x is None or y is None:
            raise DataError(f"{folder}: {feat}.npy and {lab}.npy must both exist or both be absent.")
        if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
            raise DataError(f"{folder}/{feat}.npy must be a 2-D float array (N, Dz); got {x.dtype} {x.shape}.")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{folder}/{lab}.npy must be a 1-D integer array; got {y.dtype} {y.shape}.")
        if len(x) != len(y):
            raise DataError(f"{folder}: {feat}.npy has {len(x)} rows but {lab}.npy has {len(y)} labels.")
        if not np.isfinite(x).all():
            raise DataError(f"{folder}/{feat}.npy contains NaN or Inf values; re-extract the features.")
        if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
            raise DataError(f"{folder}/{lab}.npy has labels in [{y.min()}, {y.max()}], outside [0, {num_classes}); "
                            "labels must be global 0-based class indices of this dataset.")
        dims.add(x.shape[1])
        arrays[feat], arrays[lab] = x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)
    if len(dims) != 1:
        raise DataError(f"{folder}: feature widths differ between files ({sorted(dims)}); all must share Dz.")
    if unseen is not None:
        unseen_set = set(int(u) for u in unseen)
        bad_train = sorted(set(arrays["train_label"].tolist()) & unseen_set)
        if bad_train:
            raise DataError(f"{folder}: train_label.npy contains unseen classes {bad_train[:10]}: the split file "
                            "does not match these features (wrong split or wrong folder).")
        bad_z = sorted(set(arrays["z_label"].tolist()) - unseen_set)
        if bad_z:
            raise DataError(f"{folder}: z_label.npy contains classes {bad_z[:10]} that are not in the unseen split.")
    return FeatureFolder(**arrays)  # type: ignore[arg-type]


class FeatureStats:
    """Per-dimension mean/std of training features, for standardising z before diffusion."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, np.float32)  # (Dz,)
        self.std = np.asarray(std, np.float32)    # (Dz,)

    @classmethod
    def fit(cls, z: np.ndarray, eps: float = 1e-6) -> "FeatureStats":
        """Statistics of training features z (N, Dz); eps keeps constant dimensions finite."""
        return cls(z.mean(0), z.std(0) + eps)

    @classmethod
    def identity(cls, dim: int) -> "FeatureStats":
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))

    def apply(self, z: np.ndarray) -> np.ndarray:
        """(z - mean) / std as float32, z (N, Dz)."""
        return ((z - self.mean) / self.std).astype(np.float32)
