"""Models: the TDSM denoiser (DiT), the DDPM schedule and the Shift-GCN skeleton encoder.

Light on purpose: names resolve lazily, so `import tdsm_edge.models` does not import torch.
"""
from __future__ import annotations

from tdsm_edge.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
