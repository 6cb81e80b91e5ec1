"""Seen/unseen class splits of synthact, stored in the NTU split-file format.

Files in `splits/` (1-D int64 `.npy` of 0-based class indices, sorted, plus a `.json` twin holding
the same list), named as the SynSE/TDSM NTU files (`ru{k}` unseen, `rs{K-k}` seen):

- `ru5` / `rs48`: 5 unseen classes. `ru12` / `rs41`: 12 unseen classes. In both, every unseen
  class is a NEW composition: no seen class has its (primitive, part) pair, but its primitive and
  its part each occur in some seen class (e.g. "circle left leg" unseen, "circle right arm" and
  "kick with left leg" seen).
- `ru_side5` / `rs_side48` (split name `side5`): 5 unseen classes, each differing from a seen
  class only by side (e.g. "kick with right leg" unseen, "kick with left leg" seen).

The unseen lists are curated by name in `UNSEEN`; `make_splits()` turns them into index arrays and
`write_splits()` regenerates the files (`python -m tdsm_edge.data.synthact --write-splits`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...errors import DataError
from .classes import CLASSES, NUM_CLASSES, find_class

SPLIT_DIR = Path(__file__).resolve().parent / "splits"

# split name -> unseen class names (spread over primitives and parts)
UNSEEN: dict[str, tuple[str, ...]] = {
    "ru5": ("circle left leg", "circle right leg", "shake head", "turn around", "jump in place"),
    "ru12": (
        "circle left leg",
        "circle right leg",
        "shake head",
        "hop on left leg",
        "hop on right leg",
        "swing left arm",
        "swing right arm",
        "turn torso to the left",
        "turn torso to the right",
        "raise left leg",
        "raise right leg",
        "circle head",
    ),
    "side5": (
        "wave left hand",
        "kick with right leg",
        "punch with left fist",
        "bend to the right",
        "turn head to the left",
    ),
}
COMPOSITIONAL = ("ru5", "ru12")  # splits whose unseen classes are new (primitive, part) pairs
SIDE_ONLY = ("side5",)  # splits whose unseen classes differ from a seen class only by side


def split_files(name: str) -> tuple[str, str]:
    """File stems (unseen, seen) of a split, e.g. ("ru5", "rs48") or ("ru_side5", "rs_side48")."""
    k = len(UNSEEN[name])
    if name.startswith("ru"):
        return f"ru{k}", f"rs{NUM_CLASSES - k}"
    prefix = name[: -len(str(k))]  # "side"
    return f"ru_{prefix}{k}", f"rs_{prefix}{NUM_CLASSES - k}"


def make_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split as (unseen, seen) sorted int64 index arrays, from the curated `UNSEEN` names."""
    out = {}
    for name, names in UNSEEN.items():
        unseen = np.sort(np.array([find_class(n).index for n in names], dtype=np.int64))
        seen = np.setdiff1d(np.arange(NUM_CLASSES, dtype=np.int64), unseen)
        out[name] = (unseen, seen)
    return out


def write_splits(directory: Path = SPLIT_DIR) -> list[Path]:
    """Write every split's `.npy` and `.json` files into `directory`; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, arrays in make_splits().items():
        for stem, arr in zip(split_files(name), arrays):
            np.save(directory / f"{stem}.npy", arr)
            (directory / f"{stem}.json").write_text(json.dumps(arr.tolist()) + "\n")
            written += [directory / f"{stem}.npy", directory / f"{stem}.json"]
    return written


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a split by name ("ru5", "ru12" or "side5") from the shipped files.

    Returns:
        (unseen, seen): sorted int64 arrays of global class indices, disjoint, covering all classes.

    Raises:
        DataError: unknown split name (the message lists the valid ones) or a missing/corrupt file.
    """
    if name not in UNSEEN:
        raise DataError(
            f"unknown synthact split {name!r}; valid splits are {', '.join(UNSEEN)} "
            "(see tdsm_edge/data/synthact/splits.py)."
        )
    arrays = []
    for stem in split_files(name):
        path = SPLIT_DIR / f"{stem}.npy"
        try:
            arrays.append(np.load(path, allow_pickle=False).astype(np.int64))
        except (OSError, ValueError) as e:
            raise DataError(
                f"cannot read split file {path}: {e}. Regenerate the split files with "
                "python -m tdsm_edge.data.synthact --write-splits."
            ) from e
    unseen, seen = arrays
    if np.intersect1d(unseen, seen).size or unseen.size + seen.size != NUM_CLASSES:
        raise DataError(
            f"split {name!r} files are inconsistent (overlapping or incomplete class sets); "
            "regenerate them with python -m tdsm_edge.data.synthact --write-splits."
        )
    return unseen, seen


def split_membership(index: int) -> list[str]:
    """Names of the splits in which class `index` is unseen."""
    return [name for name, (unseen, _) in make_splits().items() if index in unseen]


def check_compositional(unseen: np.ndarray, seen: np.ndarray) -> list[str]:
    """Problems (empty if none) with 'every unseen class is a new composition of seen parts'."""
    s = [CLASSES[i] for i in seen]
    pairs = {(c.primitive, c.part) for c in s}
    problems = []
    for i in unseen:
        c = CLASSES[i]
        if (c.primitive, c.part) in pairs:
            problems.append(f"{c.name!r}: ({c.primitive}, {c.part}) also occurs in a seen class")
        if c.primitive not in {x.primitive for x in s}:
            problems.append(f"{c.name!r}: primitive {c.primitive!r} occurs in no seen class")
        if c.part not in {x.part for x in s}:
            problems.append(f"{c.name!r}: part {c.part!r} occurs in no seen class")
    return problems


def check_side_only(unseen: np.ndarray, seen: np.ndarray) -> list[str]:
    """Problems (empty if none) with 'every unseen class has a seen twin differing only by side'."""
    s = {(CLASSES[i].primitive, CLASSES[i].part, CLASSES[i].side) for i in seen}
    problems = []
    for i in unseen:
        c = CLASSES[i]
        twin = {"left": "right", "right": "left"}.get(c.side)
        if twin is None or (c.primitive, c.part, twin) not in s:
            problems.append(f"{c.name!r}: no seen class differs from it only by left/right side")
    return problems
