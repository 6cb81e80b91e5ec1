"""Skeleton dataset build: end to end on generated NTU files (2 workers), bad files reported, missing list
and dataset filters honoured, resume after an interruption, refusals, load_built checks, protocol masks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import ntu_skeleton_writer as W
from tdsm_edge.data.build import build_dataset, load_built, split_by_protocol
from tdsm_edge.data.build.__main__ import main
from tdsm_edge.data.ntu import list_ntu
from tdsm_edge.errors import DataError, InputError
from tdsm_edge.skeleton.ntu_reader import parse_sample_name, read_skeleton, select_bodies
from tdsm_edge.skeleton.preprocess import preprocess_batch

FRAMES = 16
GOOD = [
    "S001C001P001R001A001",
    "S001C002P002R001A002",
    "S002C003P003R002A010",
    "S003C001P004R001A060",
    "S010C002P008R002A033",
    "S017C003P038R001A005",
]
OTHER = ["S018C001P001R001A001", "S001C001P001R001A061"]  # NTU-120 only: setup 18, action 61
MISSING = "S001C002P005R002A008"  # on the official missing lists
TRUNCATED, NO_BODY = "S004C001P009R001A003", "S005C002P010R002A004"


def _sample_frames(rng: np.random.Generator, k: int) -> list:
    """k-th generated recording: 1 to 3 bodies, 6 to 14 frames, a second person entering mid-way."""
    T = 6 + 2 * (k % 5)
    tracks = [(100 + k, W.random_body(rng, T), range(T))]
    if k % 3 >= 1:
        tracks.append((200 + k, W.random_body(rng, T, 0.1), range(T // 2, T)))
    if k % 3 == 2:
        tracks.append((300 + k, W.random_body(rng, T, 0.001), [1]))
    return W.tracks_to_frames(tracks, T)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ntu_src")
    rng = np.random.default_rng(0)
    for k, name in enumerate(GOOD + OTHER + [MISSING]):
        W.write_skeleton(d / f"{name}.skeleton", _sample_frames(rng, k))
    W.write_lines(d / f"{TRUNCATED}.skeleton", W.skeleton_lines(_sample_frames(rng, 1))[:40])
    W.write_skeleton(d / f"{NO_BODY}.skeleton", [[], [], []])
    W.write_skeleton(d / "notes.skeleton", _sample_frames(rng, 0))  # not a sample name
    (d / "README.txt").write_text("not a skeleton file, not listed\n")
    return d


def _expected(src: Path, names: list[str], frames: int = FRAMES, align_view: bool = False) -> np.ndarray:
    raw = [select_bodies(read_skeleton(src / f"{n}.skeleton")) for n in names]
    return np.concatenate([preprocess_batch(x[None], frames, align_view=align_view) for x in raw])


def _build(src: Path, out: Path, **kw):
    kw = {"frames": FRAMES, "workers": 2, "chunk_size": 2, "progress": False, **kw}
    return build_dataset(out, list_ntu([src], "ntu60"), source="ntu", dataset="ntu60", **kw)


def test_listing_filters_and_counts(src):
    listing = list_ntu([src], "ntu60")
    assert [i.name for i in listing.items] == sorted(GOOD + [TRUNCATED, NO_BODY])
    assert listing.files == 12 and listing.skipped == {"other_dataset": 2, "missing_list": 1}
    assert [Path(f).name for f, _ in listing.bad] == ["notes.skeleton"]
    item = listing.items[0]
    assert (item.label, item.info) == (0, (1, 1, 1, 1)) and item.path.endswith(f"{item.name}.skeleton")
    assert len(list_ntu([src], "ntu120").items) == len(GOOD) + 2 + len(OTHER)  # the missing one stays out


def test_build_end_to_end_two_workers(src, tmp_path):
    out = tmp_path / "ntu60"
    meta = _build(src, out)
    built = load_built(out)
    names = sorted(GOOD)
    assert built.names == names and meta["names"] == names
    assert built.data.shape == (6, 3, FRAMES, 25, 2) and built.data.dtype == np.float32
    np.testing.assert_array_equal(built.data, _expected(src, names))
    assert built.label.dtype == np.int64 and built.label.tolist() == [parse_sample_name(n).label for n in names]
    s = parse_sample_name(names[2])
    assert built.info.dtype == np.int64 and built.info[2].tolist() == [s.setup, s.camera, s.subject, s.replication]
    assert meta["counts"] == {"files": 12, "other_dataset": 2, "missing_list": 1, "bad_files": 3, "written": 6}
    assert (meta["dataset"], meta["frames"], meta["align_view"], meta["num_classes"]) == ("ntu60", FRAMES, False, 60)
    assert meta["info_columns"] == ["setup", "camera", "subject", "replication"] and meta["tool_version"]
    bad = {Path(b["file"]).name: b["error"] for b in json.loads((out / "bad_files.json").read_text())}
    assert set(bad) == {"notes.skeleton", f"{TRUNCATED}.skeleton", f"{NO_BODY}.skeleton"}
    assert f"{TRUNCATED}.skeleton, line 41: the file ends after line 40" in bad[f"{TRUNCATED}.skeleton"]
    assert "no body is listed in any of its 3 frames" in bad[f"{NO_BODY}.skeleton"]
    assert (out / "COMPLETE").is_file() and not (out / "parts").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_build_one_worker_and_align_view_match_preprocess(src, tmp_path):
    meta = _build(src, tmp_path / "b", workers=1, chunk_size=256, frames=8, align_view=True)
    built = load_built(tmp_path / "b", mmap=True)
    assert isinstance(built.data, np.memmap) and meta["align_view"] is True
    np.testing.assert_array_equal(built.data, _expected(src, sorted(GOOD), frames=8, align_view=True))


def test_resume_after_interruption_reuses_parts(src, tmp_path):
    out = tmp_path / "r"
    assert _build(src, out, stop_after_chunks=2) is None  # 4 chunks of 2 items
    parts = sorted((out / "parts").glob("part_*.npz"))
    assert len(parts) == 2 and not (out / "COMPLETE").exists()
    with pytest.raises(DataError, match="no COMPLETE marker.*--resume"):
        load_built(out)
    with pytest.raises(DataError, match="unfinished build.*--resume.*--overwrite"):
        _build(src, out)
    with pytest.raises(DataError, match="cannot resume.*frames: 16 there, 32 now"):
        _build(src, out, resume=True, frames=32)
    # mark a finished part, so the final data proves it was reused rather than rebuilt
    with np.load(parts[0]) as z:
        arrays = dict(z)
    names = arrays["names"].tolist()
    arrays["data"] = np.full_like(arrays["data"], 7.0)
    with open(parts[0], "wb") as f:
        np.savez(f, **arrays)
    _build(src, out, resume=True)
    built = load_built(out)
    assert built.names == sorted(GOOD)
    reused = [built.names.index(n) for n in names]
    assert np.all(built.data[reused] == 7.0)
    others = [i for i in range(len(built.names)) if i not in reused]
    np.testing.assert_array_equal(built.data[others], _expected(src, [built.names[i] for i in others]))


def test_complete_build_needs_resume_or_overwrite(src, tmp_path):
    out = tmp_path / "c"
    _build(src, out, workers=1, chunk_size=256)
    with pytest.raises(DataError, match="already holds a complete build.*--resume.*--overwrite"):
        _build(src, out, workers=1)
    before = (out / "data.npy").stat().st_mtime_ns
    assert _build(src, out, workers=1, resume=True)["counts"]["written"] == 6  # nothing redone
    assert (out / "data.npy").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="align_view: False there, True now"):
        _build(src, out, workers=1, resume=True, align_view=True)
    _build(src, out, workers=1, overwrite=True, frames=4)
    assert load_built(out).data.shape == (6, 3, 4, 25, 2)
    with pytest.raises(InputError, match="exclude each other"):
        _build(src, out, resume=True, overwrite=True)


def test_nothing_buildable_is_an_error(tmp_path):
    d = tmp_path / "src"
    W.write_skeleton(d / f"{NO_BODY}.skeleton", [[]])
    with pytest.raises(DataError, match="no sample could be built.*bad_files.json"):
        build_dataset(tmp_path / "o", list_ntu([d], "ntu60"), source="ntu", dataset="ntu60", progress=False)
    assert len(json.loads((tmp_path / "o" / "bad_files.json").read_text())) == 1
    with pytest.raises(DataError, match="no .skeleton files"):
        list_ntu([tmp_path / "o"], "ntu60")


def test_load_built_rejects_inconsistent_folders(src, tmp_path):
    out = tmp_path / "v"
    _build(src, out, workers=1)
    np.save(out / "label.npy", np.zeros(6, np.int32))
    with pytest.raises(DataError, match="label.npy is int32.*expected int64"):
        load_built(out)
    np.save(out / "label.npy", np.full(6, 60, np.int64))
    with pytest.raises(DataError, match=r"outside \[0, 60\)"):
        load_built(out)
    np.save(out / "data.npy", np.zeros((5, 3, FRAMES, 25, 2), np.float32))
    with pytest.raises(DataError, match="data.npy is float32 \\(5, 3, 16, 25, 2\\)"):
        load_built(out)
    with pytest.raises(DataError, match="build it with"):
        load_built(tmp_path / "nothing")


def test_cli_in_process_and_as_module(src, tmp_path, caplog):
    out = tmp_path / "cli"
    args = ["ntu", "--src", str(src), "--dataset", "ntu60", "--out", str(out), "--frames", "8", "--no-progress"]
    assert main(args + ["--workers", "1"]) == 0
    assert load_built(out).data.shape == (6, 3, 8, 25, 2)
    assert main(args) == 2 and "already holds a complete build" in caplog.text
    # the real entry point, with its worker pool
    r = subprocess.run(
        [sys.executable, "-m", "tdsm_edge.data.build"] + args + ["--overwrite", "--chunk-size", "3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "built ntu60: 6 samples" in r.stderr and "3 file(s) could not be used" in r.stderr
    np.testing.assert_array_equal(load_built(out).data, _expected(src, sorted(GOOD), frames=8))


def test_split_by_protocol_masks():
    info = np.array(
        [[1, 1, 1, 1], [2, 2, 3, 1], [3, 3, 38, 2], [18, 1, 45, 1], [31, 2, 103, 2], [32, 3, 104, 1]], np.int64
    )  # setup, camera, subject, replication
    train, test = split_by_protocol(info, "ntu60", "xsub")
    assert train.tolist() == [True, False, True, False, False, False] and (test == ~train).all()
    assert split_by_protocol(info, "ntu120", "xsub")[0].tolist() == [True, False, True, True, True, False]
    assert split_by_protocol(info, "ntu60", "xview")[0].tolist() == [False, True, True, False, True, True]
    assert split_by_protocol(info, "ntu120", "xset")[0].tolist() == [False, True, False, True, False, True]
    with pytest.raises(InputError, match="xset exists for ntu120 only"):
        split_by_protocol(info, "ntu60", "xset")
    with pytest.raises(InputError, match="no build source defines dataset 'kinetics'"):
        split_by_protocol(info, "kinetics", "xsub")
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        split_by_protocol(info[:, :3], "ntu60", "xsub")
