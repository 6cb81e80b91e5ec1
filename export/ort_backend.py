"""Re-export of `tdsm_edge.runtime.ort_backend` (a bundle's scorer on ONNX Runtime: numpy + onnxruntime).

Kept so that `from export.ort_backend import ...` keeps working; new code imports from the runtime.
"""
from tdsm_edge.runtime.ort_backend import (AUTO_ORDER, PROVIDERS, OrtScorer, num_cores, resolve_providers,
                                           session_options)

__all__ = ["AUTO_ORDER", "PROVIDERS", "OrtScorer", "num_cores", "resolve_providers", "session_options"]
