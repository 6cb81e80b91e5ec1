"""Edge export of the TDSM scorer: folded per-class tables, one batched scoring graph, ONNX.

The scoring graph itself (`FoldedScorer`, class tables) lives in `tdsm_edge.models.folded` /
`tdsm_edge.models.class_tables` (the runtime's PyTorch backend runs it too).
Run as `python -m export.build_engine` (engine bundles: see engines/README.md).
Modules:
    onnx_export.py  `export_scorer`, `export_tables`: opset-18 ONNX (fp32 / fp16 with fp32 islands)
    bundle.py       `BundleRequest`, `write_bundle`: graphs + class tables + manifest.json, staged and committed
                    atomically, one named step per part
    bundle_manifest.py `bundle_manifest`: what a new bundle's manifest.json records
    verify.py       `verify_bundle`: bundle vs the PyTorch reference on held-out samples
    sources.py      run folders, class selection, held-out samples, the no-argument demo
    open_set.py     `calibrate`: the open-set margin threshold, from validation features (stored in the manifest)
    build_report.py `format_report`: the table printed at the end of a build
    build_engine.py the CLI

The graph builders import torch. Reading and running a bundle (its IO spec, manifest and ONNX Runtime
scorer included) lives in `tdsm_edge.runtime` (numpy +
onnxruntime only; tested: loading and scoring a bundle never imports torch), which never imports
this package: runtime ← export ← training.
"""
