"""Skeleton joint layouts: joint names, bones, centre joint and left/right pairs (numpy-free data).

A layout is plain data loaded from a JSON file next to this module (`<name>.json`), so that the
lean runtime and engine manifests can record it by name. Indices are 0-based everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import DataError

_HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SkeletonLayout:
    """A skeleton's joint order and topology.

    Attributes:
        name: layout id, e.g. "ntu25" (also the JSON file stem).
        joint_names: V joint names in storage order.
        bones: (child, parent) 0-based joint pairs; a tree over the joints.
        center_joint: joint whose position is the coordinate origin after preprocessing.
        mirror_pairs: (left, right) joint pairs swapped by a horizontal flip.
    """

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    center_joint: int
    mirror_pairs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        V = len(self.joint_names)
        used = [j for pair in self.bones + self.mirror_pairs for j in pair] + [self.center_joint]
        bad = [j for j in used if not 0 <= j < V]
        assert not bad, f"layout {self.name}: joint indices {bad} out of range 0..{V - 1}"

    @property
    def num_joints(self) -> int:
        """V, the number of joints."""
        return len(self.joint_names)

    def index(self, joint: str) -> int:
        """0-based index of a joint name (case-sensitive, e.g. "HipLeft")."""
        try:
            return self.joint_names.index(joint)
        except ValueError as e:
            raise DataError(
                f"layout {self.name!r} has no joint {joint!r}; its joints are {', '.join(self.joint_names)}."
            ) from e

    def mirror_permutation(self) -> tuple[int, ...]:
        """Joint permutation (length V) that swaps every left joint with its right twin."""
        perm = list(range(self.num_joints))
        for a, b in self.mirror_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)

    def to_dict(self) -> dict:
        """JSON-ready description (for engine manifests)."""
        return {
            "name": self.name,
            "joint_names": list(self.joint_names),
            "bones": [list(b) for b in self.bones],
            "center_joint": self.center_joint,
            "mirror_pairs": [list(p) for p in self.mirror_pairs],
        }


def available_layouts() -> list[str]:
    """Names of the layouts shipped with the package."""
    return sorted(p.stem for p in _HERE.glob("*.json"))


@cache
def load_layout(name: str) -> SkeletonLayout:
    """Load a shipped layout by name (e.g. "ntu25").

    Raises:
        DataError: the name is unknown (the message lists the shipped layouts).
    """
    path = _HERE / f"{name}.json"
    if not path.is_file():
        raise DataError(
            f"unknown skeleton layout {name!r}: no file {path.name} in {_HERE}. "
            f"Shipped layouts: {', '.join(available_layouts())}."
        )
    d = json.loads(path.read_text())
    return SkeletonLayout(
        name=d["name"],
        joint_names=tuple(d["joint_names"]),
        bones=tuple((int(a), int(b)) for a, b in d["bones_0based"]),
        center_joint=int(d["center_joint_0based"]),
        mirror_pairs=tuple((int(a), int(b)) for a, b in d["mirror_pairs_0based"]),
    )


NTU25 = load_layout("ntu25")
