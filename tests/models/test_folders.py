"""The denoiser and encoder folders (tdsm_edge.models.folders): round trips, and one strict check for every loader."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tdsm_edge.checkpoint import save_module
from tdsm_edge.config import RunConfig, denoiser_preset, encoder_preset, replace
from tdsm_edge.data.features import FeatureStats
from tdsm_edge.errors import CheckpointError, ConfigError
from tdsm_edge.models.denoiser import TDSMDenoiser
from tdsm_edge.models.folders import (
    denoiser_from_state,
    encoder_from_state,
    load_denoiser,
    load_encoder,
    save_denoiser,
    save_encoder,
)
from tdsm_edge.models.shift_gcn import ShiftGCN

DCFG = denoiser_preset("tiny", hidden_size=32, depth=1, z_dim=8, cond_dim=12, num_tokens=4)
ECFG = encoder_preset("small", channels=(4, 8), strides=(2, 1), feature_dim=8)
RUN = replace(RunConfig(), denoiser=DCFG, encoder=ECFG, text=replace(RunConfig().text, num_tokens=4))


def test_denoiser_folder_round_trip(tmp_path):
    torch.manual_seed(0)
    model = TDSMDenoiser(DCFG)
    stats = FeatureStats(np.arange(8, dtype=np.float32), np.full(8, 2.0, np.float32))
    save_denoiser(tmp_path, model, RUN, seen_classes=np.array([0, 2]), stats=stats, history={"loss": [1.0]})
    back, schedule, back_stats, cfg = load_denoiser(tmp_path)
    assert cfg == RUN and not back.training and schedule.num_steps == RUN.schedule.num_steps
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), model.state_dict().values()))
    np.testing.assert_array_equal(back_stats.mean, stats.mean)
    np.testing.assert_array_equal(back_stats.std, stats.std)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["kind"] == "tdsm_denoiser" and meta["seen_classes"] == [0, 2]


def test_denoiser_folder_errors_name_the_file(tmp_path):
    save_module(tmp_path / "a", TDSMDenoiser(DCFG).state_dict(), {"kind": "tdsm_denoiser"})
    with pytest.raises(CheckpointError, match="has no run config"):
        load_denoiser(tmp_path / "a")
    save_module(tmp_path / "b", TDSMDenoiser(DCFG).state_dict(), {"config": {"train": {"lr": "fast"}}})
    with pytest.raises(ConfigError, match=r"config.json.train.lr: expected a finite number"):
        load_denoiser(tmp_path / "b")
    save_denoiser(tmp_path / "c", TDSMDenoiser(DCFG), RUN, [0], FeatureStats.identity(8), {})
    (tmp_path / "c" / "feature_std.npy").unlink()
    with pytest.raises(CheckpointError, match="feature_std.npy missing"):
        load_denoiser(tmp_path / "c")


def test_one_strict_check_lists_every_mismatch_then_the_fix():
    state = dict(TDSMDenoiser(DCFG).state_dict())
    state["renamed"] = state.pop("final_layer.linear.bias")
    state["x_embedder.weight"] = torch.zeros(32, 9)
    with pytest.raises(CheckpointError) as e:
        denoiser_from_state(state, DCFG, "ck", fix="Do this.")
    assert str(e.value) == (
        "ck does not match the model (1 missing: ['final_layer.linear.bias']; 1 unexpected: "
        "['renamed']; 1 shape mismatches: ['x_embedder.weight: checkpoint (32, 9) vs model "
        "(32, 8)']). Do this."
    )
    with pytest.raises(CheckpointError, match=r"\(32, 8\)'\]\)$"):
        denoiser_from_state(state, DCFG, "ck", fix="")  # no fix: the caller (a bundle) adds its own


def test_a_half_precision_state_loads_into_the_float32_model():
    model = TDSMDenoiser(DCFG)
    half = {k: v.half() for k, v in model.state_dict().items()}
    back = denoiser_from_state(half, DCFG, "ck")
    assert all(
        b.dtype == torch.float32 and torch.equal(b, h.float())
        for b, h in zip(back.state_dict().values(), half.values())
    )


def test_encoder_folder_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = ShiftGCN(ECFG, num_classes=3, num_joints=25).eval()
    result = SimpleNamespace(
        model=model, seen_classes=np.array([1, 4, 5]), history={"loss": [2.0]}, val_accuracy=0.5, seconds=1.0
    )
    save_encoder(tmp_path / "enc", result, ECFG)
    back, meta = load_encoder(tmp_path / "enc")
    assert meta["seen_classes"] == [1, 4, 5] and meta["num_joints"] == 25 and not back.training
    x = torch.randn(2, 3, 16, 25, 2)
    with torch.no_grad():
        torch.testing.assert_close(back.features(x), model.features(x), rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="config.json is malformed"):
        encoder_from_state(model.state_dict(), {"encoder": {"channels": "wide"}, "seen_classes": [1]}, "enc")
