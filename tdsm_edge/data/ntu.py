"""NTU RGB+D 60/120 as a build source: which files a dataset holds, how one is read, its protocols.

Implements the source interface of `tdsm_edge.data.build` (DATASETS, LAYOUT, INFO_COLUMNS,
add_arguments, list_items, read_item, split_by_protocol); every NTU-specific rule of the build
lives here. The file format itself is in `tdsm_edge.skeleton.ntu_reader`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ..skeleton.ntu_reader import NTU_DATASETS, load_missing_list, parse_sample_name, read_skeleton_file, select_bodies
from .build import BuildItem, Listing

DATASETS = {name: actions for name, (_, actions) in NTU_DATASETS.items()}  # name -> number of classes
LAYOUT = "ntu25"
INFO_COLUMNS = ("setup", "camera", "subject", "replication")  # columns of info.npy, from the sample name

# Training side of the standard protocols, copied from shared/data/ntu/ntu_eval_protocols.json:
# xsub NTU-60 from yysijie/st-gcn@221c0e15 tools/ntu_gendata.py (same list in Shift-GCN); xsub NTU-120
# and xset (even setups train) from kchengiva/Shift-GCN@20276b64 data_gen/ntu120_gendata.py;
# xview (cameras 2 and 3 train, camera 1 tests) from st-gcn tools/ntu_gendata.py.
_XSUB60 = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
XSUB_TRAIN_SUBJECTS = {
    "ntu60": _XSUB60,
    "ntu120": _XSUB60
    + (
        45,
        46,
        47,
        49,
        50,
        52,
        53,
        54,
        55,
        56,
        57,
        58,
        59,
        70,
        74,
        78,
        80,
        81,
        82,
        83,
        84,
        85,
        86,
        89,
        91,
        92,
        93,
        94,
        95,
        97,
        98,
        100,
        103,
    ),
}
XVIEW_TRAIN_CAMERAS = (2, 3)
XSET_TRAIN_SETUPS = tuple(range(2, 33, 2))
PROTOCOLS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xview", "xset")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The NTU options of `python -m tdsm_edge.data.build ntu` (the common ones are added by build)."""
    p.add_argument(
        "--src",
        nargs="+",
        required=True,
        metavar="DIR",
        help="folder(s) holding the .skeleton files (NTU-120 comes in two archives: pass both folders)",
    )


def list_items(args: argparse.Namespace) -> Listing:
    return list_ntu(args.src, args.dataset)


def list_ntu(src: Sequence[str | Path], dataset: str) -> Listing:
    """The samples of `dataset` among the `*.skeleton` files of the `src` folders, sorted by name.

    Files of other setups or actions (an NTU-120 folder built as ntu60) and files on the official
    missing-skeleton list are skipped and counted; a file whose name is not a sample name is reported bad.
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown NTU dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    last_setup, last_action = NTU_DATASETS[dataset]
    missing = load_missing_list(dataset)
    found: dict[str, tuple[Path, object]] = {}
    bad: list[tuple[str, str]] = []
    skipped = {"other_dataset": 0, "missing_list": 0}
    n_files = 0
    for folder in map(Path, src):
        if not folder.is_dir():
            raise DataError(
                f"source folder {str(folder)!r} does not exist; pass the folder that holds the "
                "extracted .skeleton files (e.g. nturgb+d_skeletons/)."
            )
        for path in sorted(folder.glob("*.skeleton")):
            n_files += 1
            try:
                s = parse_sample_name(path)
            except DataError as e:
                bad.append((str(path), str(e)))
                continue
            if s.setup > last_setup or s.action > last_action:
                skipped["other_dataset"] += 1
            elif s.name in missing:
                skipped["missing_list"] += 1
            elif s.name in found:
                raise DataError(
                    f"sample {s.name} is in two source files, {found[s.name][0]} and {path}; pass each "
                    "folder once and remove duplicate copies."
                )
            else:
                found[s.name] = (path, s)
    if n_files == 0:
        raise DataError(
            f"no .skeleton files in {', '.join(map(str, src))}; point --src at the folder(s) of the "
            "extracted NTU RGB+D skeleton archive(s)."
        )
    items = [
        BuildItem(name, s.label, str(path), (s.setup, s.camera, s.subject, s.replication))
        for name, (path, s) in sorted(found.items())
    ]
    return Listing(items=items, files=n_files, skipped=skipped, bad=bad)


def read_item(item: BuildItem) -> np.ndarray:
    """Read one NTU sample: its two most active bodies, `(2, T, 25, 3)` float32 camera coordinates.

    Raises:
        DataError: malformed file, or no body tracked in any frame.
    """
    f = read_skeleton_file(item.path)
    if not f.present.any():
        raise DataError(
            f"{item.path}: no body is listed in any of its {f.num_frames} frames, so there is no "
            "skeleton to learn from; the sample is skipped (it belongs on the missing-skeleton list)."
        )
    return select_bodies(f.xyz)


def split_by_protocol(info: np.ndarray, dataset: str, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Training and test masks `((N,) bool, (N,) bool)` of a standard NTU protocol.

    Args:
        info: `(N, 4)` int, columns INFO_COLUMNS (setup, camera, subject, replication), e.g. a build's info.npy.
        dataset: "ntu60" or "ntu120".
        protocol: "xsub" (training subjects), "xview" (cameras 2, 3 train) or "xset" (ntu120 only:
            even setups train).
    """
    if dataset not in PROTOCOLS:
        raise InputError(f"unknown NTU dataset {dataset!r}; choose one of {', '.join(PROTOCOLS)}.")
    if protocol not in PROTOCOLS[dataset]:
        raise InputError(
            f"protocol {protocol!r} is not defined for {dataset}; use one of "
            f"{', '.join(PROTOCOLS[dataset])} (xset exists for ntu120 only)."
        )
    info = np.asarray(info)
    if info.ndim != 2 or info.shape[1] != len(INFO_COLUMNS) or not np.issubdtype(info.dtype, np.integer):
        raise InputError(
            f"info must be an integer array shaped (N, {len(INFO_COLUMNS)}) with columns "
            f"{', '.join(INFO_COLUMNS)}, got {info.dtype} {info.shape}; pass a build's info array."
        )
    column, values = {
        "xsub": ("subject", XSUB_TRAIN_SUBJECTS[dataset]),
        "xview": ("camera", XVIEW_TRAIN_CAMERAS),
        "xset": ("setup", XSET_TRAIN_SETUPS),
    }[protocol]
    train = np.isin(info[:, INFO_COLUMNS.index(column)], values)  # (N,)
    return train, ~train
