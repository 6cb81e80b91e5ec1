"""Edge export of the TDSM scorer: folded per-class tables, one batched scoring graph, ONNX.

Run as `python -m export.build_engine` (not yet: this package holds the graphs it will build on).
Modules:
    tables.py       per-class constants at a fixed t (`class_tables`, `TablesModule`, `ClassTables`)
    folded.py       `FoldedScorer`: (B, Dz) raw features + class tables -> (B, K) errors, one graph
    onnx_export.py  `export_scorer`, `export_tables`: opset-18 ONNX (fp32 / fp16 with fp32 islands)

This package imports torch; the robot-side `tdsm_edge.runtime` never imports it.
"""
