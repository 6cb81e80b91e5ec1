"""A tiny end-to-end run through the CLI: encoder → features → denoiser → baseline → evaluation."""

import json

import numpy as np
import pytest
import yaml

from tdsm_edge import evaluate as evaluate_cli
from tdsm_edge import train as train_cli

TINY = {
    "name": "tiny",
    "data": {
        "dataset": "synthact",
        "split": "ru5",
        "samples_per_class": 6,
        "test_per_class": 4,
        "gzsl_seen_per_class": 2,
        "val_per_class": 3,
        "frames": 16,
        "seed": 0,
    },
    "encoder": {
        "preset": "small",
        "channels": [16, 32],
        "strides": [1, 2],
        "feature_dim": 32,
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.05,
    },
    "text": {"encoder": "minilm", "num_tokens": 8},
    "denoiser": {
        "preset": "tiny",
        "hidden_size": 32,
        "depth": 1,
        "num_heads": 2,
        "z_dim": 32,
        "cond_dim": 768,
        "num_tokens": 8,
    },
    "train": {"iterations": 40, "batch_size": 32, "lr": 0.001, "warmup_steps": 5, "checkpoint_every": 20},
    "eval": {"num_noises": 2, "timestep": 25, "sweep_noises": [1, 2]},
    "baseline": {"epochs": 3},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TDSM_CACHE_DIR", str(root / "cache"))
        cfg = root / "tiny.yaml"
        cfg.write_text(yaml.safe_dump(TINY))
        rc = train_cli.main(
            ["--config", str(cfg), "--out", str(root / "out"), "--no-progress", "--log-level", "WARNING"]
        )
        assert rc == 0
        yield root, cfg


def test_run_writes_everything_and_learns(tiny_run, capsys):
    root, _ = tiny_run
    out = root / "out"
    seed = out / "ru5" / "seed1"
    for f in ["config.yaml", "summary.json", "summary.md", "text/class_text.safetensors"]:
        assert (out / f).is_file(), f
    for f in [
        "encoder/model.safetensors",
        "features/train.npy",
        "features/ztest.npy",
        "features/gtest.npy",
        "features/val.npy",
        "denoiser/model.safetensors",
        "baseline/model.safetensors",
        "metrics.json",
        "confusion_tdsm.png",
        "confusion_baseline.png",
        "sweep_noises.png",
        "training.png",
    ]:
        assert (seed / f).is_file(), f
    # unseen classes never reach the encoder's training set
    from tdsm_edge.data.synthact import load_split

    unseen, _ = load_split("ru5")
    assert not np.isin(np.load(seed / "features" / "train_label.npy"), unseen).any()
    assert set(np.load(seed / "features" / "z_label.npy").tolist()) == set(unseen.tolist())
    # learning: encoder training accuracy and denoiser loss move the right way
    enc = json.loads((seed / "encoder" / "config.json").read_text())
    assert enc["history"]["train_acc"][-1] > enc["history"]["train_acc"][0]
    hist = json.loads((seed / "denoiser" / "config.json").read_text())["history"]
    assert np.mean(hist["loss"][-3:]) < np.mean(hist["loss"][:3])
    m = json.loads((seed / "metrics.json").read_text())
    for method in ("tdsm", "baseline"):
        assert 0.0 <= m[method]["zsl"]["top1"] <= m[method]["zsl"]["top5"] <= 1.0
        assert 0.0 <= m[method]["gzsl"]["harmonic"] <= 1.0
    assert set(m["sweeps"]["noises"]) == {"1", "2"}
    assert "| ru5 | 5 | 20.0 |" in (out / "summary.md").read_text()


def test_existing_run_needs_resume_or_overwrite(tiny_run, caplog):
    root, cfg = tiny_run
    rc = train_cli.main(["--config", str(cfg), "--out", str(root / "out"), "--no-progress"])
    assert rc == 2 and "--resume" in caplog.text


def test_resume_reuses_finished_stages(tiny_run):
    root, cfg = tiny_run
    seed = root / "out" / "ru5" / "seed1"
    files = [
        "encoder/model.safetensors",
        "features/train.npy",
        "denoiser/model.safetensors",
        "baseline/model.safetensors",
        "metrics.json",
    ]
    before = {f: (seed / f).stat().st_mtime_ns for f in files}
    rc = train_cli.main(
        ["--config", str(cfg), "--out", str(root / "out"), "--resume", "--no-progress", "--log-level", "WARNING"]
    )
    assert rc == 0
    assert {f: (seed / f).stat().st_mtime_ns for f in files} == before


def test_resume_redoes_a_half_written_feature_folder(tiny_run):
    root, cfg = tiny_run
    seed = root / "out" / "ru5" / "seed1"
    (seed / "features" / "COMPLETE").unlink()  # as if extraction had crashed before the end
    rc = train_cli.main(
        ["--config", str(cfg), "--out", str(root / "out"), "--resume", "--no-progress", "--log-level", "WARNING"]
    )
    assert rc == 0 and (seed / "features" / "COMPLETE").is_file()


def test_evaluate_cli_reproduces_metrics(tiny_run, capsys):
    root, _ = tiny_run
    seed = root / "out" / "ru5" / "seed1"
    first = json.loads((seed / "metrics.json").read_text())["tdsm"]["zsl"]["top1"]
    assert evaluate_cli.main(["--run", str(root / "out"), "--log-level", "WARNING"]) == 0
    again = json.loads((seed / "metrics.json").read_text())["tdsm"]["zsl"]["top1"]
    assert again == first
    assert (
        evaluate_cli.main(
            ["--run", str(seed), "--noises", "1", "--sweep-timesteps", "5", "45", "--log-level", "WARNING"]
        )
        == 0
    )
    m = json.loads((seed / "metrics.json").read_text())
    assert m["eval"]["num_noises"] == 1 and set(m["sweeps"]["timesteps"]) == {"5", "45"}
    assert (seed / "sweep_timesteps.png").is_file()


def test_cli_errors(tmp_path, caplog):
    assert train_cli.main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in caplog.text
    assert evaluate_cli.main(["--run", str(tmp_path)]) == 2
    assert "no trained seed folder" in caplog.text
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--help"])
    assert e.value.code == 0


@pytest.mark.slow
def test_torchrun_two_processes_end_to_end(tmp_path):
    """The whole pipeline under `torchrun --nproc_per_node 2` (gloo): rank 0 trains the encoder and
    evaluates, both ranks train the denoiser. Slow (two processes load torch and MiniLM)."""
    import os
    import subprocess
    import sys

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "iterations": 20}}))
    env = {**os.environ, "TDSM_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "tdsm_edge.train",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "out"),
        "--no-progress",
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| ru5 | 5 | 20.0 |" in proc.stdout
    assert (tmp_path / "out" / "ru5" / "seed1" / "metrics.json").is_file()
