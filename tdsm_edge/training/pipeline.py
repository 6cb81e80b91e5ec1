"""The whole training pipeline for one run folder: data → encoder → features → text → denoiser →
baseline → evaluation, for each split and seed, then a summary table (mean ± std over seeds).

Run folder layout:
    runs/<name>/config.yaml                   the RunConfig used (a changed config needs --overwrite)
    runs/<name>/text/class_text.safetensors   encoded class prompts (all classes)
    runs/<name>/<split>/seed<k>/encoder/      Shift-GCN (seen classes only)
    runs/<name>/<split>/seed<k>/features/     SynSE layout: train / ztest / gtest / val (+ labels)
    runs/<name>/<split>/seed<k>/denoiser/     TDSM denoiser + checkpoints/
    runs/<name>/<split>/seed<k>/baseline/     direct-alignment baseline
    runs/<name>/<split>/seed<k>/metrics.json  + confusion_*.png, sweep_*.png, training.png
    runs/<name>/summary.json, summary.md      the table `make demo` prints
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np

from ..config import RunConfig, load_config, replace, save_config, to_dict
from ..errors import ConfigError
from .distributed import DistInfo, barrier
from .split_data import SplitData, dataset_classes, prepare_data  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)


def text_cache_dir() -> Path:
    """Where encoded prompts are cached: $TDSM_CACHE_DIR/text, default ~/.cache/tdsm_edge/text."""
    import os

    return Path(os.environ.get("TDSM_CACHE_DIR", Path.home() / ".cache" / "tdsm_edge")) / "text"


def class_text_for(cfg: RunConfig, root: Path):
    """Encode (or load) the class prompts of every class: ClassText (K, ...) in global order."""
    from ..text import get_text_encoder
    from ..text.prompts import ClassPrompts, encode_classes

    path = root / "text" / "class_text.safetensors"
    names, descs = dataset_classes(cfg.data.dataset)
    options = {}
    if cfg.text.published_features:
        from ..text.openclip import TDSM_PUBLISHED_OPTIONS

        options = dict(TDSM_PUBLISHED_OPTIONS)
    enc = get_text_encoder(cfg.text.encoder, cfg.text.checkpoint, global_norm=cfg.text.global_norm, **options)
    text = encode_classes(enc, [ClassPrompts(n, s) for n, s in zip(names, descs)], cfg.text.prompt_sets,
                          cfg.text.num_tokens, cache_dir=text_cache_dir())
    if text.global_.shape[1] != cfg.denoiser.cond_dim:
        raise ConfigError(f"the text features have {text.global_.shape[1]} channels "
                          f"({len(cfg.text.prompt_sets)} prompt sets × {enc.dim}) but denoiser.cond_dim is "
                          f"{cfg.denoiser.cond_dim}; set denoiser.cond_dim: {text.global_.shape[1]}.")
    text.save(path)
    return text


def run_seed(cfg: RunConfig, data: SplitData, text, seed_dir: Path, dist: DistInfo, device: str,
             resume: bool, progress: bool) -> dict | None:
    """Encoder → features → denoiser → baseline → evaluation for one seed. Returns metrics on rank 0."""
    from ..data.features import FeatureFolder, is_complete, load_feature_folder, save_feature_folder
    from .denoiser_trainer import train_denoiser
    from .encoder_trainer import extract_features, save_encoder, train_encoder
    from .evaluation import evaluate_seed

    seed = cfg.train.seed
    feat_dir = seed_dir / "features"
    done = lambda p: (p / "model.safetensors").is_file() and (p / "config.json").is_file()  # noqa: E731
    ran = False  # did any stage (re)train in this call? then earlier metrics are stale
    if data.features is not None:  # published features: no encoder stage
        feats = data.features
    elif dist.is_main and not (resume and is_complete(feat_dir)):
        ran = True
        enc = train_encoder(data.x_train, data.y_train, data.seen, cfg.encoder, seed,
                            data.x_val[np.isin(data.y_val, data.seen)], data.y_val[np.isin(data.y_val, data.seen)],
                            device=device, progress=progress)
        save_encoder(seed_dir / "encoder", enc, cfg.encoder, num_joints=data.x_train.shape[3])
        z = lambda x, name: extract_features(enc.model, x, device, progress=progress, desc=name)  # noqa: E731
        is_unseen = np.isin(data.y_test, data.unseen)
        save_feature_folder(feat_dir, FeatureFolder(
            train=z(data.x_train, "train features"), train_label=data.y_train,
            ztest=z(data.x_test[is_unseen], "ztest features"), z_label=data.y_test[is_unseen],
            gtest=z(data.x_test, "gtest features"), g_label=data.y_test,
            val=z(data.x_val, "val features"), val_label=data.y_val))
    barrier(dist)
    if data.features is None:
        feats = load_feature_folder(feat_dir, num_classes=len(text.names), unseen=data.unseen)
    if not (resume and done(seed_dir / "denoiser")):
        ran = True
        has_ckpt = (seed_dir / "denoiser" / "checkpoints").is_dir() and any((seed_dir / "denoiser" / "checkpoints").glob("step_*"))
        train_denoiser(feats.train, feats.train_label, text, data.seen, cfg, seed_dir / "denoiser", dist, device,
                       resume=resume and has_ckpt, progress=progress)
    barrier(dist)
    if not dist.is_main:
        return None
    if cfg.baseline.enabled and not (resume and done(seed_dir / "baseline")):
        ran = True
        from .baseline import AlignmentBaseline

        base = AlignmentBaseline(feats.dim, text.global_.shape[1], cfg.baseline)
        base.fit(feats.train, feats.train_label, text.global_, data.seen, seed=seed, device=device, progress=progress)
        base.save(seed_dir / "baseline")
    previous = seed_dir / "metrics.json"
    if resume and not ran and previous.is_file():
        from ..io import read_json

        metrics = read_json(previous)
        if metrics.get("eval") == to_dict(cfg.eval):  # same protocol: reuse, don't recompute
            return metrics
    metrics = evaluate_seed(seed_dir, feats, text, data.unseen, cfg.eval, device)
    _plot_training(seed_dir)
    return metrics


def _plot_training(seed_dir: Path) -> None:
    from ..io import read_json
    from .plots import plot_training_curves

    hist = read_json(seed_dir / "denoiser" / "config.json").get("history")
    if hist and hist.get("step"):
        plot_training_curves(hist, seed_dir / "training.png")


def prepare_root(cfg: RunConfig, root: Path, resume: bool, overwrite: bool, dist: DistInfo) -> None:
    """Create the run folder; refuse to mix a changed config into an existing run."""
    cfg_path = root / "config.yaml"
    if dist.is_main:
        if root.exists() and overwrite:
            shutil.rmtree(root)
        if cfg_path.is_file():
            old = load_config(cfg_path)
            if to_dict(old) != to_dict(cfg) and not overwrite:
                raise ConfigError(f"{str(root)!r} holds a run with a different config; pass --overwrite to "
                                  "replace it, or --out to write the new run elsewhere.")
            if not resume and not overwrite:
                raise ConfigError(f"{str(root)!r} already holds a run; pass --resume to continue it (finished "
                                  "stages are reused) or --overwrite to start again.")
        root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg_path)
    barrier(dist)


def run(cfg: RunConfig, root: str | Path, splits: list[str], seeds: list[int], dist: DistInfo = DistInfo(),
        device: str = "cpu", resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict | None:
    """Train and evaluate every (split, seed); returns the summary (rank 0) and writes summary.json/.md."""
    from .summary import summarize, write_summary

    root = Path(root)
    prepare_root(cfg, root, resume, overwrite, dist)
    text_path = root / "text" / "class_text.safetensors"
    # one rank encodes and writes the class text; the others read it. A resumed run has the same
    # config (prepare_root checks), so its text is reused without loading the text encoder again.
    if dist.is_main and not (resume and text_path.is_file()):
        class_text_for(cfg, root)
    barrier(dist)
    from ..text.prompts import ClassText

    text = ClassText.load(text_path)
    results: dict[str, dict[int, dict]] = {}
    for split in splits:
        data = prepare_data(cfg, split, progress)
        for seed in seeds:
            scfg = replace(cfg, train=replace(cfg.train, seed=seed))
            log.info("=== split %s, seed %d ===", split, seed)
            m = run_seed(scfg, data, text, root / split / f"seed{seed}", dist, device, resume, progress)
            if m is not None:
                results.setdefault(split, {})[seed] = m
    if not dist.is_main:
        return None
    summary = summarize(results, root)
    write_summary(root, summary)
    return summary
