"""The plug-in interface of a recording source (NTU RGB+D now, PKU-MMD next) and the source registry.

A source is a module registered in SOURCES that defines
    DATASETS: dict[str, int]       dataset name -> number of classes
    LAYOUT: str                    joint layout (tdsm_edge.skeleton.load_layout)
    INFO_COLUMNS: tuple[str, ...]  names of the info.npy columns
    add_arguments(parser)          its own CLI options (e.g. --src); --dataset and the rest are common
    list_items(args) -> Listing    what to build (BuildItems in output order), skip counts, bad files
    read_item(item) -> (M, T, V, 3) float camera coordinates, 0 = missing; raises on a bad file
    split_by_protocol(info, dataset, protocol) -> ((N,) bool train mask, (N,) bool test mask)

`read_item` runs in worker processes, so it must be a module-level function and BuildItem picklable.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ...errors import InputError

SOURCES = {
    "ntu": "tdsm_edge.data.ntu",
    "pku": "tdsm_edge.data.pku",
}  # source name (CLI subcommand) -> module implementing the interface


@dataclass(frozen=True)
class BuildItem:
    """One recording to build. Picklable: it travels to the worker processes."""

    name: str  # unique sample name, e.g. "S001C002P003R002A013"
    label: int  # 0-based class index
    path: str  # the file read_item opens
    info: tuple[int, ...] = ()  # integers for info.npy, one per INFO_COLUMNS of the source
    extra: Mapping[str, Any] | None = None  # source-specific reading hints (e.g. a frame range in a long file)


@dataclass
class Listing:
    """What a source found: the items to build plus what it skipped and why."""

    items: list[BuildItem]  # in output order
    files: int = 0  # files found in the source folders
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (e.g. missing_list)
    bad: list[tuple[str, str]] = field(default_factory=list)  # (file, error) found while listing


def source_module(name: str) -> ModuleType:
    """The module implementing source `name` (see the module docstring for the interface)."""
    if name not in SOURCES:
        raise InputError(f"unknown skeleton source {name!r}; known sources: {', '.join(SOURCES)}.")
    return importlib.import_module(SOURCES[name])
