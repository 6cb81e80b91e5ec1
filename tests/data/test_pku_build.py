"""PKU-MMD through the dataset build: one item per labelled action, protocol lists, then the pipeline's loader."""

import numpy as np
import pytest

from tdsm_edge.data.build import build_dataset, load_built, split_by_protocol
from tdsm_edge.data.build.__main__ import main as build_main
from tdsm_edge.data.pku import list_pku, read_protocol_file
from tdsm_edge.errors import DataError
from tdsm_edge.skeleton.preprocess import preprocess_batch

SEGMENTS = {"0001-L": [(3, 2, 21), (10, 25, 40)], "0001-M": [(3, 1, 30)], "0002-R": [(51, 5, 44)]}


def _write(tmp_path):
    g = np.random.default_rng(0)
    skel_dir, lab_dir = tmp_path / "skel", tmp_path / "labels"
    skel_dir.mkdir(), lab_dir.mkdir()
    raw = {}
    for vid, segs in SEGMENTS.items():
        x = np.round(g.normal(size=(45, 2, 25, 3)), 4).astype(np.float32)
        x[:, 1] = 0  # one person
        raw[vid] = x
        (skel_dir / f"{vid}.txt").write_text("\n".join(" ".join(f"{v:.4f}" for v in f.ravel()) for f in x) + "\n")
        (lab_dir / f"{vid}.txt").write_text("\n".join(f"{a},{s},{e},1" for a, s, e in segs) + "\n")
    (tmp_path / "cross_subject.txt").write_text("Training videos:\n0001-L, 0001-M\nValidataion videos:\n0002-R\n")
    return skel_dir, lab_dir, raw


def test_build_cuts_every_action_and_records_the_protocol(tmp_path):
    skel_dir, lab_dir, raw = _write(tmp_path)
    listing = list_pku(skel_dir, lab_dir, xsub_file=tmp_path / "cross_subject.txt")
    assert [i.name for i in listing.items] == ["0001-L_000", "0001-L_001", "0001-M_000", "0002-R_000"]
    build_dataset(tmp_path / "out", listing, source="pku", dataset="pku51", frames=16, workers=1, progress=False)
    b = load_built(tmp_path / "out")
    assert b.label.tolist() == [2, 9, 2, 50]  # action ids are 1-based in the files
    expected = [
        preprocess_batch(raw[v][s - 1 : e].transpose(1, 0, 2, 3)[None], 16)[0]
        for v, segs in SEGMENTS.items()
        for _, s, e in segs
    ]
    np.testing.assert_array_equal(b.data, np.stack(expected))
    train, test = split_by_protocol(b.info, "pku51", "xsub")
    assert train.tolist() == [True, True, True, False] and test.tolist() == [False, False, False, True]
    with pytest.raises(DataError, match="--xview-file"):
        split_by_protocol(b.info, "pku51", "xview")


def test_cli_builds_pku(tmp_path):
    skel_dir, lab_dir, _ = _write(tmp_path)
    rc = build_main(
        [
            "pku",
            "--skeletons",
            str(skel_dir),
            "--labels",
            str(lab_dir),
            "--dataset",
            "pku51",
            "--out",
            str(tmp_path / "out"),
            "--frames",
            "8",
            "--workers",
            "1",
            "--no-progress",
        ]
    )
    assert rc == 0 and load_built(tmp_path / "out").data.shape == (4, 3, 8, 25, 2)


def test_protocol_file_errors(tmp_path):
    p = tmp_path / "p.txt"
    p.write_text("0001-L\nTraining videos:\n0002-L\n")
    with pytest.raises(DataError, match="line 1"):
        read_protocol_file(p)
    p.write_text("Training videos:\n0001-L, 0002-M\n")
    with pytest.raises(DataError, match="not both"):
        read_protocol_file(p)
    p.write_text("Training videos:\n0001-L\nTest videos:\n0001-L\n")
    with pytest.raises(DataError, match="both training and test"):
        read_protocol_file(p)


def test_an_unpaired_file_is_reported_not_fatal(tmp_path):
    skel_dir, lab_dir, _ = _write(tmp_path)
    (lab_dir / "0002-R.txt").unlink()
    listing = list_pku(skel_dir, lab_dir)
    assert {i.name.split("_")[0] for i in listing.items} == {"0001-L", "0001-M"}
    assert len(listing.bad) == 1 and "0002-R" in listing.bad[0][0] and "no label file" in listing.bad[0][1]
