"""Build a skeleton dataset folder from raw recordings: parse, keep two bodies, preprocess, write arrays.

    python -m tdsm_edge.data.build ntu --src nturgb+d_skeletons --dataset ntu60 --out data/ntu60 \\
        [--frames 64] [--align-view] [--workers 2] [--resume | --overwrite]

    from tdsm_edge.data.build import load_built, split_by_protocol
    built = load_built("data/ntu60")                  # validated arrays + meta.json
    train, test = split_by_protocol(built.info, "ntu60", "xsub")

The output folder holds
    data.npy        (N, 3, frames, V, 2) float32  preprocess_batch output (C, T, V, M), in sample-name order
    label.npy       (N,) int64                    0-based class index
    info.npy        (N, K) int64                  per-sample integers, columns meta["info_columns"]
                                                  (NTU: setup, camera, subject, replication)
    meta.json       dataset, options, sample names in order, counts, tool version
    bad_files.json  [{"file", "error"}] for every file that could not be used (the build goes on without it)
    COMPLETE        written last: a folder without it is unfinished

Modules: `sources` (the plug-in interface of a recording source and its registry), `engine` (the
resumable, parallel build), `folder` (reading and validating a finished build), `__main__` (the CLI).
"""

from __future__ import annotations

from .engine import build_dataset
from .folder import COMPLETE, BuiltDataset, load_built, split_by_protocol
from .sources import SOURCES, BuildItem, Listing, source_module

__all__ = [
    "COMPLETE",
    "SOURCES",
    "BuildItem",
    "BuiltDataset",
    "Listing",
    "build_dataset",
    "load_built",
    "source_module",
    "split_by_protocol",
]
