"""PKU-MMD (v1, 51 actions) as a build source: one item per labelled action instance of a video.

Implements the source interface of `tdsm_edge.data.build` (DATASETS, LAYOUT, INFO_COLUMNS,
add_arguments, list_items, read_item, split_by_protocol); the file formats are read by
`tdsm_edge.skeleton.pku_reader`.

Protocols: PKU-MMD ships its own train/test video lists (`cross_subject.txt`, `cross_view.txt`)
with the data; pass them to the build (`--xsub-file`, `--xview-file`). Their exact text layout is
not available here, so the reader is tolerant: a line mentioning "train" starts the training list,
one mentioning "valid" or "test" starts the test list, and every video id (`0002-L`) on the lines
that follow is taken. This reading has not been checked against the official files.
"""

from __future__ import annotations

import argparse
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import DataError, InputError
from ..skeleton.pku_reader import list_pku_videos, read_pku_labels, read_pku_skeleton
from .build import BuildItem, Listing

DATASETS = {"pku51": 51}
LAYOUT = "ntu25"
VIEWS = "LMR"  # left, middle, right Kinect
INFO_COLUMNS = ("video", "view", "segment", "xsub_train", "xview_train")  # *_train: 1 train, 0 test, -1 unlisted
PROTOCOLS = ("xsub", "xview")
_VIDEO_ID = re.compile(r"\b(\d{4})-([LMR])\b")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The PKU-MMD options of `python -m tdsm_edge.data.build pku`."""
    p.add_argument("--skeletons", required=True, metavar="DIR", help="skeleton .txt folder (v1: PKU_Skeleton_Renew/)")
    p.add_argument("--labels", required=True, metavar="DIR", help="label .txt folder (v1: Train_Label_PKU_final/)")
    p.add_argument("--xsub-file", default=None, help="the official cross-subject video list (cross_subject.txt)")
    p.add_argument("--xview-file", default=None, help="the official cross-view video list (cross_view.txt)")


def read_protocol_file(path: str | Path) -> dict[str, int]:
    """{video id: 1 (train) or 0 (test)} from an official PKU-MMD protocol file (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"protocol file {str(path)!r} does not exist; pass the cross_subject.txt / cross_view.txt "
            "that come with PKU-MMD."
        )
    side, out = None, {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        low = line.lower()
        if "train" in low:
            side = 1
        elif "valid" in low or "test" in low:
            side = 0
        ids = ["-".join(m) for m in _VIDEO_ID.findall(line)]
        if ids and side is None:
            raise DataError(
                f"{path} line {n}: video ids before any 'train' / 'test' heading; expected the official "
                "layout (a training heading, its ids, a validation/test heading, its ids)."
            )
        for vid in ids:
            if out.get(vid, side) != side:
                raise DataError(f"{path}: video {vid} is listed as both training and test.")
            out[vid] = side
    if not out or set(out.values()) != {0, 1}:
        raise DataError(
            f"{path}: found {len(out)} video ids but not both a training and a test list; is this an "
            "official PKU-MMD protocol file?"
        )
    return out


def list_items(args: argparse.Namespace) -> Listing:
    return list_pku(args.skeletons, args.labels, args.xsub_file, args.xview_file)


def list_pku(skeleton_dir, label_dir, xsub_file=None, xview_file=None) -> Listing:
    """Every labelled action instance of every paired video, in (video id, segment) order."""
    xsub = read_protocol_file(xsub_file) if xsub_file else {}
    xview = read_protocol_file(xview_file) if xview_file else {}
    items, bad = [], []
    videos = list_pku_videos(skeleton_dir, label_dir, unmatched=bad)  # unpaired files are reported, not fatal
    for vid, skel, lab in videos:
        m = _VIDEO_ID.fullmatch(vid)
        if not m:
            bad.append((str(skel), f"file name {vid!r} is not a PKU-MMD video id like 0002-L"))
            continue
        try:
            segments = read_pku_labels(lab)
        except DataError as e:
            bad.append((str(lab), str(e)))
            continue
        number, view = int(m.group(1)), VIEWS.index(m.group(2))
        for k, seg in enumerate(segments):
            items.append(
                BuildItem(
                    f"{vid}_{k:03d}",
                    seg.label,
                    str(skel),
                    (number, view, k, xsub.get(vid, -1), xview.get(vid, -1)),
                    {"start": seg.start, "end": seg.end, "labels": str(lab)},
                )
            )
    return Listing(items=items, files=2 * len(videos), bad=bad)


@lru_cache(maxsize=2)  # items are in video order: consecutive segments reuse the parsed file
def _skeleton(path: str) -> np.ndarray:
    return read_pku_skeleton(path)


def read_item(item: BuildItem) -> np.ndarray:
    """One action instance, `(2, T, 25, 3)` float32 (frames start..end, 1-based inclusive)."""
    skel = _skeleton(item.path)  # (F, M, V, C)
    start, end = int(item.extra["start"]), int(item.extra["end"])
    if end > len(skel):
        raise DataError(
            f"{item.extra['labels']}: segment {start}..{end} runs past the {len(skel)} frames of "
            f"{item.path}; the files do not match or the skeleton file is truncated."
        )
    return np.ascontiguousarray(skel[start - 1 : end].transpose(1, 0, 2, 3))  # (M, T, V, C)


def split_by_protocol(info: np.ndarray, dataset: str, protocol: str) -> tuple[np.ndarray, np.ndarray]:
    """Training and test masks from the official video lists recorded at build time."""
    if dataset not in DATASETS:
        raise InputError(f"unknown PKU-MMD dataset {dataset!r}; use pku51.")
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol {protocol!r} is not defined for PKU-MMD; use xsub or xview.")
    info = np.asarray(info)
    if info.ndim != 2 or info.shape[1] != len(INFO_COLUMNS):
        raise InputError(f"info must be shaped (N, {len(INFO_COLUMNS)}) with columns {INFO_COLUMNS}, got {info.shape}.")
    side = info[:, INFO_COLUMNS.index(f"{protocol}_train")]
    if (side < 0).all():
        raise DataError(
            f"this PKU-MMD build has no {protocol} lists: rebuild with --{protocol}-file "
            f"{'cross_subject' if protocol == 'xsub' else 'cross_view'}.txt."
        )
    if (side < 0).any():
        raise DataError(
            f"{int((side < 0).sum())} recordings are in neither list of the {protocol} protocol file; "
            "the file does not match these videos."
        )
    return side == 1, side == 0
