"""Models: the TDSM denoiser (DiT), the DDPM schedule and the Shift-GCN skeleton encoder.

Light on purpose: names resolve lazily, so `import tdsm_edge.models` does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TDSMDenoiser": ".denoiser",
    "build_denoiser": ".denoiser",
    "denoiser_param_count": ".denoiser",
    "DDPMSchedule": ".schedule",
    "ShiftGCN": ".shift_gcn",
    "build_shift_gcn": ".shift_gcn",
    "load_published_checkpoint": ".published",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
