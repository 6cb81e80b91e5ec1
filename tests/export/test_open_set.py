"""Open-set margin calibration: quantile rule, evaluation on held-out data, validation preferred over test."""

from __future__ import annotations

import numpy as np
import pytest

from export.open_set import calibrate, calibrate_threshold, evaluate_threshold, margins
from tdsm_edge.errors import InputError


def test_margins_are_second_lowest_minus_lowest():
    e = np.array([[3.0, 1.0, 2.0], [5.0, 5.0, 9.0]])
    np.testing.assert_array_equal(margins(e), [1.0, 0.0])
    assert np.isinf(margins(e[:, :1])).all()
    with pytest.raises(InputError):
        margins(np.zeros(3))


def test_threshold_keeps_the_accept_fraction():
    rng = np.random.default_rng(0)
    e = rng.uniform(0, 1, size=(1000, 5))
    thr = calibrate_threshold(e, accept=0.9)
    kept = (margins(e) >= thr).mean()
    assert 0.895 <= kept <= 0.91
    assert calibrate_threshold(e, accept=1.0) == pytest.approx(margins(e).min())
    assert calibrate_threshold(e[:, :1]) == 0.0  # one class: nothing to reject
    for bad in (0.0, 1.5):
        with pytest.raises(InputError):
            calibrate_threshold(e, bad)


def test_calibrate_uses_validation_and_judges_on_test():
    """In-set rows have one clearly best class (its column); out-of-set rows are flat."""
    rng = np.random.default_rng(1)
    indices = [7, 3]  # global ids of the 2 bundle classes, in score order

    def sample(labels):
        z = np.zeros((len(labels), 4), np.float32)
        z[:, 0] = labels
        return z, np.asarray(labels)

    def errors(z):  # a fake scorer: column k is low for the class indices[k]
        e = 1.0 + 0.01 * rng.uniform(size=(len(z), 2))
        for r, g in enumerate(z[:, 0].astype(int)):
            if g in indices:
                e[r, indices.index(g)] -= rng.uniform(0.3, 0.6)
        return e

    val = sample([7, 3] * 50 + [1, 2] * 50)
    test = sample([7, 3] * 40 + [5] * 40)
    rec = calibrate(errors, indices, val, test, accept=0.95)
    assert rec["calibrated_on"] == "validation" and rec["calibration_samples"] == 100 and rec["num_classes"] == 2
    assert 0.25 < rec["threshold"] < 0.35
    t = rec["test"]
    assert t["in_set_samples"] == 80 and t["accuracy"] == 1.0 and t["in_set_accepted"] >= 0.85
    assert t["out_of_set_samples"] == 40 and t["out_of_set_rejected"] == 1.0
    rec = calibrate(errors, indices, None, test)  # no validation split: calibrated on test, and says so
    assert rec["calibrated_on"] == "test"
    assert calibrate(errors, indices, None, None) is None
    out = evaluate_threshold(np.inf, errors(test[0][:4]), np.array([0, 1, 0, 1]))
    assert out["in_set_accepted"] == 0.0 and out["accuracy_accepted"] == 0.0
