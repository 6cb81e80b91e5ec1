"""PKU-MMD reader: files written in the published text format from known arrays, read back value by value."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest

from tdsm_edge.errors import DataError
from tdsm_edge.skeleton.pku_reader import PkuSegment, list_pku_videos, pku_segments, read_pku_labels, read_pku_skeleton
from tdsm_edge.skeleton.preprocess import preprocess_batch

F, M, V = 12, 2, 25


def _known(seed: int = 0) -> np.ndarray:
    """(F, 2, 25, 3) coordinates on a 1/64 grid (exact in 6 decimals and float32); body 2 absent in frames 0-4."""
    k = np.random.default_rng(seed).integers(-256, 256, size=(F, M, V, 3))
    x = (k / 64.0).astype(np.float32)
    x[:5, 1] = 0.0
    return x


def _write_skeleton(path, x: np.ndarray, sep: str = " ") -> None:
    """One line per frame: body 1 joints 1..25 (x y z), then body 2, as PKU-MMD publishes them."""
    lines = []
    for f in range(len(x)):
        vals = [x[f, m, j, c] for m in range(M) for j in range(V) for c in range(3)]
        lines.append(sep.join(f"{v:.6f}" for v in vals))
    path.write_text("\n".join(lines) + "\n")


def test_skeleton_values_match_value_by_value(tmp_path):
    x = _known()
    p = tmp_path / "0002-L.txt"
    _write_skeleton(p, x, sep="  ")  # runs of spaces are still one separator
    got = read_pku_skeleton(p)
    assert got.shape == (F, M, V, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got, x)
    # one value located by hand: line 7, body 2, joint 4 (1-based), z -> token 75 + 3*3 + 3 = 87
    tok = p.read_text().splitlines()[6].split()[86]
    assert got[6, 1, 3, 2] == np.float32(float(tok))
    assert np.all(got[:5, 1] == 0)


def test_skeleton_trailing_blank_lines_and_crlf(tmp_path):
    x = _known(1)
    p = tmp_path / "a.txt"
    _write_skeleton(p, x)
    p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n") + b"\r\n\r\n")
    np.testing.assert_array_equal(read_pku_skeleton(p), x)


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda ls: ls.__setitem__(2, ls[2] + " 0.5"), r"line 3: 151 values"),
        (lambda ls: ls.__setitem__(4, " ".join(ls[4].split()[:-1])), r"line 5: 149 values"),
        (lambda ls: ls.__setitem__(3, ls[3].replace(" ", ",")), r"line 4: 1 values.*not commas"),
        (lambda ls: ls.__setitem__(1, ls[1].replace(ls[1].split()[9], "abc", 1)), r"line 2: value \d+ is 'abc'"),
        (lambda ls: ls.__setitem__(8, ls[8].replace(ls[8].split()[0], "nan", 1)), r"line 9: NaN"),
        (lambda ls: ls.insert(6, ""), r"line 7: 0 values.*blank"),
    ],
)
def test_skeleton_errors_name_file_and_line(tmp_path, edit, pattern):
    p = tmp_path / "bad.txt"
    _write_skeleton(p, _known())
    lines = p.read_text().splitlines()
    edit(lines)
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=pattern) as e:
        read_pku_skeleton(p)
    assert "bad.txt" in str(e.value)


def test_skeleton_empty_or_missing(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("\n  \n")
    with pytest.raises(DataError, match=r"empty\.txt' is empty"):
        read_pku_skeleton(p)
    with pytest.raises(DataError, match="does not exist"):
        read_pku_skeleton(tmp_path / "nope.txt")


def test_labels_parse(tmp_path):
    p = tmp_path / "0002-L.txt"
    p.write_text("1,2,4,1\n51, 5 , 12,2\n\n30,7,7,2\n")  # spaces around fields and a blank line are fine
    segs = read_pku_labels(p)
    assert segs == [PkuSegment(0, 2, 4, 1), PkuSegment(50, 5, 12, 2), PkuSegment(29, 7, 7, 2)]
    assert [s.line for s in segs] == [1, 2, 4]
    assert [s.num_frames for s in segs] == [3, 8, 1]


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("1,2,4,1\n3,5,9\n", r"line 2: '3,5,9' has 3 comma-separated fields"),
        ("1,2,4,1\n1,2,4,1\n3,x,9,1\n", r"line 3: .*non-integer"),
        ("3,2.5,9,1\n", r"line 1: .*non-integer"),
        ("0,2,4,1\n", r"line 1: action id 0 is outside 1\.\.51"),
        ("1,2,4,1\n52,2,4,1\n", r"line 2: action id 52"),
        ("1,9,4,1\n", r"line 1: end frame 4 is before start frame 9"),
        ("1,0,4,1\n", r"line 1: start frame 0 < 1"),
        ("\n\n", r"is empty"),
    ],
)
def test_label_errors_name_file_and_line(tmp_path, content, pattern):
    p = tmp_path / "lab.txt"
    p.write_text(content)
    with pytest.raises(DataError, match=pattern) as e:
        read_pku_labels(p)
    assert "lab.txt" in str(e.value)


def test_segments_are_1_based_inclusive_and_preprocessable(tmp_path):
    x = _known(2)
    sp, lp = tmp_path / "s.txt", tmp_path / "l.txt"
    _write_skeleton(sp, x)
    lp.write_text("3,2,4,2\n12,1,1,1\n7,10,12,1\n")
    out = pku_segments(sp, lp)
    assert [s.label for s, _ in out] == [2, 11, 6]
    (s0, a0), (_, a1), (_, a2) = out
    assert a0.shape == (M, 3, V, 3) and a0.dtype == np.float32 and a0.flags.c_contiguous
    for t in range(3):  # frames 2..4 (1-based) are rows 1..3
        np.testing.assert_array_equal(a0[:, t], x[1 + t])
    np.testing.assert_array_equal(a1[:, 0], x[0])
    np.testing.assert_array_equal(a2[:, -1], x[F - 1])  # a segment may end on the last frame
    batch = preprocess_batch(np.stack([a0, a2]), frames=4)
    assert batch.shape == (2, 3, 4, V, 2)


def test_segment_past_the_end(tmp_path, caplog):
    sp, lp = tmp_path / "s.txt", tmp_path / "l.txt"
    x = _known(3)
    _write_skeleton(sp, x)
    lp.write_text("1,1,3,1\n2,10,14,1\n")
    with pytest.raises(DataError, match=r"l\.txt' line 2: frames 10\.\.14, but .*s\.txt' has 12 frames.*clip=True"):
        pku_segments(sp, lp)
    with caplog.at_level(logging.WARNING, logger="tdsm_edge.skeleton.pku_reader"):
        out = pku_segments(sp, lp, clip=True)
    seg, arr = out[1]
    assert seg.end == F and arr.shape[1] == 3 and "clipping" in caplog.text
    np.testing.assert_array_equal(arr[:, 0], x[9])
    lp.write_text("2,13,14,1\n")  # starts past the end: an error even when clipping
    with pytest.raises(DataError, match="has 12 frames"):
        pku_segments(sp, lp, clip=True)


def test_list_videos_pairs_by_stem(tmp_path):
    sd, ld = tmp_path / "skel", tmp_path / "label"
    sd.mkdir(), ld.mkdir()
    for stem in ("0003-M", "0002-L", "0002-R"):
        (sd / f"{stem}.txt").write_text("x")
        (ld / f"{stem}.txt").write_text("x")
    (sd / "notes.md").write_text("ignored")
    got = list_pku_videos(sd, ld)
    assert [v for v, _, _ in got] == ["0002-L", "0002-R", "0003-M"]
    assert got[0][1] == sd / "0002-L.txt" and got[0][2] == ld / "0002-L.txt"

    for i in range(7):
        (sd / f"09{i:02d}-L.txt").write_text("x")
    (ld / "0100-R.txt").write_text("x")
    with pytest.raises(DataError) as e:
        list_pku_videos(sd, ld)
    msg = str(e.value)
    assert "7 skeleton file(s) without a label file" in msg and "1 label file(s) without a skeleton file" in msg
    assert "0900-L" in msg and "0904-L" in msg and "0905-L" not in msg and "0100-R" in msg
    with pytest.raises(DataError, match=re.escape(repr(str(tmp_path / "nope")))):
        list_pku_videos(tmp_path / "nope", ld)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .txt file"):
        list_pku_videos(sd, empty)
