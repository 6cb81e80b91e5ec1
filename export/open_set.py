"""Calibrating the open-set margin: when the best class does not stand out, answer "none of these".

The margin of a prediction is the second-lowest minus the lowest per-class error (>= 0). A window of
an action outside the class set tends to fit several classes about equally badly, so its margin is
small. The threshold is set at export on held-out features so that a chosen fraction (`accept`,
default 95 %) of in-set samples (classes of the bundle) keep their answer:

    threshold = quantile(in-set margins, 1 - accept)

Calibration uses the validation features of the run (never the test features it is then judged on);
the report also gives, on the test features, the in-set acceptance, the accuracy among accepted
answers, and the fraction of out-of-set samples (test samples of the run's other classes) rejected.
The margin is in error units of this bundle's scorer and class set: it is stored in the manifest
(`open_set`) with the class count it was calibrated for.
"""

from __future__ import annotations

import numpy as np

from tdsm_edge.errors import InputError

DEFAULT_ACCEPT = 0.95


def margins(errors: np.ndarray) -> np.ndarray:
    """`(N, K)` errors → `(N,)` second-lowest minus lowest (inf when K == 1)."""
    errors = np.asarray(errors, np.float64)
    if errors.ndim != 2:
        raise InputError(f"errors must be (N, K), got shape {errors.shape}")
    if errors.shape[1] < 2:
        return np.full(len(errors), np.inf)
    part = np.partition(errors, 1, axis=1)
    return part[:, 1] - part[:, 0]


def calibrate_threshold(in_set_errors: np.ndarray, accept: float = DEFAULT_ACCEPT) -> float:
    """The margin threshold that keeps `accept` of the in-set samples (`(N, K)` errors) answered."""
    if not 0.0 < accept <= 1.0:
        raise InputError(f"accept must be in (0, 1], got {accept}")
    m = margins(in_set_errors)
    if len(m) == 0:
        raise InputError("no in-set samples to calibrate the open-set margin on")
    if not np.isfinite(m).all():  # one class: every answer stands out
        return 0.0
    return float(np.quantile(m, 1.0 - accept, method="lower"))


def evaluate_threshold(
    threshold: float, in_errors: np.ndarray, in_labels: np.ndarray | None = None, out_errors: np.ndarray | None = None
) -> dict:
    """In-set acceptance (and accuracy, overall and among accepted, with labels as score columns) and
    out-of-set rejection at `threshold`."""
    keep = margins(in_errors) >= threshold
    out = {"in_set_samples": int(len(keep)), "in_set_accepted": float(keep.mean()) if len(keep) else 0.0}
    if in_labels is not None and len(keep):
        right = np.asarray(in_errors).argmin(1) == np.asarray(in_labels)
        out["accuracy"] = float(right.mean())
        out["accuracy_accepted"] = float(right[keep].mean()) if keep.any() else 0.0
    if out_errors is not None and len(out_errors):
        out["out_of_set_samples"] = int(len(out_errors))
        out["out_of_set_rejected"] = float((margins(out_errors) < threshold).mean())
    return out


def calibrate(
    errors_of,
    indices: list[int],
    val: tuple[np.ndarray, np.ndarray] | None,
    test: tuple[np.ndarray, np.ndarray] | None,
    accept: float = DEFAULT_ACCEPT,
) -> dict | None:
    """Calibrate on validation features and judge on test features.

    Args:
        errors_of: `z (N, Dz) -> (N, K)` errors of the bundle (its own scorer, all its classes).
        indices: the bundle's classes as the run's global class indices, in score order.
        val, test: `(z, labels)` with global labels, or None. In-set = labels in `indices`.
    Returns:
        The manifest's `open_set` record, or None when there are no in-set samples to calibrate on.
    """
    col = {g: k for k, g in enumerate(indices)}

    def split(data):
        z, y = data
        inside = np.isin(y, indices)
        return z[inside], np.array([col[int(v)] for v in y[inside]], np.int64), z[~inside]

    source = "validation" if val is not None and np.isin(val[1], indices).any() else "test"
    data = val if source == "validation" else test
    if data is None:
        return None
    z_in, _, _ = split(data)
    if len(z_in) == 0:
        return None
    threshold = calibrate_threshold(errors_of(z_in), accept)
    record = {
        "threshold": threshold,
        "accept_target": accept,
        "calibrated_on": source,
        "calibration_samples": int(len(z_in)),
        "num_classes": len(indices),
        "rule": "answer 'none of these' when margin (2nd-lowest minus lowest error) < threshold",
    }
    if test is not None:
        z_in, y_in, z_out = split(test)
        record["test"] = evaluate_threshold(threshold, errors_of(z_in), y_in, errors_of(z_out) if len(z_out) else None)
    return record
