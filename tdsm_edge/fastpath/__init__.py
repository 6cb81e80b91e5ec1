"""The GPU fast path of the PyTorch backend: `FastScorer` (fp16, fused Triton kernels, SDPA, CUDA graphs).

Light on purpose: names resolve lazily, so `import tdsm_edge.fastpath` imports neither torch nor
triton; Triton itself is imported only when a kernel runs on it (kernels.py).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FastScorer": ".scorer",
    "FastTables": ".tables",
    "GraphCache": ".graphs",
    "triton_available": ".kernels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
