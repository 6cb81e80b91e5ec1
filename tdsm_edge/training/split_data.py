"""The data of one zero-shot split, from any of the three sources a run can use:

- `synthact` (generated here, deterministic in `data.seed`),
- raw NTU RGB+D / PKU-MMD skeletons built by `python -m tdsm_edge.data.build` (`data.skeletons`):
  the encoder is trained on the seen classes of the protocol's training recordings,
- a published feature folder (`data.features`, SynSE / PURLS / SMIE layouts): no encoder stage.

Validation data (GZSL calibration only) are held-out recordings of the seen classes plus recordings
of the unseen classes from the *training* side of the protocol — never test recordings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..config import RunConfig
from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """Preprocessed windows (N, 3, T, V, M) float32 with global labels, or ready features, for one split."""

    unseen: np.ndarray  # (Ku,) global class indices
    seen: np.ndarray  # (Ks,)
    x_train: np.ndarray | None = None  # seen classes only
    y_train: np.ndarray | None = None
    x_val: np.ndarray | None = None  # held-out seen + unseen validation samples (GZSL calibration only)
    y_val: np.ndarray | None = None
    x_test: np.ndarray | None = None  # unseen-class test (ztest) and seen-class test: together gtest
    y_test: np.ndarray | None = None
    features: object | None = None  # FeatureFolder when the run starts from published features


def dataset_classes(dataset: str) -> tuple[list[str], list[str]]:
    """(names, descriptions) of every class of a dataset, in global index order."""
    if dataset == "synthact":
        from ..data.synthact import class_descriptions, class_names

        return list(class_names()), list(class_descriptions())
    from ..data import benchmarks

    if dataset not in benchmarks.NUM_CLASSES:
        raise ConfigError(f"unknown dataset {dataset!r}; choose synthact or one of {sorted(benchmarks.NUM_CLASSES)}")
    return list(benchmarks.class_names(dataset)), list(benchmarks.class_descriptions(dataset))


def split_classes(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(unseen, seen) global class indices of a named split of a dataset."""
    if dataset == "synthact":
        from ..data.synthact import load_split

        unseen, seen = load_split(split)
    else:
        from ..data import benchmarks

        unseen, seen = benchmarks.load_split(dataset, split)
    return np.asarray(unseen, np.int64), np.asarray(seen, np.int64)


def seed_features(cfg: RunConfig, seed_dir, unseen: np.ndarray, num_classes: int):
    """The FeatureFolder a trained seed was evaluated on: the published folder the config names, or
    the features the run extracted into `seed_dir/features`."""
    from pathlib import Path

    from ..data.features import load_feature_folder, load_features

    if cfg.data.features:
        return load_features(
            cfg.data.features, layout="auto", num_classes=num_classes, unseen=unseen, pool=cfg.data.feature_pool
        )
    return load_feature_folder(Path(seed_dir) / "features", num_classes=num_classes, unseen=unseen)


def prepare_data(cfg: RunConfig, split: str, progress: bool = True) -> SplitData:
    """The arrays of one split, from the source the config names."""
    d = cfg.data
    if d.dataset == "synthact":
        if d.skeletons or d.features:
            raise ConfigError("data.skeletons / data.features are for ntu60, ntu120 and pku51; synthact is generated.")
        return _synthact(cfg, split)
    unseen, seen = split_classes(d.dataset, split)
    if d.features:
        return _published_features(cfg, unseen, seen)
    if d.skeletons:
        return _built_skeletons(cfg, unseen, seen)
    raise ConfigError(
        f"data.dataset {d.dataset!r} needs data.skeletons (a folder built by `python -m "
        "tdsm_edge.data.build`) or data.features (a published feature folder); set one in the "
        "config or with --set data.skeletons=PATH."
    )


def _synthact(cfg: RunConfig, split: str) -> SplitData:
    from ..data.synthact import generate
    from ..skeleton.preprocess import preprocess_batch

    d = cfg.data
    unseen, seen = split_classes("synthact", split)
    t0 = time.perf_counter()

    def make(classes: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        raw, y = generate(classes, per_class, seed=seed, frames=d.frames)
        return preprocess_batch(raw, d.frames), y

    # different seeds keep train, validation and test sequences disjoint
    x_train, y_train = make(seen, d.samples_per_class, d.seed)
    x_vs, y_vs = make(seen, d.val_per_class, d.seed + 1)
    x_vu, y_vu = make(unseen, d.val_per_class, d.seed + 1)
    x_ts, y_ts = make(seen, d.gzsl_seen_per_class, d.seed + 2)
    x_tu, y_tu = make(unseen, d.test_per_class, d.seed + 2)
    x_test, y_test = np.concatenate([x_tu, x_ts]), np.concatenate([y_tu, y_ts])
    log.info(
        "data %s: %d train, %d val, %d test sequences in %.1fs",
        split,
        len(x_train),
        len(x_vs) + len(x_vu),
        len(x_test),
        time.perf_counter() - t0,
    )
    return SplitData(
        np.asarray(unseen, np.int64),
        np.asarray(seen, np.int64),
        x_train,
        y_train,
        np.concatenate([x_vs, x_vu]),
        np.concatenate([y_vs, y_vu]),
        x_test,
        y_test,
    )


def _published_features(cfg: RunConfig, unseen: np.ndarray, seen: np.ndarray) -> SplitData:
    from ..data import benchmarks
    from ..data.features import load_features

    feats = load_features(
        cfg.data.features,
        layout="auto",
        num_classes=benchmarks.NUM_CLASSES[cfg.data.dataset],
        unseen=unseen,
        pool=cfg.data.feature_pool,
    )
    if feats.dim != cfg.denoiser.z_dim:
        raise ConfigError(
            f"{cfg.data.features}: features are {feats.dim}-d but denoiser.z_dim is "
            f"{cfg.denoiser.z_dim}; set denoiser.z_dim and encoder.feature_dim to {feats.dim}."
        )
    log.info(
        "features %s: %d train, %d ztest, %d gtest%s",
        cfg.data.features,
        len(feats.train),
        len(feats.ztest),
        len(feats.gtest),
        f", {len(feats.val)} val" if feats.val is not None else " (no val: GZSL uncalibrated)",
    )
    return SplitData(unseen, seen, features=feats)


def holdout_per_class(labels: np.ndarray, classes: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Boolean mask picking up to `per_class` random samples of each class in `classes` (seeded)."""
    rng = np.random.default_rng(seed)
    pick = np.zeros(len(labels), bool)
    for c in classes:
        idx = np.flatnonzero(labels == c)
        pick[rng.permutation(idx)[:per_class]] = True
    return pick


def _built_skeletons(cfg: RunConfig, unseen: np.ndarray, seen: np.ndarray) -> SplitData:
    from ..data.build import load_built, split_by_protocol

    d = cfg.data
    t0 = time.perf_counter()
    built = load_built(d.skeletons, mmap=True)  # only the split's rows are copied into memory
    if built.meta["dataset"] != d.dataset:
        raise ConfigError(
            f"{d.skeletons} was built for {built.meta['dataset']!r} but data.dataset is "
            f"{d.dataset!r}; build it with --dataset {d.dataset} or point data.skeletons elsewhere."
        )
    if int(built.meta["frames"]) != d.frames:
        raise ConfigError(
            f"{d.skeletons} holds {built.meta['frames']}-frame windows but data.frames is {d.frames}; "
            f"rebuild with --frames {d.frames} or set data.frames: {built.meta['frames']}."
        )
    train_side, test_side = split_by_protocol(built.info, d.dataset, d.protocol)
    y = built.label
    is_seen = np.isin(y, seen)
    # validation: a few held-out seen-class training recordings + unseen-class training-side recordings
    val_seen = holdout_per_class(np.where(train_side & is_seen, y, -1), seen, d.val_per_class, d.seed)
    val_unseen = holdout_per_class(np.where(train_side & ~is_seen, y, -1), unseen, d.val_per_class, d.seed + 1)
    train = train_side & is_seen & ~val_seen
    val = val_seen | val_unseen
    missing = sorted(set(unseen.tolist()) - set(y[test_side].tolist()))
    if missing:
        raise DataError(
            f"{d.skeletons}: unseen classes {missing[:10]} have no {d.protocol} test recording; "
            "the build is incomplete for this split (see its bad_files.json)."
        )
    x = built.data
    out = SplitData(unseen, seen, x[train], y[train], x[val], y[val], x[test_side], y[test_side])
    log.info(
        "data %s/%s (%s): %d train, %d val, %d test recordings in %.1fs",
        d.dataset,
        d.split,
        d.protocol,
        int(train.sum()),
        int(val.sum()),
        int(test_side.sum()),
        time.perf_counter() - t0,
    )
    return out
