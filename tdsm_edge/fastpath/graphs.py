"""CUDA-graph capture: `capture_graph` (the project's one capture helper, also used by the torch
backend's plain folded scorer) and, for the fast scorer, one graph per (B, K, masked) shape.

A captured graph reads fixed addresses, so each graph owns a static input `z (B, Dz)` and reads the
class tables from static per-K buffers (`FastClassTables`). When the active class set changes, the new
tables are copied into those buffers (a few MB; no re-capture) and every graph of that K sees them.
Whether the key-padding mask is applied is part of the shape key: a graph captured without the
mask (all keys valid, SDPA may then pick FlashAttention) is never replayed for a masked class set.

All graphs share one memory pool: they never run concurrently, so their intermediates can reuse
the same memory. Capture needs a warm-up on a side stream first (cuBLAS workspaces, Triton JIT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from tdsm_edge.fastpath.tables import FastClassTables

Out = TypeVar("Out")


def capture_graph(
    forward: Callable[[], Out], device: torch.device, warmup: int = 2, pool=None
) -> tuple[torch.cuda.CUDAGraph, Out]:
    """Capture `forward()` in a CUDA graph on `device`: `(graph, out)`; `graph.replay()` refills `out`.

    `forward` must read only static buffers (tensors at fixed addresses: copy new inputs into them
    before each replay) and return its output tensor(s), which the graph writes on every replay.
    It first runs `warmup` times on a side stream, outside the graph: the first calls allocate
    (cuBLAS workspaces, the caching allocator), JIT-compile Triton kernels and pick SDPA kernels,
    none of which may happen during capture. `pool`: a `torch.cuda.graph_pool_handle()` shared by
    graphs that never run concurrently (their intermediates reuse one memory pool); None: its own.
    """
    with torch.cuda.device(device):  # torch.cuda.graph captures on a stream of the CURRENT device: make it ours
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(warmup):
                forward()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph, pool=pool):
            out = forward()
    return graph, out


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    z: torch.Tensor  # (B, Dz) float32 static input
    out: torch.Tensor  # (B, K) float32 static output


class GraphCache:
    """`cache(z, tables)`: the scores of `forward(z, tables)`, through a captured CUDA graph."""

    def __init__(self, forward: Callable[[torch.Tensor, FastClassTables], torch.Tensor], warmup: int = 2) -> None:
        self._forward, self._warmup = forward, warmup
        self._pool = None
        self._graphs: dict[tuple[int, int, bool], _Captured] = {}
        self._static: dict[int, list] = {}  # K -> [static FastClassTables, the FastClassTables last copied in]

    @property
    def shapes(self) -> list[tuple[int, int, bool]]:
        """The captured (B, K, masked) keys."""
        return sorted(self._graphs)

    def clear(self) -> None:
        """Drop every graph and static buffer (their memory returns to the caching allocator)."""
        self._graphs.clear()
        self._static.clear()
        self._pool = None

    def __call__(self, z: torch.Tensor, tables: FastClassTables) -> torch.Tensor:
        """`z (B, Dz) float32` on CUDA → `(B, K) float32` (a fresh tensor, not the static output)."""
        static = self._static_tables(tables)
        key = (int(z.shape[0]), tables.num_classes, tables.has_mask)
        entry = self._graphs.get(key)
        if entry is None:
            entry = self._graphs[key] = self._capture(z, static)
        entry.z.copy_(z)
        entry.graph.replay()
        return entry.out.clone()

    def _static_tables(self, tables: FastClassTables) -> FastClassTables:
        K = tables.num_classes
        slot = self._static.get(K)
        if slot is None:
            slot = self._static[K] = [tables.clone(), tables]
        elif slot[1] is not tables:  # the active class set changed: refresh the buffers in place
            slot[0].copy_(tables)
            slot[1] = tables
        return slot[0]

    def _capture(self, z: torch.Tensor, static: FastClassTables) -> _Captured:
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        z_static = z.detach().clone()
        graph, out = capture_graph(lambda: self._forward(z_static, static), z.device, self._warmup, self._pool)
        return _Captured(graph, z_static, out)
