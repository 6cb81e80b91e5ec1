"""TDSM zero-shot skeleton action recognition, trained in PyTorch and served at the edge.

Light on purpose: importing `tdsm_edge` never imports torch. The runtime API is re-exported lazily:

    from tdsm_edge import ZeroShotRecognizer     # loads tdsm_edge.runtime.recognizer on first use
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {"ZeroShotRecognizer": "tdsm_edge.runtime", "Prediction": "tdsm_edge.runtime",
         "ActionStream": "tdsm_edge.runtime"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
