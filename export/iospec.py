"""Re-export of `tdsm_edge.runtime.iospec` (the bundle's IO spec lives with the runtime that reads it).

Kept so that `from export.iospec import ...` keeps working; new code imports from the runtime.
"""
from tdsm_edge.runtime.iospec import (AXES, BATCH, CLASSES, DTYPES, SCORER_INPUT, SCORER_OUTPUT, SCORER_TABLES,
                                      TABLES_GRAPH, TEXT_GRAPH, TOKENS, AxisRange, GraphIO, IOSpec, TensorIO, scorer_io,
                                      tables_io, text_io)

__all__ = ["AXES", "BATCH", "CLASSES", "DTYPES", "SCORER_INPUT", "SCORER_OUTPUT", "SCORER_TABLES", "TABLES_GRAPH",
           "TEXT_GRAPH", "TOKENS", "AxisRange", "GraphIO", "IOSpec", "TensorIO", "scorer_io", "tables_io", "text_io"]
