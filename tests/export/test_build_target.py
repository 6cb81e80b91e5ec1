"""Where a build may write, and what an interrupted build leaves behind.

A build writes only into a folder that does not exist, is empty, or is a tdsm-edge bundle holding
nothing but its own files; anything else is refused and left untouched. It works in a hidden staging
folder that holds no manifest.json until the commit; Ctrl-C deletes it, a killed build's is deleted by
the next build, and neither is ever loadable.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from export import build_engine  # noqa: E402
from export.bundle_stage import STAGED_MANIFEST  # noqa: E402
from tdsm_edge.errors import BundleError  # noqa: E402
from tdsm_edge.runtime import ZeroShotRecognizer  # noqa: E402
from tdsm_edge.runtime.manifest import MANIFEST, load_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--batch", "2", "--no-verify", "--no-tradeoff", "--no-text-encoder", "--no-torch-weights"]


def build(run: Path, out: Path, caplog, *extra: str) -> int:
    with caplog.at_level(logging.ERROR):
        return build_engine.main(["--run", str(run), "--out", str(out), *FAST, *extra, "--log-level", "ERROR"])


def snapshot(folder: Path) -> dict:
    """Every path under `folder` with its bytes (folders: None)."""
    return {p.relative_to(folder).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in folder.rglob("*")}


def one_error_line(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.mark.parametrize(
    "content",
    [
        {"manifest.json": b'{"name": "my web app", "icons": []}', "index.html": b"<html></html>"},
        {"manifest.json": b'{"format": "tdsm-edge-bundle"}', "notes.txt": b"mine"},  # no file list
        {"manifest.json": b"\xff not json", "a.bin": b"1"},
        {"data.csv": b"1,2,3"},
        {"manifest.json": b'{"format": "tdsm-edge-bundle", "files": {"thesis.tex": "nope"}}', "thesis.tex": b"\\doc"},
    ],
    ids=["web-app-manifest", "bundle-format-no-files", "unreadable-manifest", "no-manifest", "manifest-lies"],
)
def test_a_folder_that_is_not_a_bundle_is_refused_and_left_untouched(tiny_run, tmp_path, caplog, content):
    out = tmp_path / "site"
    out.mkdir()
    for name, data in content.items():
        (out / name).write_bytes(data)
    before = snapshot(out)
    assert build(tiny_run, out, caplog) == 2
    assert "refusing to write the bundle into" in one_error_line(caplog)
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".site.*"))  # no staging folder either


def test_out_naming_a_file_is_refused(tiny_run, tmp_path, caplog):
    out = tmp_path / "bundle.txt"
    out.write_text("keep me")
    assert build(tiny_run, out, caplog) == 2
    assert "it is a file, not a folder" in one_error_line(caplog)
    assert out.read_text() == "keep me"


def test_a_bundle_with_foreign_files_is_not_replaced(tiny_run, tmp_path, caplog):
    out = tmp_path / "tiny"
    assert build(tiny_run, out, caplog) == 0
    (out / "calibration_notes.txt").write_text("mine")
    before = snapshot(out)
    assert build(tiny_run, out, caplog) == 2
    assert "calibration_notes.txt is not listed" in one_error_line(caplog)
    assert snapshot(out) == before


def test_a_bundle_or_an_empty_folder_is_replaced(tiny_run, tmp_path, caplog):
    out = tmp_path / "tiny"
    out.mkdir()
    assert build(tiny_run, out, caplog) == 0
    first = load_manifest(out).digest
    assert build(tiny_run, out, caplog, "--noises", "1") == 0  # a different bundle replaces the old one
    assert load_manifest(out).digest != first and load_manifest(out).data["scoring"]["num_noises"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # no staging or old folder left


def _start_build(run: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "export.build_engine",
            "--run",
            str(run),
            "--out",
            str(out),
            *FAST,
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_stage(proc: subprocess.Popen, parent: Path, timeout: float = 120) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        stages = list(parent.glob(f".*.staging-{proc.pid}"))
        if stages:
            return stages[0]
        if proc.poll() is not None:
            break
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"the build never created its staging folder: {proc.communicate()}")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_during_a_build_leaves_the_old_bundle_and_no_staging_folder(tiny_run, tmp_path, caplog, sig):
    out = tmp_path / "tiny"
    assert build(tiny_run, out, caplog) == 0
    old = load_manifest(out).digest
    proc = _start_build(tiny_run, out)
    stage = _wait_for_stage(proc, tmp_path)
    assert not (stage / MANIFEST).exists()  # a stage never holds manifest.json before the commit
    proc.send_signal(getattr(signal, sig))  # SIGTERM: what systemd and docker send
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; no bundle was written or changed" in err
    assert not stage.exists() and load_manifest(out).digest == old  # the old bundle, intact


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_killed_build_leaves_a_stage_that_never_loads_and_the_next_build_removes(tiny_run, tmp_path, caplog):
    out = tmp_path / "tiny"
    proc = _start_build(tiny_run, out)
    stage = _wait_for_stage(proc, tmp_path)
    deadline = time.monotonic() + 120
    while not (stage / STAGED_MANIFEST).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # kill it as late as possible: with its staged manifest written
    proc.kill()
    proc.communicate()
    if not stage.exists():
        pytest.skip("the build committed before it could be killed")
    assert not out.exists()
    with pytest.raises(BundleError, match="temporary folder of an unfinished or interrupted build"):
        ZeroShotRecognizer.load(stage, threads=1)
    renamed = tmp_path / "renamed"  # even under another name: no manifest.json, so not a bundle
    shutil.copytree(stage, renamed)
    with pytest.raises(BundleError, match=f"not an engine bundle: it has no {MANIFEST}"):
        ZeroShotRecognizer.load(renamed, threads=1)
    assert build(tiny_run, out, caplog) == 0
    assert not stage.exists()  # the next build of the same --out cleaned it up
    assert ZeroShotRecognizer.load(out, threads=1).classes


def test_a_build_that_died_while_committing_gets_its_old_bundle_back(tiny_run, tmp_path, caplog):
    """Between the commit's two renames the old bundle is `.<name>.old-<pid>` and --out is missing: the
    next build puts the old bundle back before it starts (and then replaces it as usual)."""
    from export.bundle_stage import remove_stale_temp_folders

    out = tmp_path / "tiny"
    assert build(tiny_run, out, caplog) == 0
    digest = load_manifest(out).digest
    dead = tmp_path / ".tiny.old-999999999"  # no such process
    os.replace(out, dead)
    assert remove_stale_temp_folders(out) == [] and load_manifest(out).digest == digest and not dead.exists()
