"""Reading a finished build: `load_built` validates the folder, `split_by_protocol` gives train/test masks.

Numpy only (no torch); the folder layout is described in `tdsm_edge.data.build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import DataError, InputError
from ...io import read_json
from .sources import SOURCES, source_module

COMPLETE = "COMPLETE"  # marker written last by the build
FORMAT_VERSION = 1  # of the output folder layout
PARTS, STATE = "parts", "build.json"  # chunk folder of an unfinished build, and the options that own it
OUTPUTS = ("data.npy", "label.npy", "info.npy", "meta.json", "bad_files.json", COMPLETE)


@dataclass(frozen=True)
class BuiltDataset:
    """A finished build, validated by `load_built`."""

    data: np.ndarray  # (N, 3, frames, V, 2) float32
    label: np.ndarray  # (N,) int64, 0-based
    info: np.ndarray  # (N, K) int64, columns meta["info_columns"]
    meta: dict  # meta.json

    @property
    def names(self) -> list[str]:
        return list(self.meta["names"])

    def __len__(self) -> int:
        return int(self.label.shape[0])


def read_meta(folder: Path) -> dict:
    """meta.json of a build, checked for the keys load_built relies on."""
    try:
        meta = read_json(folder / "meta.json")
    except (OSError, ValueError) as e:
        raise DataError(
            f"cannot read {folder / 'meta.json'}: {e}; the build is damaged, rebuild it with --overwrite."
        ) from e
    missing = [k for k in ("dataset", "frames", "num_classes", "info_columns", "names", "shape") if k not in meta]
    if missing:
        raise DataError(
            f"{folder / 'meta.json'} lacks {', '.join(missing)}; it was not written by this version of "
            "tdsm_edge.data.build: rebuild with --overwrite."
        )
    return meta


def load_built(folder: str | Path, mmap: bool = False) -> BuiltDataset:
    """Load and validate a finished build.

    Args:
        folder: the build's output folder.
        mmap: memory-map data.npy read-only instead of reading it into memory.

    Returns:
        BuiltDataset with data `(N, 3, frames, V, 2)` float32, label `(N,)` int64, info `(N, K)` int64, meta.

    Raises:
        DataError: missing COMPLETE marker or files, or arrays that disagree with meta.json.
    """
    folder = Path(folder)
    if not (folder / COMPLETE).is_file():
        how = (
            "it holds an unfinished build: rerun its build command with --resume"
            if (folder / PARTS).is_dir()
            else "build it with `python -m tdsm_edge.data.build ntu --src DIR --dataset ntu60 --out FOLDER`"
        )
        raise DataError(f"{folder} is not a finished skeleton build (no {COMPLETE} marker); {how}.")
    meta = read_meta(folder)
    arrays = {}
    for name in ("data", "label", "info"):
        try:
            arrays[name] = np.load(
                folder / f"{name}.npy", mmap_mode="r" if mmap and name == "data" else None, allow_pickle=False
            )
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {folder / (name + '.npy')}: {e}; rebuild with --overwrite.") from e
    data, label, info = arrays["data"], arrays["label"], arrays["info"]
    N, K = len(meta["names"]), len(meta["info_columns"])
    problems = []
    if (
        data.dtype != np.float32
        or list(data.shape) != list(meta["shape"])
        or data.shape[:1] != (N,)
        or data.shape[1:3] != (3, int(meta["frames"]))
        or data.shape[4] != 2
    ):
        problems.append(
            f"data.npy is {data.dtype} {data.shape}, expected float32 {tuple(meta['shape'])} "
            f"(N={N}, 3, frames={meta['frames']}, V, 2)"
        )
    if label.dtype != np.int64 or label.shape != (N,):
        problems.append(f"label.npy is {label.dtype} {label.shape}, expected int64 ({N},)")
    elif N and (label.min() < 0 or label.max() >= int(meta["num_classes"])):
        problems.append(f"label.npy holds labels in [{label.min()}, {label.max()}], outside [0, {meta['num_classes']})")
    if info.dtype != np.int64 or info.shape != (N, K):
        problems.append(f"info.npy is {info.dtype} {info.shape}, expected int64 ({N}, {K})")
    if problems:
        raise DataError(
            f"{folder} is inconsistent: {'; '.join(problems)}. The files were changed after the build; "
            "rebuild with --overwrite."
        )
    return BuiltDataset(data, label, info, meta)


def split_by_protocol(info: np.ndarray, dataset: str, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Training and test masks `((N,) bool, (N,) bool)` of an evaluation protocol, from a build's info.

    Delegates to the source that defines `dataset` (NTU: `tdsm_edge.data.ntu.split_by_protocol`:
    "xsub", "xview", and "xset" for ntu120).
    """
    for name in SOURCES:
        mod = source_module(name)
        if dataset in mod.DATASETS:
            return mod.split_by_protocol(info, dataset, protocol)
    known = [d for name in SOURCES for d in source_module(name).DATASETS]
    raise InputError(f"no build source defines dataset {dataset!r}; known: {', '.join(known)}.")
