"""Edge export of the TDSM scorer: folded per-class tables, one batched scoring graph, ONNX.

Run as `python -m export.build_engine` (engine bundles: see engines/README.md).
Modules:
    tables.py       per-class constants at a fixed t (`class_tables`, `TablesModule`, `ClassTables`)
    folded.py       `FoldedScorer`: (B, Dz) raw features + class tables -> (B, K) errors, one graph
    onnx_export.py  `export_scorer`, `export_tables`: opset-18 ONNX (fp32 / fp16 with fp32 islands)
    iospec.py       `IOSpec`: the one IO spec (names, dtypes, dims, batch/class ranges) of a bundle's graphs
    bundle.py       `write_bundle`: graphs + class tables + manifest.json, staged and committed atomically
    manifest.py     `load_manifest`, `load_tables`, `check_plan_compat`: reading and checking a bundle
    ort_backend.py  `OrtScorer`: a bundle's scorer on ONNX Runtime (TensorRT EP > CUDA EP > CPU)
    verify.py       `verify_bundle`: bundle vs the PyTorch reference on held-out samples
    sources.py      run folders, class selection, held-out samples, the no-argument demo
    build_engine.py the CLI

The graph builders import torch; iospec.py, manifest.py and ort_backend.py need only numpy and
onnxruntime (tested: loading and scoring a bundle never imports torch).
"""
