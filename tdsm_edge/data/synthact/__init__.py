"""synthact: the embedded procedural skeleton-action dataset (53 classes, NTU 25-joint layout).

Deterministic by seed, generated on the fly with numpy (no downloads):

    from tdsm_edge.data.synthact import generate, load_split, class_names
    unseen, seen = load_split("ru5")
    X, y = generate(seen, per_class=100, seed=0)      # X (N, 2, 64, 25, 3) float32, y (N,) int64

See `classes.py` for the catalogue, `nuisance.py` for the difficulty knobs and `splits.py` for the
zero-shot splits. CLI: python -m tdsm_edge.data.synthact --help
"""

from __future__ import annotations

from .classes import CLASSES, NUM_CLASSES, ActionClass, class_descriptions, class_names, find_class
from .generator import benchmark, generate
from .nuisance import Nuisance
from .splits import UNSEEN, load_split, make_splits

__all__ = [
    "CLASSES",
    "NUM_CLASSES",
    "UNSEEN",
    "ActionClass",
    "Nuisance",
    "benchmark",
    "class_descriptions",
    "class_names",
    "find_class",
    "generate",
    "load_split",
    "make_splits",
]
