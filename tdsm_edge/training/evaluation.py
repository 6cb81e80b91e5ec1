"""Zero-shot evaluation of a trained seed folder: ZSL top-1/top-5, per-class accuracy, confusion
matrices, GZSL seen/unseen/H with a calibration factor chosen on VALIDATION data, and optional
sweeps over the number of noises J and the timestep t. Writes metrics.json and PNGs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import EvalConfig, noise_seed, to_dict
from ..data.features import FeatureFolder

log = logging.getLogger(__name__)


def tdsm_errors(
    model,
    schedule,
    stats,
    z: np.ndarray,
    text,
    num_noises: int,
    timestep: int,
    noise_seed: int,
    batch: int = 256,
    device: str = "cpu",
) -> np.ndarray:
    """TDSM per-class errors (N, K) float32 (lower = better) for raw features z (N, Dz) against `text`
    (a ClassText over the K candidate classes), with the paper's fixed seeded noise bank and fixed t."""
    import torch

    from ..scoring import noise_bank, score_batched

    noises = noise_bank(num_noises, z.shape[1], noise_seed).to(device)  # (J, Dz)
    fc = torch.from_numpy(np.ascontiguousarray(text.global_, np.float32)).to(device)  # (K, Dc)
    fl = torch.from_numpy(np.ascontiguousarray(text.local, np.float32)).to(device)  # (K, L, Dc)
    mask = torch.from_numpy(np.ascontiguousarray(text.mask, bool)).to(device)  # (K, L)
    zs = stats.apply(z)
    chunk = 1024  # rows per forward: large enough to amortise overhead, small enough to stay in cache
    out = []
    for i in range(0, len(zs), batch):
        zb = torch.from_numpy(zs[i : i + batch]).to(device)
        out.append(
            score_batched(model, schedule, zb, (fc, fl, mask), noises, timestep, chunk_rows=chunk).float().cpu().numpy()
        )
    return np.concatenate(out) if out else np.zeros((0, len(fc)), np.float32)


def _local(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    lookup = {int(c): i for i, c in enumerate(classes)}
    return np.array([lookup[int(y)] for y in labels], np.int64)


def evaluate_method(errors_fn, feats: FeatureFolder, unseen: np.ndarray, class_names: list[str]) -> dict:
    """ZSL and GZSL metrics for one method. `errors_fn(z, class_indices) -> (N, K) errors`."""
    from .metrics import gzsl_report, zsl_report

    k_all = len(class_names)
    unseen = np.asarray(unseen, np.int64)
    err_z = errors_fn(feats.ztest, unseen)  # (Nu, Ku)
    zsl = zsl_report(err_z, _local(feats.z_label, unseen), [class_names[i] for i in unseen])
    result = {"zsl": zsl}
    if feats.val is not None:
        all_cls = np.arange(k_all)
        seen_mask = np.ones(k_all, bool)
        seen_mask[unseen] = False
        err_val = errors_fn(feats.val, all_cls)  # (Nv, K)
        err_g = errors_fn(feats.gtest, all_cls)  # (Ng, K)
        result["gzsl"] = gzsl_report(err_val, feats.val_label, err_g, feats.g_label, seen_mask)
    return result


def text_ablation(class_text, which: str):
    """`class_text` with one text path carrying no class identity: "fc" = every class's global vector
    replaced by the mean over the classes; "fl" = every class's local tokens replaced by the mean over the
    classes (mask: their union). Scoring with it shows how much the decisions rest on that path."""
    from dataclasses import replace

    if which == "fc":
        return replace(class_text, global_=np.broadcast_to(class_text.global_.mean(0), class_text.global_.shape).copy())
    if which == "fl":
        K = class_text.num_classes
        return replace(
            class_text,
            local=np.repeat(class_text.local.mean(0, keepdims=True), K, 0),
            mask=np.repeat(class_text.mask.any(0, keepdims=True), K, 0),
        )
    raise ValueError(f"which must be 'fc' or 'fl', got {which!r}")


def evaluate_seed(
    seed_dir: str | Path,
    feats: FeatureFolder,
    class_text,
    unseen: np.ndarray,
    eval_cfg: EvalConfig,
    device: str = "cpu",
    plots: bool = True,
    ablations: bool = False,
) -> dict:
    """Evaluate the TDSM denoiser (and the baseline, if trained) of one seed folder; write metrics.json.

    With `ablations`, also the unseen top-1 with each text path emptied of class identity (`text_ablation`):
    metrics["tdsm"]["ablations"] = {"fc_mean": top-1, "fl_mean": top-1}."""
    from ..io import write_json
    from ..models.folders import load_denoiser
    from .metrics import feature_rank

    seed_dir = Path(seed_dir)
    model, schedule, stats, cfg = load_denoiser(seed_dir / "denoiser", device)
    names = list(class_text.names)

    def tdsm_fn(J: int, t: int, ablate: str | None = None):
        def fn(z, cls):
            text = class_text.subset(cls)
            return tdsm_errors(
                model,
                schedule,
                stats,
                z,
                text_ablation(text, ablate) if ablate else text,
                J,
                t,
                noise_seed(eval_cfg, cfg.train.seed),
                eval_cfg.batch_size,
                device,
            )

        return fn

    metrics: dict = {
        "eval": to_dict(eval_cfg),
        "num_unseen": int(len(unseen)),
        "chance": 1.0 / len(unseen),
        "test_feature_rank": feature_rank(feats.ztest),
    }
    metrics["tdsm"] = evaluate_method(tdsm_fn(eval_cfg.num_noises, eval_cfg.timestep), feats, unseen, names)
    if ablations:
        metrics["tdsm"]["ablations"] = {
            f"{which}_mean": float(_zsl_top1(tdsm_fn(eval_cfg.num_noises, eval_cfg.timestep, which), feats, unseen))
            for which in ("fc", "fl")
        }
    base_dir = seed_dir / "baseline"
    if (base_dir / "model.safetensors").is_file():
        from .baseline import AlignmentBaseline

        base = AlignmentBaseline.load(base_dir)
        metrics["baseline"] = evaluate_method(
            lambda z, cls: base.errors(z, class_text.global_[cls]), feats, unseen, names
        )
    sweeps = {}
    if eval_cfg.sweep_noises:
        sweeps["noises"] = {
            str(J): float(_zsl_top1(tdsm_fn(J, eval_cfg.timestep), feats, unseen)) for J in eval_cfg.sweep_noises
        }
    if eval_cfg.sweep_timesteps:
        sweeps["timesteps"] = {
            str(t): float(_zsl_top1(tdsm_fn(eval_cfg.num_noises, t), feats, unseen)) for t in eval_cfg.sweep_timesteps
        }
    if sweeps:
        metrics["sweeps"] = sweeps
    write_json(seed_dir / "metrics.json", metrics)
    if plots:
        _plots(seed_dir, metrics, names, unseen)
    return metrics


def _zsl_top1(errors_fn, feats: FeatureFolder, unseen: np.ndarray) -> float:
    err = errors_fn(feats.ztest, np.asarray(unseen))
    return float((err.argmin(1) == _local(feats.z_label, unseen)).mean())


def _plots(seed_dir: Path, metrics: dict, names: list[str], unseen: np.ndarray) -> None:
    from .plots import plot_confusion, plot_sweep

    unseen_names = [names[i] for i in unseen]
    for method in ("tdsm", "baseline"):
        if method in metrics:
            cm = np.asarray(metrics[method]["zsl"]["confusion"])
            top1 = metrics[method]["zsl"]["top1"]
            plot_confusion(
                cm,
                unseen_names,
                seed_dir / f"confusion_{method}.png",
                title=f"{method.upper()} unseen-class confusion (top-1 {100 * top1:.1f}%)",
            )
    chance = metrics["chance"]
    for key, label in (("noises", "number of noises J"), ("timesteps", "timestep t")):
        sweep = metrics.get("sweeps", {}).get(key)
        if sweep:
            xs = [int(x) for x in sweep]
            plot_sweep(
                xs,
                {"TDSM": [sweep[str(x)] for x in xs]},
                seed_dir / f"sweep_{key}.png",
                xlabel=label,
                ylabel="unseen top-1",
                title=f"ZSL accuracy vs {label}",
                chance=chance,
            )
