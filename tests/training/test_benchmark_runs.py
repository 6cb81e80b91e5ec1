"""Runs on the real benchmarks' class lists and splits, from a published-layout feature folder
(no encoder stage) — the route for users who have SynSE / PURLS / SMIE features."""

import json

import numpy as np
import pytest
import yaml

from tdsm_edge import evaluate as evaluate_cli
from tdsm_edge import train as train_cli
from tdsm_edge.data.benchmarks import load_split

DZ = 32
CFG = {
    "name": "ntu60_feats",
    "data": {"dataset": "ntu60", "split": "ru5", "features": None},
    "encoder": {"feature_dim": DZ},
    "text": {"encoder": "minilm", "num_tokens": 8},
    "denoiser": {
        "preset": "tiny",
        "hidden_size": 32,
        "depth": 1,
        "num_heads": 2,
        "z_dim": DZ,
        "cond_dim": 768,
        "num_tokens": 8,
    },
    "train": {"iterations": 30, "batch_size": 32, "lr": 0.001, "warmup_steps": 5, "checkpoint_every": 0},
    "eval": {"num_noises": 2, "timestep": 25},
    "baseline": {"epochs": 2},
}


def _synse_folder(path, with_val: bool):
    """A SynSE-layout folder for NTU-60 ru5 with class-dependent features."""
    unseen, seen = load_split("ntu60", "ru5")
    g = np.random.default_rng(0)
    centers = g.normal(size=(60, DZ)).astype(np.float32)

    def draw(classes, n):
        y = np.repeat(classes, n)
        return (centers[y] + 0.3 * g.normal(size=(len(y), DZ))).astype(np.float32), y.astype(np.int64)

    path.mkdir()
    x, y = draw(seen, 4)
    np.save(path / "train.npy", x), np.save(path / "train_label.npy", y)
    zx, zy = draw(unseen, 6)
    np.save(path / "ztest.npy", zx), np.save(path / "z_label.npy", zy)
    sx, sy = draw(seen, 1)
    np.save(path / "gtest.npy", np.concatenate([zx, sx])), np.save(path / "g_label.npy", np.concatenate([zy, sy]))
    if with_val:
        vx, vy = draw(np.arange(60), 1)
        np.save(path / "val.npy", vx), np.save(path / "val_label.npy", vy)
    return unseen


@pytest.mark.parametrize("with_val", [True, False])
def test_published_features_run_end_to_end(tmp_path, monkeypatch, with_val):
    monkeypatch.setenv("TDSM_CACHE_DIR", str(tmp_path / "cache"))
    unseen = _synse_folder(tmp_path / "shift_5_r", with_val)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "out"
    rc = train_cli.main(
        [
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--no-progress",
            "--log-level",
            "WARNING",
            "--set",
            f"data.features={tmp_path / 'shift_5_r'}",
        ]
    )
    assert rc == 0
    seed = out / "ru5" / "seed1"
    assert not (seed / "encoder").exists() and not (seed / "features").exists()  # no encoder stage
    m = json.loads((seed / "metrics.json").read_text())
    assert m["num_unseen"] == 5 and len(m["tdsm"]["zsl"]["per_class"]) == 5
    assert ("gzsl" in m["tdsm"]) == with_val
    # the text table holds all 60 NTU classes with their names
    from tdsm_edge.text.prompts import ClassText

    text = ClassText.load(out / "text" / "class_text.safetensors")
    assert len(text.names) == 60 and text.names[int(unseen[0])] == "reading"
    # re-evaluation reads the same published folder and reproduces the metrics
    assert evaluate_cli.main(["--run", str(out), "--log-level", "WARNING"]) == 0
    m2 = json.loads((seed / "metrics.json").read_text())
    assert m2["tdsm"]["zsl"]["top1"] == m["tdsm"]["zsl"]["top1"]


def test_benchmark_dataset_without_a_source_is_a_clear_error(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TDSM_CACHE_DIR", str(tmp_path / "cache"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    rc = train_cli.main(["--config", str(cfg), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2
    assert "needs data.skeletons" in caplog.text


def test_raw_ntu_skeletons_build_then_train(tmp_path, monkeypatch):
    """.skeleton files → `python -m tdsm_edge.data.build` → train on ntu60 ru5 with the xsub protocol."""
    from tdsm_edge.data.build.__main__ import main as build_main

    monkeypatch.setenv("TDSM_CACHE_DIR", str(tmp_path / "cache"))
    from helpers import ntu_skeleton_writer as W

    rng = np.random.default_rng(0)
    unseen, seen = load_split("ntu60", "ru5")
    src = tmp_path / "skeletons"
    # subject 1 is an xsub training subject, subject 3 a test subject
    plan = (
        [(1, c, r) for c in seen[:6] for r in (1, 2, 3)]
        + [(1, c, 1) for c in unseen]
        + [(3, c, r) for c in unseen for r in (1, 2)]
        + [(3, c, 1) for c in seen[:6]]
    )
    for subject, c, rep in plan:
        body = W.random_body(rng, 12)
        W.write_skeleton(
            src / f"S001C001P{subject:03d}R{rep:03d}A{c + 1:03d}.skeleton",
            W.tracks_to_frames([(7, body, range(12))], 12),
        )
    assert (
        build_main(
            [
                "ntu",
                "--src",
                str(src),
                "--dataset",
                "ntu60",
                "--out",
                str(tmp_path / "built"),
                "--frames",
                "16",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    cfg = {
        **CFG,
        "data": {
            "dataset": "ntu60",
            "split": "ru5",
            "frames": 16,
            "val_per_class": 1,
            "skeletons": str(tmp_path / "built"),
        },
        "encoder": {
            "preset": "small",
            "channels": [8, 16],
            "strides": [1, 2],
            "feature_dim": DZ,
            "epochs": 2,
            "batch_size": 8,
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert train_cli.main(["--config", str(path), "--out", str(out), "--no-progress", "--log-level", "WARNING"]) == 0
    feats = out / "ru5" / "seed1" / "features"
    train_y, z_y = np.load(feats / "train_label.npy"), np.load(feats / "z_label.npy")
    assert set(train_y.tolist()) <= set(seen.tolist()) and len(train_y) == 6 * 3 - 6  # one per seen class held out
    assert sorted(z_y.tolist()) == sorted(np.repeat(unseen, 2).tolist())  # test subject's unseen recordings
    val_y = np.load(feats / "val_label.npy")
    assert set(unseen.tolist()) <= set(val_y.tolist())  # training-side unseen recordings validate only
    m = json.loads((out / "ru5" / "seed1" / "metrics.json").read_text())
    assert m["num_unseen"] == 5 and "gzsl" in m["tdsm"]


def test_published_checkpoint_convert_then_evaluate(tmp_path, monkeypatch):
    """The documented two-command route: convert a published checkpoint, evaluate it on a feature folder."""
    import torch
    from safetensors.torch import save_file

    from tdsm_edge.config import config_from_dict
    from tdsm_edge.models.denoiser import TDSMDenoiser
    from tdsm_edge.models.published import main as convert_main

    monkeypatch.setenv("TDSM_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config_from_dict({**CFG, "denoiser": {**CFG["denoiser"], "mask_text_padding": False}})
    torch.manual_seed(0)
    net = TDSMDenoiser(cfg.denoiser)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    (tmp_path / "best").mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "best" / "model.safetensors"))
    _synse_folder(tmp_path / "shift_5_r", with_val=False)
    yml = tmp_path / "c.yaml"
    yml.write_text(yaml.safe_dump({**CFG, "train": {**CFG["train"], "standardize_features": False}}))
    run = tmp_path / "runs" / "pub"
    assert (
        convert_main(
            [
                "--checkpoint",
                str(tmp_path / "best"),
                "--out",
                str(run / "ru5" / "seed1" / "denoiser"),
                "--heads",
                "2",
                "--config",
                str(yml),
                "--log-level",
                "WARNING",
            ]
        )
        == 0
    )
    assert (
        evaluate_cli.main(
            [
                "--run",
                str(run),
                "--config",
                str(yml),
                "--set",
                f"data.features={tmp_path / 'shift_5_r'}",
                "--log-level",
                "WARNING",
            ]
        )
        == 0
    )
    m = json.loads((run / "ru5" / "seed1" / "metrics.json").read_text())
    assert m["num_unseen"] == 5 and 0.0 <= m["tdsm"]["zsl"]["top1"] <= 1.0
    assert (run / "text" / "class_text.safetensors").is_file() and (run / "config.yaml").is_file()
