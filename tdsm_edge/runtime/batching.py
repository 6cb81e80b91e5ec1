"""Cutting a batch to a graph's batch range: the one chunking loop every backend uses. numpy only."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def batches(x: np.ndarray, lo: int, hi: int) -> Iterator[tuple[int, np.ndarray]]:
    """`(n, part)`: chunks of at most `hi` rows, zero-padded up to `lo` rows (a fixed-batch graph):
    keep the first n output rows of each."""
    for start in range(0, len(x), hi):
        part = x[start:start + hi]
        n = len(part)
        if n < lo:
            part = np.concatenate([part, np.zeros((lo - n, *x.shape[1:]), x.dtype)])
        yield n, part
