"""One tiny trained run and its fp32 engine bundle (with the encoder graph), shared by the runtime tests.

Built once per session (~20 s on one core): training as tests/export/test_build_engine.py does, then
`python -m export.build_engine --no-verify --no-tradeoff` (the export tests cover verification).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers.tiny_run import train_tiny_run

pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

UNSEEN = [27, 28, 36, 47, 48]  # synthact ru5: the bundle's classes, in score order


@pytest.fixture(scope="session")
def runtime_bundle(tmp_path_factory) -> SimpleNamespace:
    """`.dir` the fp32 bundle, `.seed_dir` the run's seed folder, `.windows(per_class, seed)` raw synthact
    windows `(N, 2, T, V, 3)` of the bundle classes, `.features(raw)` the PyTorch encoder's `(N, Dz)`, `.reference(raw)` the PyTorch errors `(N, K)`."""
    import torch

    from export import build_engine
    from tdsm_edge.data.synthact import generate
    from tdsm_edge.skeleton.preprocess import preprocess_batch
    from tdsm_edge.training.denoiser_trainer import load_denoiser
    from tdsm_edge.training.encoder_trainer import load_encoder
    from tdsm_edge.training.evaluation import tdsm_errors
    from tdsm_edge.text.prompts import ClassText

    root = tmp_path_factory.mktemp("runtime")
    seed_dir = train_tiny_run(root) / "ru5" / "seed1"
    out = root / "engines" / "tiny"
    assert build_engine.main(["--run", str(seed_dir), "--out", str(out), "--batch", "4", "--no-verify",
                              "--no-tradeoff", "--log-level", "WARNING"]) == 0

    model, schedule, stats, cfg = load_denoiser(seed_dir / "denoiser")
    encoder = load_encoder(seed_dir / "encoder")[0].eval()
    text = ClassText.load(root / "tiny" / "text" / "class_text.safetensors").subset(UNSEEN)
    frames = cfg.data.frames

    def windows(per_class: int = 2, seed: int = 7) -> np.ndarray:
        return generate(UNSEEN, per_class, seed=seed, frames=frames)[0]  # (N, 2, T, V, 3)

    def features(raw: np.ndarray) -> np.ndarray:
        x = preprocess_batch(raw, frames)  # (N, 3, T, V, 2): the training path
        with torch.no_grad():
            return encoder.features(torch.from_numpy(x)).float().numpy()  # (N, Dz)

    def reference(raw: np.ndarray) -> np.ndarray:
        return tdsm_errors(model, schedule, stats, features(raw), text, cfg.eval.num_noises, cfg.eval.timestep,
                           cfg.eval.noise_seed)  # (N, K)

    return SimpleNamespace(dir=out, seed_dir=seed_dir, frames=frames, names=list(text.names), windows=windows,
                           features=features, reference=reference)
