"""The GPU fast path of the PyTorch backend: `FastScorer` (fp16, fused Triton kernels, SDPA, CUDA graphs).

Light on purpose: names resolve lazily, so `import tdsm_edge.fastpath` imports neither torch nor
triton; Triton itself is imported only when a kernel runs on it (kernels.py).
"""
from __future__ import annotations

from tdsm_edge.lazy import lazy_exports

_EXPORTS = {
    "FastScorer": ".scorer",
    "FastTables": ".tables",
    "GraphCache": ".graphs",
    "triton_available": ".kernels",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
