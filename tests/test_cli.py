"""Every command line turns a user error into ONE line on stderr and a non-zero exit, never a traceback;
Ctrl-C ends it with exit 130 and a line that says what was kept."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
    return tmp_path


CASES = {  # id: (module, argv with {tmp} for the fixture folder, a fragment of the one error line)
    "train missing config": ("tdsm_edge.train", ["--config", "{tmp}/nope.yaml"], "does not exist"),
    "train non-UTF-8 config": ("tdsm_edge.train", ["--config", "{tmp}/latin1.yaml"], "is not UTF-8 text"),
    "train bad value": (
        "tdsm_edge.train",
        ["--config", "configs/demo.yaml", "--set", "train.iterations=many"],
        "train.iterations: expected an int",
    ),
    "train --out a file": ("tdsm_edge.train", ["--config", "configs/demo.yaml", "--out", "{tmp}/a_file"], "is a file"),
    "train --device tpu": (
        "tdsm_edge.train",
        ["--config", "configs/demo.yaml", "--device", "tpu", "--out", "{tmp}/r"],
        "device 'tpu'",
    ),
    "evaluate --device tpu": ("tdsm_edge.evaluate", ["--run", "{tmp}/empty_run", "--device", "tpu"], "device 'tpu'"),
    "evaluate empty run": ("tdsm_edge.evaluate", ["--run", "{tmp}/empty_run"], "holds no trained seed folder"),
    "build_engine no run": ("export.build_engine", ["--run", "{tmp}/nope", "--out", "{tmp}/e"], "nope"),
    "build_engine --out a file": (
        "export.build_engine",
        ["--run", "{tmp}/nope", "--out", "{tmp}/a_file"],
        "it is a file, not a folder",
    ),
    "data.build --out a file": (
        "tdsm_edge.data.build",
        ["ntu", "--src", "{tmp}", "--dataset", "ntu60", "--out", "{tmp}/a_file"],
        "is a file",
    ),
    "data.build no source": (
        "tdsm_edge.data.build",
        ["ntu", "--src", "{tmp}/nope", "--dataset", "ntu60", "--out", "{tmp}/d"],
        "nope",
    ),
    "synthact unknown class": (
        "tdsm_edge.data.synthact",
        ["--render", "fly to the moon", "--out", "{tmp}/x.png"],
        "fly to the moon",
    ),
    "published no checkpoint": (
        "tdsm_edge.models.published",
        ["--checkpoint", "{tmp}/nope", "--out", "{tmp}/o"],
        "nope",
    ),
    "tradeoff no run": ("export.tradeoff", ["--run", "{tmp}/nope", "--png", "{tmp}/t.png"], "nope"),
    "signing missing key": (
        "export.signing",
        ["sign", "--bundle", "{tmp}/empty_run", "--key", "{tmp}/nokey"],
        "the signing key",
    ),
    "report missing results": ("benchmarks.report", ["{tmp}/nope.json", "--out", "{tmp}/rep"], "nope.json"),
    "report binary results": ("benchmarks.report", ["{tmp}/binary.txt", "--out", "{tmp}/rep"], "cannot read"),
    "report FIFO results": ("benchmarks.report", ["{tmp}/fifo", "--out", "{tmp}/rep"], "not a regular file"),
    "train FIFO config": ("tdsm_edge.train", ["--config", "{tmp}/fifo"], "not a regular file"),
    "train folder config": ("tdsm_edge.train", ["--config", "{tmp}/empty_run"], "is a folder"),
    "train deep config": ("tdsm_edge.train", ["--config", "{tmp}/deep.yaml"], "nests too deeply"),
    "train huge int": (
        "tdsm_edge.train",
        ["--config", "configs/demo.yaml", "--set", "train.iterations=" + "9" * 400],
        "too large",
    ),
    "signing keygen empty": ("export.signing", ["keygen", "--out", ""], "must name the key files' prefix"),
    "signing FIFO key": ("export.signing", ["sign", "--bundle", "{tmp}", "--key", "{tmp}/fifo"], "not a regular file"),
    "synthact huge frames": ("tdsm_edge.data.synthact", ["--render", "0", "--frames", str(10**12)], "--frames"),
    "build_engine huge batch": ("export.build_engine", ["--run", "{tmp}/nope", "--batch", str(10**9)], "--batch"),
    "build_engine huge J": ("export.build_engine", ["--run", "{tmp}/nope", "--noises", str(10**9)], "--noises"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, files, caplog, monkeypatch):
    module, argv, fragment = CASES[case]
    monkeypatch.chdir(ROOT)
    main = importlib.import_module(module if not module.endswith(("data.build", "synthact")) else module + ".__main__")
    with caplog.at_level(logging.ERROR):
        rc = main.main([a.replace("{tmp}", str(files)) for a in argv])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert rc == 2, (rc, errors)
    assert len(errors) == 1 and "\n" not in errors[0] and fragment in errors[0], errors


def test_build_engine_binary_classes_file(files, caplog, tiny_run_for_cli):
    from export import build_engine

    with caplog.at_level(logging.ERROR):
        rc = build_engine.main(
            ["--run", str(tiny_run_for_cli), "--out", str(files / "e"), "--classes-file", str(files / "binary.txt")]
        )
    assert rc == 2 and "is not UTF-8 text" in caplog.text and not (files / "e").exists()


@pytest.fixture(scope="module")
def tiny_run_for_cli(tmp_path_factory):
    pytest.importorskip("onnxscript")
    from helpers.tiny_run import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("cli"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_training_is_one_line_and_exit_130(tmp_path):
    """A real process, a real SIGINT, in the middle of training: no traceback, and how to continue."""
    import yaml

    from helpers.tiny_run import TINY

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "iterations": 100_000}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TDSM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tdsm_edge.train",
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not list((tmp_path / "run").glob("*/seed1/features")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # wait for the denoiser stage (the encoder and its features are done)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted; finished stages and the latest denoiser checkpoint are kept" in err


def test_exit_main_leaves_with_130_after_an_interrupt_and_flushes_what_was_said():
    """exit_main(130) ends the process with 130 at once (never by SIGINT at interpreter shutdown), after
    flushing the log and stdout; any other status is sys.exit's."""
    from tdsm_edge.cli import exit_main

    code = (
        "import logging, sys\n"
        "from tdsm_edge.cli import exit_main, setup_logging\n"
        "setup_logging('INFO')\n"
        "print('partial line', end='')\n"
        "logging.getLogger('x').error('interrupted; nothing written')\n"
        "exit_main(130)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stdout == "partial line"
    assert "interrupted; nothing written" in done.stderr
    with pytest.raises(SystemExit) as e:
        exit_main(2)
    assert e.value.code == 2
