"""The shared timing loop: warm-up calls untimed, device sync around each timed call, a time cap."""

from __future__ import annotations

import time

from tdsm_edge.timing import median_ms


def test_median_ms_counts_warmup_syncs_and_respects_max_s():
    calls, syncs = [], []
    delays = iter([0.0, 0.0, 0.001, 0.020, 0.001])  # two warm-ups, then three timed calls

    def call():
        calls.append(1)
        time.sleep(next(delays))

    ms = median_ms(call, repeats=3, warmup=2, sync=lambda: syncs.append(1))
    assert len(calls) == 5 and len(syncs) == 6  # a sync before and after each timed call only
    assert 0.9 <= ms < 15  # the median of ~1, ~20, ~1 ms: the slow outlier does not move it

    n = []
    median_ms(lambda: (n.append(1), time.sleep(0.02)), repeats=100, warmup=0, max_s=0.05)
    assert 1 <= len(n) < 10  # stopped by the time cap, not the repeats
