"""Skeleton joint layouts and numpy preprocessing (no torch: shared with the lean runtime).

    from tdsm_edge.skeleton import NTU25
    from tdsm_edge.skeleton.preprocess import preprocess, preprocess_batch

The preprocessing functions are not re-exported here, so that `tdsm_edge.skeleton.preprocess`
always names the module (a same-named function attribute would shadow it).
"""

from __future__ import annotations

from .layout import NTU25, SkeletonLayout, available_layouts, load_layout

__all__ = ["NTU25", "SkeletonLayout", "available_layouts", "load_layout"]
