"""The NTU-25 layout: joint order, bone tree, centre joint and mirror pairs."""

from __future__ import annotations

import json

import pytest

from tdsm_edge.errors import DataError
from tdsm_edge.skeleton import NTU25, available_layouts, load_layout
from tdsm_edge.skeleton.layout import _HERE

NTU_ORDER = [
    "SpineBase",
    "SpineMid",
    "Neck",
    "Head",
    "ShoulderLeft",
    "ElbowLeft",
    "WristLeft",
    "HandLeft",
    "ShoulderRight",
    "ElbowRight",
    "WristRight",
    "HandRight",
    "HipLeft",
    "KneeLeft",
    "AnkleLeft",
    "FootLeft",
    "HipRight",
    "KneeRight",
    "AnkleRight",
    "FootRight",
    "SpineShoulder",
    "HandTipLeft",
    "ThumbLeft",
    "HandTipRight",
    "ThumbRight",
]


def test_joint_order_and_centre():
    assert list(NTU25.joint_names) == NTU_ORDER
    assert NTU25.num_joints == 25
    assert NTU25.center_joint == NTU25.index("SpineMid") == 1


def test_bones_form_a_tree_over_all_joints():
    assert len(NTU25.bones) == 24
    parent = {c: p for c, p in NTU25.bones}
    assert len(parent) == 24  # every joint but the root has one parent
    (root,) = set(range(25)) - set(parent)
    assert NTU25.joint_names[root] == "SpineShoulder"
    for j in range(25):  # every joint reaches the root without a cycle
        seen = set()
        while j != root:
            assert j not in seen
            seen.add(j)
            j = parent[j]


def test_mirror_pairs_swap_left_and_right():
    perm = NTU25.mirror_permutation()
    assert sorted(perm) == list(range(25))
    assert all(perm[perm[j]] == j for j in range(25))
    for j, name in enumerate(NTU25.joint_names):
        expected = name.replace("Left", "#").replace("Right", "Left").replace("#", "Right")
        assert NTU25.joint_names[perm[j]] == expected


def test_json_cites_its_source_and_roundtrips():
    d = json.loads((_HERE / "ntu25.json").read_text())
    assert "ntu_skeleton_layout.json" in d["_source"]
    assert NTU25.to_dict()["bones"] == d["bones_0based"]
    assert "ntu25" in available_layouts()


def test_unknown_layout_and_joint_are_clear_errors():
    with pytest.raises(DataError, match="ntu25"):
        load_layout("coco17")
    with pytest.raises(DataError, match="SpineMid"):
        NTU25.index("Nose")
