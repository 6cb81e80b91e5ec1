"""Median latency of a call: the one timing loop of the build report, the trade-off grid and the GPU checks.
Plain Python (no numpy, no torch): a device's synchronisation is passed in."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(
    call: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    max_s: float | None = None,
) -> float:
    """Median wall milliseconds of `call()` over `repeats` timed calls after `warmup` untimed ones.

    Args:
        sync: called before and after each timed call (e.g. `torch.cuda.synchronize`), so asynchronous
            device work is inside the measurement.
        max_s: stop timing once this many seconds have passed (at least one call is timed).
    """
    for _ in range(warmup):
        call()
    times, start = [], time.perf_counter()
    for _ in range(repeats):
        if sync is not None:
            sync()
        t0 = time.perf_counter()
        call()
        if sync is not None:
            sync()
        times.append(1e3 * (time.perf_counter() - t0))
        if max_s is not None and time.perf_counter() - start > max_s:
            break
    return statistics.median(times)
