"""Zero-shot and generalised zero-shot metrics (numpy only).

Score convention: every `errors` array is `(N, K)` float where LOWER is better, as TDSM's per-class
denoising errors are. For a similarity-based method pass `-similarity`. Predictions are
`argmin` over classes; ties go to the lower class index (numpy's `argmin` / stable sort), so top-1
from `topk_accuracy` always agrees with `errors.argmin(1)`.

GZSL uses calibrated stacking (Chao et al., 2016): a constant γ is ADDED to the errors of the seen
classes (penalising them; the same as subtracting γ from a seen-class similarity). γ is chosen on a
validation set only (`choose_gamma`), never on the test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "topk_accuracy",
    "per_class_accuracy",
    "mean_class_accuracy",
    "confusion_matrix",
    "zsl_report",
    "gzsl_accuracies",
    "choose_gamma",
    "gzsl_report",
    "mean_std",
    "format_mean_std",
]


# ---------------------------------------------------------------- input checks
def _check_scores(errors: np.ndarray, labels: np.ndarray, name: str = "errors") -> tuple[np.ndarray, np.ndarray]:
    """Validate `(N, K)` finite scores and `(N,)` integer labels in [0, K); return float64 / int64 copies."""
    errors = np.asarray(errors)
    labels = np.asarray(labels)
    if errors.ndim != 2:
        raise InputError(
            f"{name} must be 2-D (N, K), got shape {errors.shape}; pass one row of class scores per sample"
        )
    N, K = errors.shape
    if labels.shape != (N,):
        raise InputError(f"labels must have shape ({N},) to match {name} {errors.shape}, got {labels.shape}")
    if N == 0 or K == 0:
        raise InputError(f"{name} is empty (shape {errors.shape}); metrics need at least one sample and one class")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers (class column indices), got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= K:
        raise InputError(
            f"labels must lie in [0, {K}) (column indices of {name}), got range "
            f"[{labels.min()}, {labels.max()}]; map global class ids to score columns first"
        )
    errors = errors.astype(np.float64)
    if not np.isfinite(errors).all():
        raise InputError(f"{name} contains NaN or inf; check the scorer's output (e.g. a diverged model)")
    return errors, labels.astype(np.int64)


def _check_pred(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate `(N,)` integer predictions and labels in [0, num_classes)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    if pred.shape != labels.shape or pred.ndim != 1:
        raise InputError(f"pred and labels must both be 1-D with the same length, got {pred.shape} and {labels.shape}")
    for arr, nm in ((pred, "pred"), (labels, "labels")):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"{nm} must be integer class indices, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise InputError(f"{nm} must lie in [0, {num_classes}), got range [{arr.min()}, {arr.max()}]")
    return pred.astype(np.int64), labels.astype(np.int64)


# ---------------------------------------------------------------- ZSL
def topk_accuracy(errors: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose true class is among the k lowest-error classes.

    errors: (N, K) float, lower is better. labels: (N,) int in [0, K). k: 1 <= k <= K.
    Ties are broken towards the lower class index (stable sort), matching `argmin`.
    """
    errors, labels = _check_scores(errors, labels)
    K = errors.shape[1]
    if not 1 <= k <= K:
        raise InputError(f"k={k} must lie in [1, K={K}]; use k=min(k, K) for small class sets")
    topk = np.argsort(errors, axis=1, kind="stable")[:, :k]  # (N, k)
    return float((topk == labels[:, None]).any(axis=1).mean())


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Accuracy per true class: (K,) float64, NaN for classes with no sample.

    pred, labels: (N,) int in [0, num_classes).
    """
    pred, labels = _check_pred(pred, labels, num_classes)
    total = np.bincount(labels, minlength=num_classes).astype(np.float64)  # (K,)
    hit = np.bincount(labels[pred == labels], minlength=num_classes).astype(np.float64)  # (K,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hit / np.maximum(total, 1), np.nan)


def mean_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean of `per_class_accuracy` over the classes that have at least one sample."""
    acc = per_class_accuracy(pred, labels, num_classes)
    present = ~np.isnan(acc)
    if not present.any():
        raise InputError("mean_class_accuracy needs at least one sample")
    return float(acc[present].mean())


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class."""
    pred, labels = _check_pred(pred, labels, num_classes)
    flat = labels * num_classes + pred
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).astype(np.int64)


def zsl_report(errors: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """A json-ready ZSL summary over the K candidate classes.

    errors: (N, K) float (lower is better); labels: (N,) int column indices; class_names: K names in
    column order. Returns keys `n`, `top1`, `top5` (top-min(5, K), its k in `top5_k`), `per_class`
    (name -> accuracy, None for a class without samples), `mean_class_accuracy`, `confusion`
    (K x K nested list of ints, rows = true class) and `class_names`.
    """
    errors, labels = _check_scores(errors, labels)
    N, K = errors.shape
    if len(class_names) != K:
        raise InputError(f"got {len(class_names)} class names for {K} score columns; pass one name per column")
    pred = errors.argmin(axis=1)  # (N,)
    per_cls = per_class_accuracy(pred, labels, K)
    k5 = min(5, K)
    return {
        "n": int(N),
        "top1": topk_accuracy(errors, labels, 1),
        "top5": topk_accuracy(errors, labels, k5),
        "top5_k": k5,
        "per_class": {str(nm): (None if math.isnan(a) else float(a)) for nm, a in zip(class_names, per_cls)},
        "mean_class_accuracy": float(np.nanmean(per_cls)),
        "confusion": confusion_matrix(pred, labels, K).tolist(),
        "class_names": [str(nm) for nm in class_names],
    }


# ---------------------------------------------------------------- GZSL
def _harmonic(a: float, b: float) -> float:
    """Harmonic mean, 0 when either term is 0."""
    return 0.0 if a <= 0 or b <= 0 else 2 * a * b / (a + b)


def _check_gzsl(errors: np.ndarray, labels: np.ndarray, seen_mask: np.ndarray, name: str):
    """Validate GZSL inputs; returns float64 errors, int64 labels, bool mask and the per-sample 'is seen' flags."""
    errors, labels = _check_scores(errors, labels, name)
    seen_mask = np.asarray(seen_mask)
    if seen_mask.dtype != bool or seen_mask.shape != (errors.shape[1],):
        raise InputError(
            f"seen_mask must be a bool array of shape ({errors.shape[1]},) (one flag per score column), "
            f"got dtype {seen_mask.dtype} shape {seen_mask.shape}"
        )
    if seen_mask.all() or not seen_mask.any():
        raise InputError("seen_mask must mark at least one seen AND one unseen class for GZSL")
    is_seen = seen_mask[labels]  # (N,)
    if is_seen.all() or not is_seen.any():
        raise InputError(
            f"{name}: GZSL needs samples of both seen and unseen classes, got "
            f"{int(is_seen.sum())} seen / {int((~is_seen).sum())} unseen; a seen-only validation set "
            "cannot calibrate γ (hold out some seen classes as pseudo-unseen, or pass gamma explicitly)"
        )
    return errors, labels, seen_mask, is_seen


def gzsl_accuracies(
    errors: np.ndarray, labels: np.ndarray, seen_mask: np.ndarray, gamma: float = 0.0
) -> tuple[float, float, float]:
    """(acc_seen, acc_unseen, H) with calibrated stacking.

    errors: (N, K_all) float over ALL classes, lower is better; labels: (N,) int in [0, K_all);
    seen_mask: (K_all,) bool; gamma: added to the seen columns before the argmin.
    acc_seen / acc_unseen: top-1 (over all classes) on samples whose true class is seen / unseen;
    H: their harmonic mean (0 if either is 0).
    """
    errors, labels, seen_mask, is_seen = _check_gzsl(errors, labels, seen_mask, "errors")
    pred = (errors + gamma * seen_mask).argmin(axis=1)  # (N,)
    hit = pred == labels
    acc_s, acc_u = float(hit[is_seen].mean()), float(hit[~is_seen].mean())
    return acc_s, acc_u, _harmonic(acc_s, acc_u)


def _gzsl_sweep(
    errors: np.ndarray, labels: np.ndarray, seen_mask: np.ndarray, is_seen: np.ndarray, gammas: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised gzsl_accuracies over a grid: (G,) acc_seen, acc_unseen, H (same argmin tie rule)."""
    seen_idx, unseen_idx = np.flatnonzero(seen_mask), np.flatnonzero(~seen_mask)
    es, eu = errors[:, seen_idx], errors[:, unseen_idx]
    best_s, best_u = seen_idx[es.argmin(1)], unseen_idx[eu.argmin(1)]  # (N,) global index of each group's winner
    min_s, min_u = es.min(1), eu.min(1)  # (N,)
    shifted = min_s[None, :] + gammas[:, None]  # (G, N)
    # argmin over the calibrated row: the seen winner wins when strictly lower, or tied with a lower index
    pick_seen = (shifted < min_u[None]) | ((shifted == min_u[None]) & (best_s < best_u)[None])  # (G, N)
    hit = np.where(pick_seen, (best_s == labels)[None], (best_u == labels)[None])  # (G, N)
    acc_s, acc_u = hit[:, is_seen].mean(1), hit[:, ~is_seen].mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where((acc_s > 0) & (acc_u > 0), 2 * acc_s * acc_u / np.maximum(acc_s + acc_u, 1e-300), 0.0)
    return acc_s, acc_u, h


def _default_grid(errors: np.ndarray, seen_mask: np.ndarray, max_points: int = 512) -> np.ndarray:
    """Candidate γ values between the per-sample switch points, plus 0 and both ends.

    Sample i switches from a seen to an unseen prediction at γ_i = min_unseen_i − min_seen_i, so H is
    piecewise constant between sorted γ_i; midpoints of (quantiles of) those switch points cover every
    distinct outcome when N <= max_points and a fine sampling of them otherwise.
    """
    switch = errors[:, ~seen_mask].min(1) - errors[:, seen_mask].min(1)  # (N,)
    pts = np.unique(switch)
    if pts.size > max_points:
        pts = np.unique(np.quantile(switch, np.linspace(0.0, 1.0, max_points)))
    span = float(pts[-1] - pts[0]) or max(abs(float(pts[0])), 1.0)
    ends = np.array([pts[0] - 1e-3 * span, pts[-1] + 1e-3 * span])
    mids = (pts[:-1] + pts[1:]) / 2
    return np.unique(np.concatenate([mids, ends, [0.0]]))


def choose_gamma(
    errors_val: np.ndarray,
    labels_val: np.ndarray,
    seen_mask: np.ndarray,
    grid: Sequence[float] | np.ndarray | None = None,
) -> float:
    """The calibration γ that maximises H on the VALIDATION set.

    errors_val: (N, K_all) float, lower is better; labels_val: (N,) int; seen_mask: (K_all,) bool.
    grid: candidate γ values (default: midpoints between the per-sample switch points, plus 0).
    Ties in H go to the smallest |γ| (0 wins whenever calibration does not help).
    """
    errors, labels, seen_mask, is_seen = _check_gzsl(errors_val, labels_val, seen_mask, "errors_val")
    gammas = _default_grid(errors, seen_mask) if grid is None else np.asarray(grid, dtype=np.float64).ravel()
    if gammas.size == 0 or not np.isfinite(gammas).all():
        raise InputError("grid must hold at least one finite γ value")
    _, _, h = _gzsl_sweep(errors, labels, seen_mask, is_seen, gammas)
    best = np.flatnonzero(h >= h.max() - 1e-12)
    return float(gammas[best[np.argmin(np.abs(gammas[best]))]])


def gzsl_report(
    errors_val: np.ndarray,
    labels_val: np.ndarray,
    errors_test: np.ndarray,
    labels_test: np.ndarray,
    seen_mask: np.ndarray,
) -> dict[str, Any]:
    """GZSL summary: γ chosen on validation, accuracies measured on test, both calibrated and not.

    errors_*: (N_*, K_all) float, lower is better; labels_*: (N_*,) int; seen_mask: (K_all,) bool.
    Returns {gamma, seen, unseen, harmonic, n_seen, n_unseen, uncalibrated={seen, unseen, harmonic}};
    the test arrays never influence gamma.
    """
    gamma = choose_gamma(errors_val, labels_val, seen_mask)
    s, u, h = gzsl_accuracies(errors_test, labels_test, seen_mask, gamma)
    s0, u0, h0 = gzsl_accuracies(errors_test, labels_test, seen_mask, 0.0)
    is_seen = np.asarray(seen_mask)[np.asarray(labels_test)]
    return {
        "gamma": gamma,
        "seen": s,
        "unseen": u,
        "harmonic": h,
        "n_seen": int(is_seen.sum()),
        "n_unseen": int((~is_seen).sum()),
        "uncalibrated": {"seen": s0, "unseen": u0, "harmonic": h0},
    }


# ---------------------------------------------------------------- across seeds
def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and SAMPLE standard deviation (ddof=1) across runs; std is 0.0 for a single value."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise InputError("mean_std needs at least one value")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else 0.0)


def format_mean_std(values: Sequence[float] | np.ndarray, pct: bool = True, digits: int = 1) -> str:
    """'45.3 ± 2.1' from per-run values; pct=True scales fractions to percent first."""
    m, s = mean_std(values)
    scale = 100.0 if pct else 1.0
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


# ---------------------------------------------------------------- left / right twins
def twin_pairs(class_names: Sequence[str]) -> list[tuple[int, int]]:
    """(i, j) column pairs of classes that differ only by "left" ↔ "right" (e.g. circle left / right leg)."""
    index = {n: i for i, n in enumerate(class_names)}
    pairs = []
    for i, n in enumerate(class_names):
        words = n.split()
        if "left" in words:
            twin = " ".join("right" if w == "left" else w for w in words)
            if twin in index:
                pairs.append((i, index[twin]))
    return pairs


def twins_told_apart(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> float | None:
    """Of the samples of twin classes predicted as one of the two twins, the fraction given the right
    one (0.5 = a coin flip between them; None when the classes hold no twins)."""
    c = np.asarray(confusion)
    right = wrong = 0
    for i, j in twin_pairs(class_names):
        right += c[i, i] + c[j, j]
        wrong += c[i, j] + c[j, i]
    return None if right + wrong == 0 else float(right / (right + wrong))


# ---------------------------------------------------------------- feature rank
def feature_rank(z: np.ndarray, rtol: float = 1e-3) -> dict:
    """How many dimensions features `(N, D)` really fill, after centring: "rank" = singular values above
    `rtol` × the largest (float32 round-off sits near 1e-6), "effective" = exp(entropy) of the normalised
    singular values (Roy & Vetterli; D when all are equal, 1 for a line), "dim" = D."""
    z = np.asarray(z, np.float64)
    if z.ndim != 2 or len(z) < 2 or z.shape[1] < 1:
        raise InputError(f"feature_rank needs (N, D) features with N >= 2 and D >= 1, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise InputError("feature_rank needs finite features: they hold NaN or inf")
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    if s[0] == 0:
        return {"rank": 0, "effective": 0.0, "dim": int(z.shape[1])}
    p = s / s.sum()
    p = p[p > 0]
    return {
        "rank": int((s > rtol * s[0]).sum()),
        "effective": float(np.exp(-(p * np.log(p)).sum())),
        "dim": int(z.shape[1]),
    }
