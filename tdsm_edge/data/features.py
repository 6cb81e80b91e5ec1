"""Feature folders in the SynSE layout (as published for the SynSE / SA-DVAE / TDSM settings), and
`load_features`, which also reads the PURLS and SMIE layouts (converters in `feature_layouts`).

    train.npy (N, Dz) float32   train_label.npy (N,) int64     seen-class training features
    ztest.npy (Nu, Dz) float32  z_label.npy (Nu,) int64        unseen-class test (ZSL)
    gtest.npy (Ng, Dz) float32  g_label.npy (Ng,) int64        all-class test (GZSL)
    val.npy / val_label.npy     optional: held-out validation features for GZSL calibration

Labels are GLOBAL class indices (0-based, into the dataset's class list).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..io import save_npy

log = logging.getLogger(__name__)

REQUIRED = ("train", "train_label", "ztest", "z_label", "gtest", "g_label")
COMPLETE = "COMPLETE"  # written last by save_feature_folder: a folder without it is half-written
OPTIONAL = ("val", "val_label")
PAIRS = (("train", "train_label"), ("ztest", "z_label"), ("gtest", "g_label"), ("val", "val_label"))
LAYOUTS = ("synse", "purls", "smie")


@dataclass(frozen=True)
class FeatureFolder:
    train: np.ndarray  # (N, Dz) float32
    train_label: np.ndarray  # (N,) int64
    ztest: np.ndarray  # (Nu, Dz)
    z_label: np.ndarray  # (Nu,)
    gtest: np.ndarray  # (Ng, Dz)
    g_label: np.ndarray  # (Ng,)
    val: np.ndarray | None = None  # (Nv, Dz)
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
        if arr is None:  # an optional array left from an earlier extraction must not be loaded with these
            (folder / f"{name}.npy").unlink(missing_ok=True)
        else:
            dtype = np.int64 if name.endswith("label") else np.float32
            save_npy(folder / f"{name}.npy", np.ascontiguousarray(arr, dtype=dtype))
    (folder / COMPLETE).write_text("all arrays written\n")


def is_complete(folder: str | Path) -> bool:
    """True when `save_feature_folder` finished writing `folder` (its marker file exists)."""
    return (Path(folder) / COMPLETE).is_file()


def read_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """np.load without pickle; DataError naming the file when it cannot be read."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as e:
        raise DataError(
            f"cannot read {str(path)!r}: {e}. The file is corrupt or not a plain .npy array "
            "(object arrays need pickle, which is not loaded: re-save it as a numeric array)."
        ) from e


def load_feature_folder(
    folder: str | Path, num_classes: int | None = None, unseen: np.ndarray | None = None
) -> FeatureFolder:
    """Load and validate a SynSE-layout feature folder (checks: `validate_feature_folder`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"feature folder {str(folder)!r} does not exist; run training (which extracts "
            "features) or point to a SynSE-layout folder with train.npy, ztest.npy, gtest.npy."
        )
    arrays: dict[str, np.ndarray | None] = {}
    for name in REQUIRED + OPTIONAL:
        path = folder / f"{name}.npy"
        if not path.is_file():
            if name in REQUIRED:
                raise DataError(
                    f"{str(path)!r} is missing: a feature folder needs {', '.join(n + '.npy' for n in REQUIRED)}."
                )
            arrays[name] = None
            continue
        arrays[name] = read_npy(path)
    return validate_feature_folder(arrays, folder, num_classes, unseen)


def check_feature_pair(
    x: np.ndarray, y: np.ndarray, x_name: str, y_name: str, folder: str | Path, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Check one features/labels pair; returns them as `(N, Dz)` float32 and `(N,)` int64.

    Checks: x is 2-D float and finite, y is 1-D integer with one label per row, labels in
    [0, num_classes). `x_name` / `y_name` name the arrays in error messages.
    """
    if x.ndim != 2 or not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{folder}/{x_name} must be a 2-D float array (N, Dz); got {x.dtype} {x.shape}.")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{folder}/{y_name} must be a 1-D integer array; got {y.dtype} {y.shape}.")
    if len(x) != len(y):
        raise DataError(f"{folder}: {x_name} has {len(x)} rows but {y_name} has {len(y)} labels.")
    if not np.isfinite(x).all():
        raise DataError(f"{folder}/{x_name} contains NaN or Inf values; re-extract the features.")
    if len(y) and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        raise DataError(
            f"{folder}/{y_name} has labels in [{y.min()}, {y.max()}], outside [0, {num_classes}); "
            "labels must be global 0-based class indices of this dataset."
        )
    return x.astype(np.float32, copy=False), y.astype(np.int64, copy=False)


def validate_feature_folder(
    feats: FeatureFolder | Mapping[str, np.ndarray | None],
    folder: str | Path,
    num_classes: int | None = None,
    unseen: np.ndarray | None = None,
    names: Mapping[str, str] | None = None,
) -> FeatureFolder:
    """Validate the arrays of a feature folder (any layout, already in SynSE roles) and build it.

    Args:
        feats: a FeatureFolder, or a mapping from its field names to arrays (val/val_label may be None).
        folder: where the arrays came from, for messages.
        num_classes: labels must lie in [0, num_classes) when given.
        unseen: the split's unseen global class indices; when given, the split checks below run.
        names: how messages name each field (default `<field>.npy`), for layouts with other file names.

    Checks: every pair as in `check_feature_pair`; one feature width Dz across files. With `unseen`:
    train labels are all seen; ztest labels are all unseen and not empty; gtest holds an unseen class.
    Every unseen class must have a ztest sample (else the folder belongs to another split).
    Logged warning (the data is still usable): a gtest without any seen-class sample (GZSL cannot be measured, e.g. PURLS / SMIE publish unseen-only test sets).

    Returns:
        The FeatureFolder with float32 features and int64 labels.
    """
    arrays = (
        dict(feats)
        if isinstance(feats, Mapping)
        else {f.name: getattr(feats, f.name) for f in dataclasses.fields(FeatureFolder)}
    )
    label = {n: (names or {}).get(n, f"{n}.npy") for n in REQUIRED + OPTIONAL}
    dims = set()
    for feat, lab in PAIRS:
        x, y = arrays.get(feat), arrays.get(lab)
        if x is None and y is None:
            if feat in REQUIRED:
                raise DataError(
                    f"{folder}: {label[feat]} and {label[lab]} are missing; a feature folder needs "
                    "train, ztest and gtest features with their labels."
                )
            continue
        if x is None or y is None:
            raise DataError(f"{folder}: {label[feat]} and {label[lab]} must both exist or both be absent.")
        arrays[feat], arrays[lab] = check_feature_pair(x, y, label[feat], label[lab], folder, num_classes)
        dims.add(x.shape[1])
    if len(dims) != 1:
        raise DataError(f"{folder}: feature widths differ between files ({sorted(dims)}); all must share Dz.")
    if unseen is not None:
        _check_split(arrays, folder, num_classes, unseen, label)
    return FeatureFolder(**{n: arrays.get(n) for n in REQUIRED + OPTIONAL})


def _check_split(
    arrays: Mapping[str, np.ndarray], folder, num_classes: int | None, unseen: np.ndarray, label: Mapping[str, str]
) -> None:
    """The split checks of `validate_feature_folder` (labels already checked to be int64 vectors)."""
    unseen_set = set(int(u) for u in np.asarray(unseen).ravel())
    if not unseen_set:
        raise DataError(f"{folder}: the unseen split is empty; pass the split's unseen class indices.")
    if num_classes is not None and not all(0 <= u < num_classes for u in unseen_set):
        raise DataError(
            f"unseen split {sorted(unseen_set)[:10]}... has classes outside [0, {num_classes}); "
            "the split file belongs to another dataset."
        )
    bad_train = sorted(set(arrays["train_label"].tolist()) & unseen_set)
    if bad_train:
        raise DataError(
            f"{folder}: {label['train_label']} contains unseen classes {bad_train[:10]}: the split file "
            "does not match these features (wrong split or wrong folder)."
        )
    z = set(arrays["z_label"].tolist())
    bad_z = sorted(z - unseen_set)
    if bad_z:
        raise DataError(f"{folder}: {label['z_label']} contains classes {bad_z[:10]} that are not in the unseen split.")
    if not z:
        raise DataError(
            f"{folder}: {label['z_label']} has no sample of the unseen classes {sorted(unseen_set)[:10]}, "
            "so zero-shot accuracy cannot be measured. The features belong to another split, or the "
            "labels are local (0..K-1 within a subset) instead of global class indices."
        )
    missing = sorted(unseen_set - z)
    if missing:
        raise DataError(
            f"{folder}: unseen classes {missing[:10]} have no {label['z_label']} sample. Published "
            "folders hold test samples of every unseen class of their split, so these features were "
            "made for another split (e.g. a SynSE folder used for a random SMIE split, whose unseen "
            "classes the encoder may have been trained on); use the folder made for this split."
        )
    g = set(arrays["g_label"].tolist())
    if not g & unseen_set:
        raise DataError(
            f"{folder}: {label['g_label']} has no unseen-class sample; the GZSL test set must hold "
            "both seen and unseen classes (wrong split, or gtest and ztest come from different folders)."
        )
    if not g - unseen_set:
        log.warning(
            "%s: %s has no seen-class sample, so GZSL (seen/unseen/H) cannot be measured on this "
            "folder; ZSL is unaffected",
            folder,
            label["g_label"],
        )


def load_features(
    folder: str | Path,
    layout: str = "auto",
    num_classes: int | None = None,
    unseen: np.ndarray | None = None,
    pool: str | None = None,
) -> FeatureFolder:
    """Load a published feature folder of any supported layout into a validated FeatureFolder.

    Args:
        folder: the feature folder (for SMIE also its parent holding `split_{k}/` folders).
        layout: "synse" (`load_feature_folder`), "purls", "smie" (`feature_layouts`), or "auto":
            detected from the files present (`feature_layouts.detect_layout`).
        num_classes: the dataset's class count; labels must lie in [0, num_classes).
        unseen: the split's unseen global class indices; required by PURLS and SMIE, whose files are
            split into train / ztest / gtest by it.
        pool: PURLS only: how to reduce per-position features `(N, D, ...)` to `(N, D)`
            ("mean" or "purls", see `feature_layouts.pool_features`).

    Returns:
        FeatureFolder with float32 `(N, Dz)` features and int64 global labels, checked by
        `validate_feature_folder`.
    """
    from . import feature_layouts  # imported here: it builds on this module

    if layout not in LAYOUTS + ("auto",):
        raise ConfigError(f"unknown feature layout {layout!r}; choose one of {', '.join(LAYOUTS)} or auto.")
    if layout == "auto":
        layout, folder = feature_layouts.detect_layout(folder, unseen)
        log.info("feature folder %s: detected the %s layout", folder, layout)
    if pool is not None and layout != "purls":
        raise ConfigError(
            f"pool={pool!r} applies to the PURLS layout only (per-position features); the "
            f"{layout} layout holds pooled (N, Dz) features. Leave pool unset."
        )
    if layout == "synse":
        return load_feature_folder(folder, num_classes, unseen)
    if layout == "purls":
        return feature_layouts.load_purls_folder(folder, unseen, num_classes, pool)
    return feature_layouts.load_smie_folder(folder, unseen, num_classes)


class FeatureStats:
    """Per-dimension mean/std of training features, for standardising z before diffusion."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, np.float32)  # (Dz,)
        self.std = np.asarray(std, np.float32)  # (Dz,)

    @classmethod
    def fit(cls, z: np.ndarray, eps: float = 1e-6) -> FeatureStats:
        """Statistics of training features z (N, Dz); eps keeps constant dimensions finite."""
        return cls(z.mean(0), z.std(0) + eps)

    @classmethod
    def identity(cls, dim: int) -> FeatureStats:
        return cls(np.zeros(dim, np.float32), np.ones(dim, np.float32))

    def apply(self, z: np.ndarray) -> np.ndarray:
        """(z - mean) / std as float32, z (N, Dz)."""
        return ((z - self.mean) / self.std).astype(np.float32)
