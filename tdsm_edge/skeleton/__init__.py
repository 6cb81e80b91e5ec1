"""Skeleton joint layouts and numpy preprocessing (no torch: shared with the lean runtime)."""
from __future__ import annotations

from .layout import NTU25, SkeletonLayout, available_layouts, load_layout
from .preprocess import NUM_BODIES, preprocess, preprocess_batch

__all__ = ["NTU25", "NUM_BODIES", "SkeletonLayout", "available_layouts", "load_layout", "preprocess",
           "preprocess_batch"]
