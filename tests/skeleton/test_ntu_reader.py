"""NTU RGB+D `.skeleton` reader: sample names, value-by-value parsing of generated files (0-3 bodies per
frame, bodies tracked by ID), malformed files (error names file and line), body selection, missing lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import ntu_skeleton_writer as W
from tdsm_edge.errors import DataError, InputError
from tdsm_edge.skeleton.ntu_reader import (
    SampleName,
    body_energy,
    load_missing_list,
    parse_sample_name,
    read_skeleton,
    read_skeleton_file,
    select_bodies,
)

V = 25
BIG_ID = 72057594037931101  # a real-looking Kinect id: float64 cannot hold it exactly


# ---- sample names -------------------------------------------------------------------------------


def test_parse_sample_name_fields_and_label():
    s = parse_sample_name("S001C002P003R002A013")
    assert s == SampleName(setup=1, camera=2, subject=3, replication=2, action=13)
    assert s.label == 12 and s.name == "S001C002P003R002A013"
    assert parse_sample_name("/data/nturgb+d_skeletons/S032C003P106R002A120.skeleton") == SampleName(32, 3, 106, 2, 120)


@pytest.mark.parametrize(
    "bad",
    [
        "S001C002P003R002A13",
        "s001C002P003R002A013",
        "S001C002P003R002A013.txt",
        "S001C002P003R002A013x",
        "notes.skeleton",
        "",
    ],
)
def test_parse_sample_name_rejects(bad):
    with pytest.raises(DataError, match="not an NTU RGB\\+D sample name.*SsssCcccPpppRrrrAaaa"):
        parse_sample_name(bad)


# ---- well-formed files, value by value ----------------------------------------------------------


def test_single_body_value_by_value(tmp_path):
    rng = np.random.default_rng(0)
    xyz = W.random_body(rng, 4)  # (4, 25, 3)
    path = W.write_skeleton(tmp_path / "a.skeleton", [[(BIG_ID, xyz[t])] for t in range(4)])
    f = read_skeleton_file(path)
    assert f.xyz.dtype == np.float32 and f.xyz.shape == (1, 4, V, 3)
    np.testing.assert_array_equal(f.xyz[0], xyz)
    assert f.body_ids == (str(BIG_ID),)
    assert f.present.tolist() == [[True] * 4] and f.bodies_per_frame.tolist() == [1, 1, 1, 1]
    np.testing.assert_array_equal(read_skeleton(path), f.xyz)


def test_zero_one_two_three_bodies_tracked_by_id(tmp_path):
    rng = np.random.default_rng(1)
    A, B, C = (W.random_body(rng, 6) for _ in range(3))
    ida, idb, idc = BIG_ID, BIG_ID + 1, 5
    frames = [
        [],
        [(ida, A[1])],
        [(ida, A[2]), (idb, B[2])],
        [(idb, B[3]), (idc, C[3]), (ida, A[3])],
        [(idc, C[4]), (ida, A[4])],
        [],
    ]  # list order changes: tracks follow the bodyID
    f = read_skeleton_file(W.write_skeleton(tmp_path / "b.skeleton", frames))
    assert f.body_ids == (str(ida), str(idb), str(idc))  # order of first appearance
    assert f.bodies_per_frame.tolist() == [0, 1, 2, 3, 2, 0]
    on = {0: [1, 2, 3, 4], 1: [2, 3], 2: [3, 4]}
    for k, src in enumerate((A, B, C)):
        assert np.flatnonzero(f.present[k]).tolist() == on[k]
        for t in range(6):
            expected = src[t] if t in on[k] else np.zeros((V, 3), np.float32)
            np.testing.assert_array_equal(f.xyz[k, t], expected, err_msg=f"body {k} frame {t}")


def test_body_appearing_mid_sequence_and_line_endings(tmp_path):
    rng = np.random.default_rng(2)
    A, B = W.random_body(rng, 7), W.random_body(rng, 7)
    frames = W.tracks_to_frames([(11, A, range(7)), (22, B, range(3, 6))], 7)
    xyz_crlf = read_skeleton(W.write_skeleton(tmp_path / "crlf.skeleton", frames, newline="\r\n"))
    lines = W.skeleton_lines(frames)
    xyz_lf = read_skeleton(W.write_lines(tmp_path / "lf.skeleton", lines + ["", "  "], newline="\n"))
    for xyz in (xyz_crlf, xyz_lf):
        assert xyz.shape == (2, 7, V, 3)
        np.testing.assert_array_equal(xyz[0], A)
        np.testing.assert_array_equal(xyz[1, 3:6], B[3:6])
        assert not xyz[1, :3].any() and not xyz[1, 6].any()


def test_files_without_bodies(tmp_path):
    assert read_skeleton(W.write_lines(tmp_path / "zero.skeleton", ["0"])).shape == (0, 0, V, 3)
    f = read_skeleton_file(W.write_skeleton(tmp_path / "empty.skeleton", [[], [], []]))
    assert f.xyz.shape == (0, 3, V, 3) and f.bodies_per_frame.tolist() == [0, 0, 0] and f.present.shape == (0, 3)


def test_repeated_body_id_in_one_frame_gets_its_own_track(tmp_path):
    rng = np.random.default_rng(3)
    A, B = W.random_body(rng, 2), W.random_body(rng, 2)
    f = read_skeleton_file(W.write_skeleton(tmp_path / "dup.skeleton", [[(7, A[0]), (7, B[0])], [(7, A[1])]]))
    assert f.body_ids == ("7", "7#1")
    np.testing.assert_array_equal(f.xyz[0], A)
    np.testing.assert_array_equal(f.xyz[1, 0], B[0])


# ---- malformed files ----------------------------------------------------------------------------


def _frames3():
    rng = np.random.default_rng(4)
    A, B = W.random_body(rng, 3), W.random_body(rng, 3)
    return W.tracks_to_frames([(1, A, range(3)), (2, B, [1, 2])], 3)  # 1, 2, 2 bodies


def _edit(frames, line: int, text: str | None) -> list[str]:
    """The lines of `frames` with 1-based `line` replaced by `text` (None: file cut before it)."""
    lines = W.skeleton_lines(frames)
    if text is None:
        return lines[: line - 1]
    lines[line - 1] = text
    return lines


F3 = _frames3()
J5 = W.line_of(F3, 1, 1, joint=4)  # joint 5 of body 2 in frame 2
CASES = {
    # name: (lines, reported line, message fragment)
    "empty file": ([], 1, "the file ends after line 0, but the number of frames was expected"),
    "cut inside a joint block": (
        _edit(F3, J5, None),
        J5,
        f"ends after line {J5 - 1}, but joint 5 of 25 of body 2 of 2 in frame 2 was expected",
    ),
    "cut before a frame": (
        _edit(F3, W.line_of(F3, 2, 0) - 1, None),
        W.line_of(F3, 2, 0) - 1,
        "the number of bodies in frame 3 of 3 was expected",
    ),
    "cut after a joint count": (
        _edit(F3, W.line_of(F3, 1, 1, joint=0), None),
        W.line_of(F3, 1, 1, joint=0),
        "joint 1 of 25 of body 2 of 2 in frame 2",
    ),
    "non-numeric joint value": (
        _edit(F3, J5, "0.1 0.2 abc 1 2 3 4 0 0 0 1 2"),
        J5,
        "expected joint 5 of 25: 12 finite",
    ),
    "11 joint values": (_edit(F3, J5, "0.1 0.2 0.3 1 2 3 4 0 0 0 1"), J5, "got 11 value"),
    "NaN coordinate": (_edit(F3, J5, "nan 0.2 0.3 1 2 3 4 0 0 0 1 2"), J5, "12 finite numbers"),
    "blank joint line": (_edit(F3, J5, ""), J5, "got an empty line"),
    "24 joints": (
        _edit(F3, W.line_of(F3, 1, 1) + 1, "24"),
        W.line_of(F3, 1, 1) + 1,
        "has 24 joints; NTU RGB+D bodies have 25",
    ),
    "9-value info line": (
        _edit(F3, W.line_of(F3, 1, 1), "2 0 1 1 1 1 0 0.1 -0.2"),
        W.line_of(F3, 1, 1),
        "expected the info line of body 2 of 2 in frame 2: 10 numbers",
    ),
    "non-integer bodyID": (
        _edit(F3, W.line_of(F3, 1, 0), "7.5 0 1 1 1 1 0 0.1 -0.2 2"),
        W.line_of(F3, 1, 0),
        "bodyID an unsigned integer",
    ),
    "word as body count": (
        _edit(F3, W.line_of(F3, 1, 0) - 1, "two"),
        W.line_of(F3, 1, 0) - 1,
        "the number of bodies in frame 2 of 3 (one non-negative integer), got 1 value(s): 'two'",
    ),
    "negative frame count": (_edit(F3, 1, "-3"), 1, "the number of frames (one non-negative integer)"),
    "content after the last frame": (
        W.skeleton_lines(F3) + ["", "1"],
        len(W.skeleton_lines(F3)) + 2,
        "unexpected content after the last frame: line 1 announces 3 frames",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_file_error_names_file_and_line(tmp_path, case):
    lines, line, fragment = CASES[case]
    path = W.write_lines(tmp_path / "S001C001P001R001A001.skeleton", lines)
    with pytest.raises(DataError) as err:
        read_skeleton(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line {line}: "), msg
    assert fragment in msg, msg
    assert "re-extract" in msg  # says how to fix


def test_errors_come_in_file_order(tmp_path):
    # a bad joint in frame 1 is reported although the structure breaks later (frame 3's body count)
    lines = _edit(F3, W.line_of(F3, 0, 0, joint=2), "1 2 3")
    lines[W.line_of(F3, 2, 0) - 2] = "x"
    with pytest.raises(DataError, match=f", line {W.line_of(F3, 0, 0, joint=2)}: expected joint 3 of 25"):
        read_skeleton(W.write_lines(tmp_path / "two_errors.skeleton", lines))


def test_non_ascii_and_missing_file(tmp_path):
    path = tmp_path / "bin.skeleton"
    path.write_bytes(b"1\r\n1\r\n\xff\xfe garbage\r\n")
    with pytest.raises(DataError, match=r"bin.skeleton, line 3: byte 0xff is not ASCII"):
        read_skeleton(path)
    with pytest.raises(DataError, match="cannot read .*nope.skeleton"):
        read_skeleton(tmp_path / "nope.skeleton")


# ---- body selection -----------------------------------------------------------------------------


def test_body_energy_uses_only_tracked_frames():
    x = np.zeros((2, 4, V, 3))
    x[0, [0, 2], :, 0] = [[1.0], [3.0]]  # tracked in frames 0 and 2 only: x = 1 then 3
    x[0, [0, 2], :, 1:] = 5.0
    x[1, 1] = 2.0  # tracked in a single frame
    # variance of (1, 3) is 1 per joint -> 25; the absent frames must not count as zeros
    np.testing.assert_allclose(body_energy(x), [25.0, 0.0])


def test_select_keeps_the_two_most_active_bodies_most_active_first():
    rng = np.random.default_rng(5)
    T = 20
    still = np.broadcast_to(rng.uniform(-3, 3, (1, V, 3)), (T, V, 3)).copy()  # large, motionless
    mover = W.random_body(rng, T, speed=0.02)
    fast = np.zeros((T, V, 3), np.float32)
    fast[5:15] = W.random_body(rng, 10, speed=0.2)  # tracked for half the time
    tracks = np.stack([still, mover, fast])  # (3, T, V, 3)
    out = select_bodies(tracks)
    assert out.shape == (2, T, V, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], fast)
    np.testing.assert_array_equal(out[1], mover)
    assert select_bodies(tracks, max_bodies=3)[2].tolist() == still.astype(np.float32).tolist()


def test_select_pads_and_breaks_ties_by_tracked_frames_then_order():
    one = select_bodies(np.ones((1, 5, V, 3)))
    assert one.shape == (2, 5, V, 3) and np.all(one[0] == 1) and not one[1].any()
    assert not select_bodies(np.zeros((0, 5, V, 3))).any()
    x = np.zeros((3, 4, V, 3))
    x[0, 0] = 1.0  # energy 0, 1 frame
    x[1, :3] = 1.0  # energy 0, 3 frames
    x[2, 1:4] = 2.0  # energy 0, 3 frames, appears later
    out = select_bodies(x)
    np.testing.assert_array_equal(out[0], x[1])
    np.testing.assert_array_equal(out[1], x[2] + x[0])  # x[0] never overlaps x[2]: a fragment of it


def test_select_merges_a_body_id_switch_into_one_slot():
    rng = np.random.default_rng(3)
    actor, other = W.random_body(rng, 6, speed=0.1), W.random_body(rng, 6, speed=0.05)
    x = np.zeros((3, 6, V, 3), np.float32)
    x[0, :3], x[1, 3:] = actor[:3], actor[3:]  # Kinect re-assigned the actor's ID at frame 3
    x[2] = other  # a second person tracked throughout
    out = select_bodies(x)
    slots = {0: out[0], 1: out[1]}
    assert any(np.array_equal(v, actor) for v in slots.values())
    assert any(np.array_equal(v, other) for v in slots.values())


def test_select_rejects_bad_input():
    with pytest.raises(InputError, match=r"\(B, T, V, 3\)"):
        select_bodies(np.zeros((5, V, 3)))
    with pytest.raises(InputError, match="max_bodies"):
        select_bodies(np.zeros((1, 2, V, 3)), max_bodies=0)


def test_read_then_select_on_a_file(tmp_path):
    rng = np.random.default_rng(6)
    noise = np.zeros((8, V, 3), np.float32)
    noise[4] = W.random_body(rng, 1)[0]  # one-frame flicker
    A, B = W.random_body(rng, 8, 0.05), W.random_body(rng, 8, 0.01)
    frames = W.tracks_to_frames([(3, noise, [4]), (1, B, range(8)), (2, A, range(8))], 8)
    out = select_bodies(read_skeleton(W.write_skeleton(tmp_path / "s.skeleton", frames)))
    np.testing.assert_array_equal(out[0], A)
    np.testing.assert_array_equal(out[1], B)


# ---- official missing-skeleton lists ------------------------------------------------------------


def test_missing_lists():
    n60, n120 = load_missing_list("ntu60"), load_missing_list("ntu120")
    assert isinstance(n60, frozenset) and len(n60) == 302 and len(n120) == 535 and n60 <= n120
    assert "S001C002P005R002A008" in n60 and all(len(n) == 20 for n in n120)
    assert any(parse_sample_name(n).setup > 17 for n in n120 - n60)
    with pytest.raises(InputError, match="ntu60, ntu120"):
        load_missing_list("pku51")


def test_missing_lists_ship_with_the_package():
    from importlib.resources import files

    import tomllib

    folder = files("tdsm_edge.skeleton") / "ntu_missing"
    names = {p.name for p in folder.iterdir()}
    assert {
        "NTU_RGBD_samples_with_missing_skeletons_ids_only.txt",
        "README.txt",
        "NTU_RGBD120_samples_with_missing_skeletons_ids_only.txt",
    } <= names
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "**/*.txt" in pyproject["tool"]["setuptools"]["package-data"]["tdsm_edge"]
