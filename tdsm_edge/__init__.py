"""TDSM zero-shot skeleton action recognition, trained in PyTorch and served at the edge.

Light on purpose: importing `tdsm_edge` never imports torch. The runtime API is re-exported lazily:

    from tdsm_edge import ZeroShotRecognizer     # loads tdsm_edge.runtime.recognizer on first use
"""

from __future__ import annotations

from tdsm_edge.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "ZeroShotRecognizer": "tdsm_edge.runtime",
    "Prediction": "tdsm_edge.runtime",
    "ActionStream": "tdsm_edge.runtime",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
