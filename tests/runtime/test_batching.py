"""The chunking loop and the row budget every runtime backend shares."""

from __future__ import annotations

import numpy as np
import pytest

from tdsm_edge.errors import ConfigError
from tdsm_edge.runtime.batching import CPU_MAX_ROWS, batches, row_limit, samples_per_call


def test_batches_cut_to_the_max_and_pad_to_the_min():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    got = list(batches(x, 3, 2))
    assert [n for n, _ in got] == [2, 2, 1]
    assert [len(p) for _, p in got] == [3, 3, 3]  # padded up to the fixed batch
    np.testing.assert_array_equal(np.concatenate([p[:n] for n, p in got]), x)
    assert not got[-1][1][1:].any()  # the padding is zeros
    assert list(batches(x[:0], 1, 4)) == []


@pytest.mark.parametrize(
    "max_rows, rows_per_sample, lo, hi, want",
    [
        (None, 15, 1, 64, 64),  # no limit: the graph's batch max
        (256, 15, 1, 64, 17),  # 17 samples × 15 rows = 255 <= 256
        (256, 180, 1, 64, 1),  # K·J above the limit: still one sample per call
        (256, 15, 8, 64, 17),
        (256, 180, 8, 64, 8),  # never below a fixed batch's min
        (10**9, 15, 1, 64, 64),  # never above the graph's max
    ],
)
def test_samples_per_call(max_rows, rows_per_sample, lo, hi, want):
    assert samples_per_call(max_rows, rows_per_sample, lo, hi) == want


def test_row_limit_defaults_and_refusals():
    assert row_limit(None, on_gpu=False) == CPU_MAX_ROWS
    assert row_limit(None, on_gpu=True) is None
    assert row_limit(32, on_gpu=True) == 32
    for bad in (0, -3, 2.5, "256", True):
        with pytest.raises(ConfigError, match="max_rows must be a positive int or None"):
            row_limit(bad, on_gpu=False)


def test_features_checked_and_converted():
    from tdsm_edge.errors import InputError
    from tdsm_edge.runtime.batching import features

    z = features(np.arange(6, dtype=np.float64).reshape(2, 3)[:, ::-1], 3)
    assert z.dtype == np.float32 and z.flags.c_contiguous and z.tolist() == [[2, 1, 0], [5, 4, 3]]
    assert features(np.ones((1, 3)), 3, np.float16).dtype == np.float16
    assert np.isinf(features(np.full((1, 3), 1e300), 3)).all()  # too large for float32: inf, no warning raised
    with pytest.raises(InputError, match=r"z must be \(B, Dz=3\)"):
        features(np.ones((2, 4)), 3)
    with pytest.raises(InputError, match="z must hold floats"):
        features(np.ones((2, 3), int), 3)
