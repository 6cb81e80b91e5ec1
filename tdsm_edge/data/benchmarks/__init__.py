"""Benchmark datasets (NTU RGB+D 60 / 120, PKU-MMD): class text, zero-shot splits, paper settings.

Numpy and the standard library only. The files live next to this module (see `README.md` here for
their sources):

- `classes/ntu120.csv`, `classes/pku51.csv`: `index0, action_id, name, description`. The names are
  the official ones; the one-sentence descriptions (the second prompt set) are written by this
  project. NTU-60 is the first 60 rows of NTU-120.
- `splits/<dataset>/<stem>.npy` (+ a `.json` twin): 1-D int64 0-based class indices, SynSE naming
  (`ru{k}` unseen, `rs{N-k}` seen, `rv{k}_0` / `rs{..}_0` GZSL-gate validation).

    from tdsm_edge.data import benchmarks
    unseen, seen = benchmarks.load_split("ntu60", "ru5")      # [10, 11, 19, 26, 56], 55 others
    benchmarks.SETTINGS["synse_ntu60_55_5"].paper_top1        # 86.49
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ...errors import DataError

DATA_DIR = Path(__file__).resolve().parent
CLASS_DIR = DATA_DIR / "classes"
SPLIT_DIR = DATA_DIR / "splits"

NUM_CLASSES: dict[str, int] = {"ntu60": 60, "ntu120": 120, "pku51": 51}

# the class table each dataset reads (ntu60 takes the first 60 rows of ntu120)
_CLASS_FILES: dict[str, str] = {"ntu60": "ntu120.csv", "ntu120": "ntu120.csv", "pku51": "pku51.csv"}

# split name -> (unseen file stem, seen file stem); `load_split` accepts exactly these names
SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "ntu60": {
        "ru5": ("ru5", "rs55"),
        "ru12": ("ru12", "rs48"),  # SynSE
        "ru20": ("ru20", "rs40"),
        "ru30": ("ru30", "rs30"),  # PURLS
        "smie1": ("ru5_smie1", "rs55_smie1"),
        "smie2": ("ru5_smie2", "rs55_smie2"),
        "smie3": ("ru5_smie3", "rs55_smie3"),  # SMIE random
    },
    "ntu120": {
        "ru10": ("ru10", "rs110"),
        "ru24": ("ru24", "rs96"),  # SynSE
        "ru40": ("ru40", "rs80"),
        "ru60": ("ru60", "rs60"),  # PURLS
        "smie4": ("ru10_smie4", "rs110_smie4"),
        "smie5": ("ru10_smie5", "rs110_smie5"),
        "smie6": ("ru10_smie6", "rs110_smie6"),  # SMIE random
    },
    "pku51": {
        "ru5": ("ru5", "rs46"),
        "ru12": ("ru12", "rs39"),  # STAR 46/5, 39/12
        "smie7": ("ru5_smie7", "rs46_smie7"),
        "smie8": ("ru5_smie8", "rs46_smie8"),
        "smie9": ("ru5_smie9", "rs46_smie9"),  # SMIE random
    },
}

# SynSE GZSL-gate validation: split name -> (pseudo-unseen stem, pseudo-seen stem), both inside the
# split's seen classes. ntu120/ru10 uses the derived 100-class list: the upstream rs100_0.npy holds
# only 81 classes (shipped unchanged for reference; see README.md).
VAL_SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "ntu60": {"ru5": ("rv5_0", "rs50_0"), "ru12": ("rv12_0", "rs36_0")},
    "ntu120": {"ru10": ("rv10_0", "rs100_0_derived_complete"), "ru24": ("rv24_0", "rs72_0")},
    "pku51": {},
}


@dataclass(frozen=True)
class BenchmarkSetting:
    """One zero-shot benchmark setting of the paper's tables."""

    name: str  # e.g. "synse_ntu60_55_5" (protocol, dataset, seen, unseen)
    dataset: str  # key of NUM_CLASSES
    split: str  # the split the config runs by default
    splits: tuple[str, ...]  # every split of the setting (the protocol averages over them)
    paper_top1: float | None  # TDSM top-1 % on the unseen classes; None: not reported in our source
    config: str  # file name under the repository's configs/


def _setting(name: str, dataset: str, splits: tuple[str, ...], top1: float | None, config: str) -> BenchmarkSetting:
    return BenchmarkSetting(name, dataset, splits[0], splits, top1, config)


# the paper's numbers are those quoted in DESIGN.md ("Paper results")
SETTINGS: dict[str, BenchmarkSetting] = {
    s.name: s
    for s in (
        _setting("synse_ntu60_55_5", "ntu60", ("ru5",), 86.49, "ntu60_55_5.yaml"),
        _setting("synse_ntu60_48_12", "ntu60", ("ru12",), 56.03, "ntu60_48_12.yaml"),
        _setting("synse_ntu120_110_10", "ntu120", ("ru10",), 74.15, "ntu120_110_10.yaml"),
        _setting("synse_ntu120_96_24", "ntu120", ("ru24",), 65.06, "ntu120_96_24.yaml"),
        _setting("purls_ntu60_40_20", "ntu60", ("ru20",), 36.09, "ntu60_40_20.yaml"),
        _setting("purls_ntu60_30_30", "ntu60", ("ru30",), 25.88, "ntu60_30_30.yaml"),
        _setting("purls_ntu120_80_40", "ntu120", ("ru40",), 36.95, "ntu120_80_40.yaml"),
        _setting("purls_ntu120_60_60", "ntu120", ("ru60",), 27.21, "ntu120_60_60.yaml"),
        _setting("smie_ntu60_55_5", "ntu60", ("smie1", "smie2", "smie3"), None, "ntu60_smie.yaml"),
        _setting("smie_ntu120_110_10", "ntu120", ("smie4", "smie5", "smie6"), None, "ntu120_smie.yaml"),
        _setting("smie_pku51_46_5", "pku51", ("smie7", "smie8", "smie9"), 70.76, "pku51_46_5.yaml"),
        _setting("star_pku51_39_12", "pku51", ("ru12",), None, "pku51_39_12.yaml"),
    )
}


def _check_dataset(dataset: str) -> None:
    if dataset not in NUM_CLASSES:
        raise DataError(
            f"unknown benchmark dataset {dataset!r}; choose one of {', '.join(NUM_CLASSES)} "
            "(synthact has its own module, tdsm_edge.data.synthact)."
        )


@cache
def _class_rows(dataset: str) -> tuple[tuple[str, str], ...]:
    """(name, description) per class, in index order, validated against NUM_CLASSES."""
    _check_dataset(dataset)
    path = CLASS_DIR / _CLASS_FILES[dataset]
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise DataError(f"cannot read the class table {path}: {e}; reinstall tdsm-edge.") from e
    n = NUM_CLASSES[dataset]
    rows = rows[:n]
    if len(rows) != n or [int(r["index0"]) for r in rows] != list(range(n)):
        raise DataError(f"{path} must hold rows index0 = 0..{n - 1} in order for {dataset}; the file is damaged.")
    return tuple((r["name"], r["description"]) for r in rows)


def class_names(dataset: str) -> list[str]:
    """The official class names of `dataset`, in global index order (len = NUM_CLASSES[dataset])."""
    return [name for name, _ in _class_rows(dataset)]


def class_descriptions(dataset: str) -> list[str]:
    """The project's one-sentence motion descriptions of `dataset`'s classes, in global index order."""
    return [desc for _, desc in _class_rows(dataset)]


def available_splits(dataset: str) -> list[str]:
    """Split names `load_split` accepts for `dataset`, e.g. ["ru5", "ru12", ..., "smie1", ...]."""
    _check_dataset(dataset)
    return list(SPLITS[dataset])


def _read_indices(dataset: str, stem: str) -> np.ndarray:
    """A split file as a 1-D int64 array: the `.npy` when it exists, else its `.json`."""
    base = SPLIT_DIR / dataset / stem
    try:
        if base.with_suffix(".npy").is_file():
            arr = np.load(base.with_suffix(".npy"), allow_pickle=False)
        else:
            arr = np.asarray(json.loads(base.with_suffix(".json").read_text()))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read split file {base}.npy/.json: {e}; reinstall tdsm-edge.") from e
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"split file {base} must hold a 1-D integer list, got {arr.dtype} {arr.shape}.")
    return arr.astype(np.int64)


def _check_indices(arr: np.ndarray, n: int, what: str) -> np.ndarray:
    """Sorted copy of `arr`, after checking the indices are unique and inside 0..n-1."""
    out = np.sort(arr)
    if out.size and (out[0] < 0 or out[-1] >= n):
        raise DataError(f"{what}: class indices must lie in 0..{n - 1}, got {out.tolist()}.")
    if np.unique(out).size != out.size:
        raise DataError(f"{what}: repeated class indices in {out.tolist()}.")
    return out


def load_split(dataset: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a zero-shot split of a benchmark dataset.

    Args:
        dataset: "ntu60", "ntu120" or "pku51".
        name: a split name from `available_splits(dataset)`, e.g. "ru5" or "smie1".

    Returns:
        (unseen, seen): sorted int64 arrays (Ku,), (Ks,) of global 0-based class indices,
        disjoint and together covering 0..N-1.

    Raises:
        DataError: unknown dataset or split (the message lists the valid names), or split files
            that are unreadable, overlapping or incomplete.
    """
    _check_dataset(dataset)
    if name not in SPLITS[dataset]:
        raise DataError(
            f"unknown {dataset} split {name!r}; available splits: {', '.join(SPLITS[dataset])} "
            "(see tdsm_edge/data/benchmarks/README.md)."
        )
    n = NUM_CLASSES[dataset]
    u_stem, s_stem = SPLITS[dataset][name]
    unseen = _check_indices(_read_indices(dataset, u_stem), n, f"{dataset}/{u_stem}")
    if (SPLIT_DIR / dataset / f"{s_stem}.npy").is_file():
        seen = _check_indices(_read_indices(dataset, s_stem), n, f"{dataset}/{s_stem}")
        if np.intersect1d(unseen, seen).size or unseen.size + seen.size != n:
            raise DataError(
                f"{dataset} split {name!r}: {u_stem} and {s_stem} must be disjoint and cover "
                f"0..{n - 1}; the files are damaged, reinstall tdsm-edge."
            )
    else:
        seen = np.setdiff1d(np.arange(n, dtype=np.int64), unseen)
    return unseen, seen


def load_val_split(dataset: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """SynSE's GZSL-gate validation split of a zero-shot split (pseudo-unseen classes drawn from its seen set).

    Returns:
        (pseudo_unseen, pseudo_seen): sorted int64 arrays that partition `load_split(dataset, name)[1]`.

    Raises:
        DataError: the split has no validation files (only SynSE's NTU splits have them).
    """
    seen = load_split(dataset, name)[1]
    if name not in VAL_SPLITS[dataset]:
        raise DataError(
            f"{dataset} split {name!r} has no GZSL-gate validation files; splits that have one: "
            f"{', '.join(VAL_SPLITS[dataset]) or 'none'}."
        )
    n = NUM_CLASSES[dataset]
    v_stem, s_stem = VAL_SPLITS[dataset][name]
    v = _check_indices(_read_indices(dataset, v_stem), n, f"{dataset}/{v_stem}")
    s = _check_indices(_read_indices(dataset, s_stem), n, f"{dataset}/{s_stem}")
    if np.intersect1d(v, s).size or not np.array_equal(np.union1d(v, s), seen):
        raise DataError(
            f"{dataset}: {v_stem} and {s_stem} must partition the seen classes of split {name!r}; "
            "the files are damaged, reinstall tdsm-edge."
        )
    return v, s
