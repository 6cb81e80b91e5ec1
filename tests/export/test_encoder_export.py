"""Skeleton-encoder export: ONNX (onnxruntime) equals ShiftGCN.features; fp16 keeps its islands."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.encoder_export import EncoderGraph, export_encoder
from tdsm_edge.config import EncoderConfig
from tdsm_edge.errors import CheckpointError, ConfigError
from tdsm_edge.models.folders import load_encoder, save_encoder
from tdsm_edge.models.shift_gcn import ShiftGCN
from tdsm_edge.training.encoder_trainer import EncoderResult

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

T = 12
# narrow units ending below Dz, so the optional `proj` Linear is in the graph too
CFG = EncoderConfig(channels=(8, 16), strides=(2, 1), feature_dim=24)


def trained_like(cfg: EncoderConfig = CFG) -> ShiftGCN:
    """A ShiftGCN whose BatchNorm statistics and shift offsets are not the identity/initial values."""
    torch.manual_seed(0)
    model = ShiftGCN(cfg, num_classes=4)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
        for name, p in model.named_parameters():
            if name.endswith("feature_mask"):
                p.normal_(0, 0.3)
    return model.eval()


def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def test_fp32_onnx_equals_features_from_a_saved_encoder(tmp_path):
    model = trained_like()
    save_encoder(tmp_path / "encoder", EncoderResult(model, np.arange(4)), CFG)
    loaded, meta = load_encoder(tmp_path / "encoder")
    assert meta["seen_classes"] == [0, 1, 2, 3]
    rec = export_encoder(tmp_path / "encoder", tmp_path / "encoder.onnx", frames=T)
    assert [(s.name, s.dtype, s.shape) for s in rec.inputs] == [("window", "float32", ("batch", 3, T, 25, 2))]
    assert [(s.name, s.dtype, s.shape) for s in rec.outputs] == [("z", "float32", ("batch", 24))]
    assert rec.graph == "encoder" and rec.fp16_ops == {}
    sess = session(rec.path)
    g = torch.Generator().manual_seed(3)
    for B in (1, 5):  # neither is the traced batch (2)
        x = torch.randn(B, 3, T, 25, 2, generator=g)
        (got,) = sess.run(None, {"window": x.numpy()})
        with torch.no_grad():
            ref = loaded.features(x).numpy()
        assert got.shape == (B, 24) and got.dtype == np.float32
        assert rel_err(got, ref) < 1e-4


def test_fp16_export_close_with_float32_islands(tmp_path):
    model = trained_like()
    rec = export_encoder(model, tmp_path / "encoder_fp16.onnx", frames=T, precision="fp16")
    assert rec.inputs[0].dtype == "float32" and rec.outputs[0].dtype == "float32"
    # the units compute in fp16; the input BatchNorm and the pooling mean stay float32
    assert rec.fp16_ops.get("Conv", 0) > 0 and rec.fp16_ops.get("MatMul", 0) > 0
    assert rec.fp32_ops.get("ReduceMean", 0) == 2 and "ReduceMean" not in rec.fp16_ops
    assert rec.fp32_ops.get("BatchNormalization", 0) == 1
    x = torch.randn(3, 3, T, 25, 2, generator=torch.Generator().manual_seed(4))
    (got,) = session(rec.path).run(None, {"window": x.numpy()})
    with torch.no_grad():
        ref = model.features(x).numpy()
        eager = EncoderGraph(model, "fp16")(x).numpy()
    assert got.dtype == np.float32
    assert 1e-6 < rel_err(got, ref) < 1e-2  # really fp16 (not silently fp32), and close (measured ~9e-4)
    assert rel_err(got, eager) < 5e-3


def test_fp32_graph_module_is_features_exactly():
    model = trained_like()
    x = torch.randn(2, 3, T, 25, 2)
    with torch.no_grad():
        assert torch.equal(EncoderGraph(model)(x), model.features(x))


def test_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_encoder(tmp_path / "missing")
    with pytest.raises(ConfigError, match="precision"):
        export_encoder(trained_like(), tmp_path / "e.onnx", frames=T, precision="int8")
    with pytest.raises(ConfigError, match="frames"):
        export_encoder(trained_like(), tmp_path / "e.onnx", frames=0)
