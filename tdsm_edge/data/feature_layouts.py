"""Readers for the PURLS and SMIE published feature layouts -> `FeatureFolder` (SynSE roles, global labels).

PURLS layout (one folder per split, e.g. `shift_5_r/`):

    train_feature.npy / train_labels.npy   training-side recordings
    val_feature.npy   / val_labels.npy     optional: held-out validation recordings
    test_feature.npy  / test_labels.npy    test-side recordings

SMIE "SynSE setting" (`--track sota`) layout, one folder per split named `split_{k}` (k = number of
unseen classes, e.g. `split_5/`, `split_24/`):

    train.npy / train_label.npy            training features     test.npy / test_label.npy    test features

Both become SynSE roles with the split's unseen classes U:
    train = train rows whose label is not in U        ztest = test rows whose label is in U
    gtest = every test row                            val   = every val row (PURLS only)
Rows left out are logged. This works whether the files hold all classes or, as the public code implies,
are already split (then nothing is left out and gtest == ztest, which `validate_feature_folder` reports:
no GZSL on such a folder).

Assumptions, checked against the public loaders (reference only, nothing copied):
- Labels are GLOBAL 0-based class indices in both layouts. PURLS (`azzh1/PURLS` `data/ntu_60.py`,
  `ntu_120.py`) maps labels through `rs{k}.npy.tolist().index(label)` / `ru{k}`, so its files hold global
  ids, train/val of seen classes only and test of unseen classes only. SMIE (`YujieOuO/SMIE` `procedure.py`,
  `model.py`, SotaProcessor) indexes the all-class text embeddings with train labels and compares test
  labels with `unseen_label[prediction]`, so both are global; its test set holds unseen classes only.
  Section 3.5 of shared/data/ntu/ntu_skeleton_format.md names the files but not the label convention.
- PURLS labels may be saved as a `(2, N)` array (sample names, labels): its loader takes row 1 when
  `len(y) == 2`; row 1 is used here when the array is 2-D with 2 rows. Float or numeric-string labels are
  cast to int64 when every value is a whole number (PURLS calls `.astype(int)`).
- PURLS features may be per-position `(N, D, T', V)` (its loader pools them): `pool` must then say how
  (see `pool_features`). Rows whose features are all zero are dropped, as PURLS' loader does, and logged.
- PURLS reads the labels from `shift_{k}_r/` next to the feature folder; here all files must be in one
  folder (copy or link the label files in).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .features import REQUIRED, FeatureFolder, check_feature_pair, read_npy, validate_feature_folder

log = logging.getLogger(__name__)

PURLS_PAIRS = {
    "train": ("train_feature.npy", "train_labels.npy"),
    "val": ("val_feature.npy", "val_labels.npy"),
    "test": ("test_feature.npy", "test_labels.npy"),
}
SMIE_PAIRS = {"train": ("train.npy", "train_label.npy"), "test": ("test.npy", "test_label.npy")}
# the files each layout needs (PURLS val is optional)
LAYOUT_FILES: dict[str, tuple[str, ...]] = {
    "synse": tuple(f"{n}.npy" for n in REQUIRED),
    "purls": PURLS_PAIRS["train"] + PURLS_PAIRS["test"],
    "smie": SMIE_PAIRS["train"] + SMIE_PAIRS["test"],
}
POOLS = ("mean", "purls")
_POOL_CHUNK = 4096  # rows pooled at a time: bounds the float temporaries for large (N, D, T', V) files


def detect_layout(folder: str | Path, unseen: np.ndarray | None = None) -> tuple[str, Path]:
    """(layout, folder holding its files) from the `.npy` files present in `folder`.

    A folder without files of any layout but with SMIE `split_{k}/` sub-folders resolves to
    `split_{len(unseen)}`. Raises DataError listing the files found and what each layout needs when
    no layout (or more than one) matches.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"feature folder {str(folder)!r} does not exist; point data.features to a folder in the "
            "SynSE, PURLS or SMIE layout."
        )
    complete = [lay for lay, files in LAYOUT_FILES.items() if all((folder / f).is_file() for f in files)]
    if len(complete) == 1:
        return complete[0], folder
    present = sorted(p.name for p in folder.glob("*.npy"))
    if len(complete) > 1:
        raise DataError(
            f"{folder}: holds the files of several layouts ({', '.join(complete)}; found "
            f"{_few(present)}); pass layout= explicitly or remove the stray files."
        )
    if _smie_split_dirs(folder):
        return "smie", _smie_dir(folder, unseen)
    needs = "; ".join(
        f"{lay} needs {', '.join(files)}"
        + (f" (missing {', '.join(f for f in files if f not in present)})" if present else "")
        for lay, files in LAYOUT_FILES.items()
    )
    raise DataError(
        f"{folder}: no known feature layout: found {_few(present) if present else 'no .npy file'}. "
        f"{needs}; SMIE files may also sit in split_{{k}}/ sub-folders."
    )


def load_purls_folder(
    folder: str | Path, unseen: np.ndarray, num_classes: int | None = None, pool: str | None = None
) -> FeatureFolder:
    """Read a PURLS-layout folder into a FeatureFolder (roles and assumptions: module docstring).

    Args:
        unseen: the split's unseen global class indices.
        pool: for per-position features `(N, D, ...)`: "mean" or "purls" (`pool_features`); None
            requires pooled `(N, D)` files.
    Returns:
        FeatureFolder, float32 `(N, D)` features, int64 global labels, validated with `unseen`.
    """
    folder = Path(folder)
    unseen = _require_unseen(unseen, "PURLS")
    if pool is not None and pool not in POOLS:
        raise ConfigError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)} (or leave it unset).")
    _require_files(folder, "purls")
    pairs = {}
    for role, (xf, yf) in PURLS_PAIRS.items():
        if role == "val":  # optional, but not half of it
            have = [(folder / n).is_file() for n in (xf, yf)]
            if not any(have):
                continue
            if not all(have):
                raise DataError(f"{folder}: {xf} and {yf} must both exist or both be absent (no validation set).")
        x = np.array(pool_features(read_npy(folder / xf, mmap=True), pool, xf))  # in memory, not a memmap
        y = _label_vector(read_npy(folder / yf), folder, yf)
        x, y = check_feature_pair(x, y, xf, yf, folder, num_classes)
        keep = np.any(x != 0, axis=1)  # PURLS' loader drops all-zero (padding) rows
        if not keep.all():
            log.warning("%s: dropping %d all-zero rows of %s (as PURLS' loader does)", folder, int((~keep).sum()), xf)
            x, y = x[keep], y[keep]
        pairs[role] = (x, y)
    names = {
        "train": "train_feature.npy[seen rows]",
        "train_label": "train_labels.npy[seen rows]",
        "ztest": "test_feature.npy[unseen rows]",
        "z_label": "test_labels.npy[unseen rows]",
        "gtest": "test_feature.npy",
        "g_label": "test_labels.npy",
        "val": "val_feature.npy",
        "val_label": "val_labels.npy",
    }
    return validate_feature_folder(_synse_roles(pairs, unseen, folder), folder, num_classes, unseen, names)


def load_smie_folder(folder: str | Path, unseen: np.ndarray, num_classes: int | None = None) -> FeatureFolder:
    """Read an SMIE SynSE-setting folder (`split_{k}/` itself or its parent) into a FeatureFolder.

    Roles and assumptions: module docstring. No validation set (SMIE publishes none).
    """
    unseen = _require_unseen(unseen, "SMIE")
    folder = Path(folder)
    if not all((folder / f).is_file() for f in LAYOUT_FILES["smie"]) and _smie_split_dirs(folder):
        folder = _smie_dir(folder, unseen)
    _require_files(folder, "smie")
    pairs = {}
    for role, (xf, yf) in SMIE_PAIRS.items():
        y = _label_vector(read_npy(folder / yf), folder, yf)
        pairs[role] = check_feature_pair(read_npy(folder / xf), y, xf, yf, folder, num_classes)
    names = {
        "train": "train.npy[seen rows]",
        "train_label": "train_label.npy[seen rows]",
        "ztest": "test.npy[unseen rows]",
        "z_label": "test_label.npy[unseen rows]",
        "gtest": "test.npy",
        "g_label": "test_label.npy",
    }
    return validate_feature_folder(_synse_roles(pairs, unseen, folder), folder, num_classes, unseen, names)


def pool_features(x: np.ndarray, pool: str | None, name: str = "features") -> np.ndarray:
    """Reduce per-position features `(N, D, ...)` to `(N, D)`; `(N, D)` input is returned as is.

    pool="mean": average over all positions (what Shift-GCN's own global pooling does).
    pool="purls": L2-normalise each position's D-vector, then average (PURLS' "common" input; an
    all-zero position stays zero instead of becoming NaN).
    """
    if x.ndim <= 2:
        return x
    if pool is None:
        raise DataError(
            f"{name} holds per-position features of shape {x.shape} (N, D, ...), not pooled (N, D) "
            "ones (PURLS publishes them so). Set data.feature_pool: mean (plain average, like Shift-GCN's "
            "global pooling) or data.feature_pool: purls (L2-normalise each D-vector, then average, as PURLS does)."
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"{name} must hold float features; got {x.dtype}.")
    N, D = x.shape[:2]
    out = np.empty((N, D), np.float32)
    for i in range(0, N, _POOL_CHUNK):
        v = np.asarray(x[i : i + _POOL_CHUNK], np.float32).reshape(-1, D, int(np.prod(x.shape[2:])))  # (n, D, P)
        if pool == "purls":
            norm = np.linalg.norm(v, axis=1, keepdims=True)  # (n, 1, P)
            v = v / np.where(norm > 0, norm, 1)
        out[i : i + _POOL_CHUNK] = v.mean(axis=2)
    return out


def _synse_roles(pairs: dict, unseen: np.ndarray, folder: Path) -> dict[str, np.ndarray | None]:
    """train = seen rows of train, ztest = unseen rows of test, gtest = all test rows, val = all val rows."""
    (x_tr, y_tr), (x_te, y_te) = pairs["train"], pairs["test"]
    train_u, test_u = np.isin(y_tr, unseen), np.isin(y_te, unseen)
    if train_u.any():
        log.info("%s: leaving %d unseen-class rows out of the training features", folder, int(train_u.sum()))
    if (~test_u).any():
        log.info("%s: %d seen-class test rows go to gtest only", folder, int((~test_u).sum()))
    x_va, y_va = pairs.get("val", (None, None))
    return {
        "train": x_tr[~train_u],
        "train_label": y_tr[~train_u],
        "ztest": x_te[test_u],
        "z_label": y_te[test_u],
        "gtest": x_te,
        "g_label": y_te,
        "val": x_va,
        "val_label": y_va,
    }


def _label_vector(y: np.ndarray, folder: Path, name: str) -> np.ndarray:
    """1-D int64 labels from the label encodings the PURLS / SMIE files use (module docstring)."""
    if y.ndim == 2 and y.shape[0] == 2:
        y = y[1]  # (sample names, labels) saved as one array
    if y.dtype.kind in "US":
        try:
            return y.astype(np.int64)
        except ValueError:
            raise DataError(
                f"{folder}/{name}: text labels that are not integers (e.g. {y.ravel()[:3].tolist()}); "
                "labels must be global 0-based class indices."
            ) from None
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and np.array_equal(y, np.round(y))):
            raise DataError(
                f"{folder}/{name}: float labels that are not whole numbers; labels must be global "
                "0-based class indices. Wrong file?"
            )
        return y.astype(np.int64)
    return y  # integer (or wrong: check_feature_pair says so)


def _require_unseen(unseen: np.ndarray | None, layout: str) -> np.ndarray:
    if unseen is None:
        raise DataError(
            f"the {layout} layout keeps the split's seen and unseen classes in shared files: pass "
            "unseen= (the split's unseen class indices) to separate them."
        )
    return np.asarray(unseen, np.int64).ravel()


def _require_files(folder: Path, layout: str) -> None:
    if not folder.is_dir():
        raise DataError(f"feature folder {str(folder)!r} does not exist.")
    missing = [f for f in LAYOUT_FILES[layout] if not (folder / f).is_file()]
    if missing:
        found = sorted(p.name for p in folder.glob("*.npy"))
        raise DataError(
            f"{folder}: the {layout} layout needs {', '.join(LAYOUT_FILES[layout])}; missing "
            f"{', '.join(missing)} (found {_few(found) if found else 'no .npy file'})."
        )


def _smie_split_dirs(folder: Path) -> list[Path]:
    return sorted(
        d for d in folder.glob("split_*") if d.is_dir() and all((d / f).is_file() for f in LAYOUT_FILES["smie"])
    )


def _smie_dir(folder: Path, unseen: np.ndarray | None) -> Path:
    """The `split_{k}` sub-folder for a split with k unseen classes."""
    dirs = _smie_split_dirs(folder)
    names = ", ".join(d.name for d in dirs)
    if unseen is None:
        raise DataError(
            f"{folder} holds SMIE split folders ({names}); pass unseen= to pick split_<number of "
            "unseen classes>, or point to one split folder."
        )
    k = len(np.asarray(unseen).ravel())
    if not (folder / f"split_{k}").is_dir():
        raise DataError(
            f"{folder} holds SMIE split folders ({names}) but no split_{k} for this split's {k} "
            "unseen classes; point to the right folder or pick a matching split."
        )
    return folder / f"split_{k}"


def _few(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")
