"""Cutting a batch to a graph's batch range and to a row budget: the one chunking loop every backend
uses. numpy only."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tdsm_edge.errors import ConfigError, InputError

# scoring rows (B·K·J) per call on the CPU: small enough that the activations stay in cache. Measured
# with `python -m benchmarks.row_chunking` (B = 64, J = 3, K = 5..60, one thread): one call per batch
# is ×1.1–1.5 slower on ONNX Runtime and ×1.2–2.2 on the torch backend (docs/RESULTS.md, "Latency benchmarks").
CPU_MAX_ROWS = 256


def row_limit(max_rows: int | None, on_gpu: bool) -> int | None:
    """A backend's `max_rows` argument checked, None resolved: `CPU_MAX_ROWS` on the CPU, no limit on a GPU
    (where one large call fills the device better)."""
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1):
        raise ConfigError(f"max_rows must be a positive int or None, got {max_rows!r}")
    return max_rows if max_rows is not None else (None if on_gpu else CPU_MAX_ROWS)


def samples_per_call(max_rows: int | None, rows_per_sample: int, lo: int, hi: int) -> int:
    """How many samples one call takes: at most `hi` (the graph's batch max), at most `max_rows` scoring
    rows (`rows_per_sample` = K·J each) where a limit is set, and never fewer than `lo` (nor than 1)."""
    if max_rows is not None:
        hi = min(hi, max_rows // max(1, rows_per_sample))
    return max(lo, 1, hi)


def features(z, z_dim: int, dtype=np.float32) -> np.ndarray:
    """A scorer's input `z` checked as `(B, Dz)` floats and returned C-contiguous in `dtype` (values too
    large for it become inf: the caller checks the output)."""
    z = np.asarray(z)
    if z.ndim != 2 or z.shape[1] != z_dim:
        raise InputError(f"z must be (B, Dz={z_dim}), got shape {z.shape}")
    if not np.issubdtype(z.dtype, np.floating):
        raise InputError(f"z must hold floats, got dtype {z.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(z, dtype)


def windows(x, window_shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An encoder's input `x` checked as `(B, *window_shape)` preprocessed windows (`(B, 3, T, V, M)`)
    and returned C-contiguous in `dtype`."""
    x = np.ascontiguousarray(x, dtype)
    if x.ndim != 1 + len(window_shape) or x.shape[1:] != tuple(window_shape):
        raise InputError(
            f"the encoder takes preprocessed windows (B, {', '.join(map(str, window_shape))}), got shape {x.shape}"
        )
    return x


def batches(x: np.ndarray, lo: int, hi: int) -> Iterator[tuple[int, np.ndarray]]:
    """`(n, part)`: chunks of at most `hi` rows, zero-padded up to `lo` rows (a fixed-batch graph):
    keep the first n output rows of each."""
    for start in range(0, len(x), hi):
        part = x[start : start + hi]
        n = len(part)
        if n < lo:
            part = np.concatenate([part, np.zeros((lo - n, *x.shape[1:]), x.dtype)])
        yield n, part
