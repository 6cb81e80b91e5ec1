"""The PyTorch backend and backend choice: same answers as ONNX Runtime from the bundle's reference weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from export.bundle_stage import seal_manifest
from tdsm_edge.errors import BundleError, ConfigError, MissingDependencyError
from tdsm_edge.runtime import ZeroShotRecognizer
from tdsm_edge.runtime import backends as backends_mod

RTOL = 1e-4


@pytest.fixture(scope="module")
def torch_rec(runtime_bundle) -> ZeroShotRecognizer:
    return ZeroShotRecognizer.load(runtime_bundle.dir, backend="torch", threads=1)


def test_torch_backend_equals_onnxruntime_and_the_training_path(torch_rec, runtime_bundle):
    ort = ZeroShotRecognizer.load(runtime_bundle.dir, backend="onnxruntime", threads=1)
    assert torch_rec.backend == "torch" and "torch cpu, fp32" in torch_rec._scorer.device
    raw = runtime_bundle.windows(per_class=2, seed=11)
    ref = runtime_bundle.reference(raw)  # (N, K) the training-side scorer
    got = np.stack([p.errors for p in torch_rec.predict_batch(raw)])
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got, np.stack([p.errors for p in ort.predict_batch(raw)]), rtol=RTOL, atol=0)
    z = runtime_bundle.features(raw)
    np.testing.assert_allclose(torch_rec.score_features(z), ort.score_features(z), rtol=RTOL, atol=0)
    assert torch_rec.score_features(z[:0]).shape == (0, len(torch_rec.classes))


def test_torch_backend_class_subset_reuploads_tables(runtime_bundle):
    rec = ZeroShotRecognizer.load(runtime_bundle.dir, backend="torch", threads=1)
    z = runtime_bundle.features(runtime_bundle.windows(per_class=1, seed=4))
    full = rec.score_features(z)
    names = rec.classes
    rec.set_active_classes([names[2], names[1]])
    np.testing.assert_allclose(rec.score_features(z), full[:, [2, 1]], rtol=1e-6, atol=0)
    rec.set_active_classes(None)
    np.testing.assert_array_equal(rec.score_features(z), full)


def test_auto_prefers_onnxruntime_then_falls_back_to_torch(runtime_bundle, monkeypatch):
    assert ZeroShotRecognizer.load(runtime_bundle.dir, threads=1).backend in ("tensorrt", "onnxruntime")
    real = backends_mod.installed
    monkeypatch.setattr(backends_mod, "installed", lambda b: b == "torch" and real(b))
    assert ZeroShotRecognizer.load(runtime_bundle.dir, threads=1).backend == "torch"
    with pytest.raises(MissingDependencyError, match="onnxruntime is not installed.*tdsm-edge\\[runtime\\]"):
        ZeroShotRecognizer.load(runtime_bundle.dir, backend="onnxruntime")
    monkeypatch.setattr(backends_mod, "installed", lambda b: False)
    with pytest.raises(ConfigError, match="no backend can run this bundle here: tensorrt: .*; onnxruntime: .*; torch"):
        ZeroShotRecognizer.load(runtime_bundle.dir)


def test_bundle_without_reference_weights_refuses_torch(runtime_bundle, tmp_path):

    path = tmp_path / "noref"
    shutil.copytree(runtime_bundle.dir, path)
    data = json.loads((path / "manifest.json").read_text())
    del data["reference"]
    data["files"] = {k: v for k, v in data["files"].items() if not k.startswith("reference/")}
    shutil.rmtree(path / "reference")
    seal_manifest(path, data)  # a consistent edit: re-sealed with a new digest
    with pytest.raises(ConfigError, match="no reference weights for PyTorch.*Rebuild|no reference weights"):
        ZeroShotRecognizer.load(path, backend="torch")
    assert ZeroShotRecognizer.load(path, threads=1).backend == "onnxruntime"  # auto skips torch


def test_tampered_reference_weights_are_refused(runtime_bundle, tmp_path):
    path = tmp_path / "tampered"
    shutil.copytree(runtime_bundle.dir, path)
    bank = np.load(path / "reference" / "noise_bank.npy")
    np.save(path / "reference" / "noise_bank.npy", bank + 1e-3)
    with pytest.raises(BundleError, match="reference/noise_bank.npy has sha256"):
        ZeroShotRecognizer.load(path, backend="torch")


def test_cuda_device_without_a_gpu_is_a_clear_error(runtime_bundle):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        ZeroShotRecognizer.load(runtime_bundle.dir, backend="torch", device="cuda")


@pytest.mark.gpu
def test_cuda_graph_replay_equals_eager_on_gpu(runtime_bundle):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    eager = ZeroShotRecognizer.load(runtime_bundle.dir, backend="torch", device="cuda")
    graph = ZeroShotRecognizer.load(runtime_bundle.dir, backend="torch", device="cuda", cuda_graph=True)
    z = runtime_bundle.features(runtime_bundle.windows(per_class=2, seed=6))
    want = eager.score_features(z)
    for _ in range(3):  # capture, then replays
        np.testing.assert_allclose(graph.score_features(z), want, rtol=1e-5, atol=1e-6)
    graph.set_active_classes(graph.classes[:2])  # a new class set: new tables, new graph
    np.testing.assert_allclose(graph.score_features(z), want[:, :2], rtol=1e-5, atol=1e-6)


def test_fast_path_on_cpu_equals_onnxruntime(runtime_bundle):
    """The GPU fast path's layout and fused-kernel fallbacks (fp32 on the CPU) inside the torch backend."""
    from tdsm_edge.runtime.manifest import load_manifest
    from tdsm_edge.runtime.torch_backend import TorchBackend

    fast = TorchBackend(load_manifest(runtime_bundle.dir), device="cpu", threads=1, fast=True)
    assert fast.fast and "fast path" in fast.device
    ort = ZeroShotRecognizer.load(runtime_bundle.dir, backend="onnxruntime", threads=1)
    z = runtime_bundle.features(runtime_bundle.windows(per_class=2, seed=8))
    np.testing.assert_allclose(fast.errors(z), ort.score_features(z), rtol=RTOL, atol=0)
    names = fast.class_set.names
    fast.class_set.select([names[3], names[0]])
    np.testing.assert_allclose(fast.errors(z), ort.score_features(z)[:, [3, 0]], rtol=RTOL, atol=0)


def test_row_bounded_chunks_equal_one_call(runtime_bundle):
    """On the CPU the torch backend cuts a batch into chunks of <= max_rows scoring rows (B·K·J), as ONNX
    Runtime does: same scores, one sample per chunk when K·J exceeds the limit."""
    from tdsm_edge.runtime.batching import CPU_MAX_ROWS
    from tdsm_edge.runtime.manifest import load_manifest
    from tdsm_edge.runtime.torch_backend import TorchBackend

    manifest = load_manifest(runtime_bundle.dir)
    one = TorchBackend(manifest, device="cpu", threads=1, max_rows=10**9)
    small = TorchBackend(manifest, device="cpu", threads=1, max_rows=7)
    assert TorchBackend(manifest, device="cpu", threads=1).max_rows == CPU_MAX_ROWS
    z = runtime_bundle.features(runtime_bundle.windows(per_class=2, seed=3))
    assert 7 < len(one.class_set.names) * one.num_noises and len(z) > 1
    calls = []
    real = small._call
    small._call = lambda zt, *a: calls.append(len(zt)) or real(zt, *a)
    np.testing.assert_allclose(small.errors(z), one.errors(z), rtol=1e-6, atol=0)
    assert calls == [1] * len(z)
    with pytest.raises(ConfigError, match="max_rows must be a positive int"):
        TorchBackend(manifest, device="cpu", max_rows=0)
