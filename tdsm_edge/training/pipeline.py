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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunConfig, load_config, replace, save_config, to_dict
from ..errors import ConfigError
from .distributed import DistInfo, barrier
from .split_data import SplitData, dataset_classes, prepare_data

log = logging.getLogger(__name__)


def text_cache_dir() -> Path:
    """Where encoded prompts are cached: $TDSM_CACHE_DIR/text, default ~/.cache/tdsm_edge/text."""
    import os

    return Path(os.environ.get("TDSM_CACHE_DIR", Path.home() / ".cache" / "tdsm_edge")) / "text"


def trained_config(root: Path, config: str | None, overrides: list[str]) -> RunConfig:
    """The RunConfig of a trained run folder (its config.yaml; a folder without one, e.g. a converted
    published checkpoint, stores `config` there first) with `--set` overrides applied."""
    from ..config import apply_overrides
    from ..errors import DataError

    if not (root / "config.yaml").is_file():
        if not config:
            raise DataError(
                f"{root} has no config.yaml; pass --config (e.g. the yaml the checkpoint was trained "
                "with) so its data, text and eval sections can be stored there."
            )
        save_config(load_config(config), root / "config.yaml")
    return apply_overrides(load_config(root / "config.yaml"), overrides)


def trained_class_text(cfg: RunConfig, root: Path):
    """The class text a run was trained with (text/class_text.safetensors), or — for a converted published
    checkpoint, which has none — the class prompts encoded once, as training would."""
    from ..text.prompts import ClassText

    path = root / "text" / "class_text.safetensors"
    return ClassText.load(path) if path.is_file() else class_text_for(cfg, root)


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
    text = encode_classes(
        enc,
        [ClassPrompts(n, s) for n, s in zip(names, descs)],
        cfg.text.prompt_sets,
        cfg.text.num_tokens,
        cache_dir=text_cache_dir(),
    )
    if text.global_.shape[1] != cfg.denoiser.cond_dim:
        raise ConfigError(
            f"the text features have {text.global_.shape[1]} channels "
            f"({len(cfg.text.prompt_sets)} prompt sets × {enc.dim}) but denoiser.cond_dim is "
            f"{cfg.denoiser.cond_dim}; set denoiser.cond_dim: {text.global_.shape[1]}."
        )
    text.save(path)
    return text


def run_seed(
    cfg: RunConfig, data: SplitData, text, seed_dir: Path, dist: DistInfo, device: str, resume: bool, progress: bool
) -> dict | None:
    """Encoder → features → denoiser → baseline → evaluation for one seed. Returns metrics on rank 0.

    Each stage (`SeedStages`) writes its part of `seed_dir`; with `resume`, a stage whose part is
    finished is skipped, and the metrics are reused only when no stage trained anything in this call.
    """
    stages = SeedStages(cfg, data, text, seed_dir, dist, device, resume, progress)
    trained = stages.encoder_stage()
    barrier(dist)  # the other ranks read the features rank 0 wrote
    feats = stages.features()
    trained |= stages.denoiser_stage(feats)
    barrier(dist)
    if not dist.is_main:
        return None
    trained |= stages.baseline_stage(feats)
    return stages.evaluation_stage(feats, trained)


@dataclass(frozen=True, eq=False)
class SeedStages:
    """The stages of one seed folder. Each stage method says what it writes and when it is skipped, and
    returns whether it trained something in this call (then metrics computed before are stale)."""

    cfg: RunConfig  # the run's config with train.seed set to this seed
    data: SplitData  # the split's skeletons (or published features)
    text: Any  # ClassText of every class, in global order
    seed_dir: Path  # runs/<name>/<split>/seed<k>
    dist: DistInfo  # this process's rank (the denoiser trains on every rank, the rest on rank 0)
    device: str  # torch device
    resume: bool  # --resume: reuse finished stages
    progress: bool  # show progress bars

    def encoder_stage(self) -> bool:
        """encoder/ (Shift-GCN trained on the seen classes) and features/ (its features of every sample, the
        SynSE layout), written by rank 0. Skipped with published features, and on --resume when features/ is
        complete; an encoder whose features were not all written is trained again."""
        from ..data.features import FeatureFolder, is_complete, save_feature_folder
        from ..models.folders import save_encoder
        from .encoder_trainer import extract_features, train_encoder

        data, feat_dir = self.data, self.seed_dir / "features"
        if data.features is not None or not self.dist.is_main or (self.resume and is_complete(feat_dir)):
            return False
        is_seen_val = np.isin(data.y_val, data.seen)
        enc = train_encoder(
            data.x_train,
            data.y_train,
            data.seen,
            self.cfg.encoder,
            self.cfg.train.seed,
            data.x_val[is_seen_val],
            data.y_val[is_seen_val],
            device=self.device,
            progress=self.progress,
        )
        save_encoder(self.seed_dir / "encoder", enc, self.cfg.encoder, num_joints=data.x_train.shape[3])

        def z(x: np.ndarray, name: str) -> np.ndarray:  # (N, Dz)
            return extract_features(enc.model, x, self.device, progress=self.progress, desc=name)

        is_unseen = np.isin(data.y_test, data.unseen)
        save_feature_folder(
            feat_dir,
            FeatureFolder(
                train=z(data.x_train, "train features"),
                train_label=data.y_train,
                ztest=z(data.x_test[is_unseen], "ztest features"),
                z_label=data.y_test[is_unseen],
                gtest=z(data.x_test, "gtest features"),
                g_label=data.y_test,
                val=z(data.x_val, "val features"),
                val_label=data.y_val,
            ),
        )
        return True

    def features(self):
        """The features the later stages read: the published ones, else features/ (from `encoder_stage`)."""
        from ..data.features import load_feature_folder

        if self.data.features is not None:
            return self.data.features
        return load_feature_folder(
            self.seed_dir / "features", num_classes=len(self.text.names), unseen=self.data.unseen
        )

    def denoiser_stage(self, feats) -> bool:
        """denoiser/ (the TDSM denoiser, checkpoints/ on the way), trained on every rank. Skipped on --resume
        when the denoiser is saved; an unfinished one continues from its checkpoints/step_* when it has any."""
        from .denoiser_trainer import train_denoiser

        folder = self.seed_dir / "denoiser"
        if self.resume and _saved(folder):
            return False
        checkpoints = folder / "checkpoints"
        has_checkpoint = checkpoints.is_dir() and any(checkpoints.glob("step_*"))
        train_denoiser(
            feats.train,
            feats.train_label,
            self.text,
            self.data.seen,
            self.cfg,
            folder,
            self.dist,
            self.device,
            resume=self.resume and has_checkpoint,
            progress=self.progress,
        )
        return True

    def baseline_stage(self, feats) -> bool:
        """baseline/ (the direct-alignment baseline), rank 0. Skipped when baseline.enabled is off, and on
        --resume when the baseline is saved."""
        folder = self.seed_dir / "baseline"
        if not self.cfg.baseline.enabled or (self.resume and _saved(folder)):
            return False
        from .baseline import AlignmentBaseline

        text = self.text
        base = AlignmentBaseline(feats.dim, text.global_.shape[1], self.cfg.baseline)
        base.fit(
            feats.train,
            feats.train_label,
            text.global_,
            self.data.seen,
            seed=self.cfg.train.seed,
            device=self.device,
            progress=self.progress,
        )
        base.save(folder)
        return True

    def evaluation_stage(self, feats, trained: bool) -> dict:
        """metrics.json (+ the confusion / sweep plots and training.png), rank 0; returns the metrics. Skipped
        on --resume when no stage `trained` in this call and metrics.json was computed with the same eval
        protocol (cfg.eval): its metrics are returned."""
        from .evaluation import evaluate_seed

        previous = self.seed_dir / "metrics.json"
        if self.resume and not trained and previous.is_file():
            from ..io import read_json

            metrics = read_json(previous)
            if metrics.get("eval") == to_dict(self.cfg.eval):  # same protocol: reuse, don't recompute
                return metrics
        metrics = evaluate_seed(self.seed_dir, feats, self.text, self.data.unseen, self.cfg.eval, self.device)
        _plot_training(self.seed_dir)
        return metrics


def _saved(folder: Path) -> bool:
    """A model folder is finished once both files of `save_module` are there (weights, then config.json)."""
    return (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


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
                raise ConfigError(
                    f"{str(root)!r} holds a run with a different config; pass --overwrite to "
                    "replace it, or --out to write the new run elsewhere."
                )
            if not resume and not overwrite:
                raise ConfigError(
                    f"{str(root)!r} already holds a run; pass --resume to continue it (finished "
                    "stages are reused) or --overwrite to start again."
                )
        root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg_path)
    barrier(dist)


def run(
    cfg: RunConfig,
    root: str | Path,
    splits: list[str],
    seeds: list[int],
    dist: DistInfo = DistInfo(),
    device: str = "cpu",
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict | None:
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
