"""The lean runtime: load an engine bundle and recognize actions. numpy + optional onnxruntime / tensorrt; never torch.

    from tdsm_edge.runtime import ZeroShotRecognizer
    rec = ZeroShotRecognizer.load("engines/demo")
    pred = rec.predict(window)                     # (T, V, 3) or (M, T, V, 3) float camera coordinates
    stream = ActionStream(rec, stride=8); stream.push(frame)  # (V, 3) frames -> Prediction | None

Modules:
    recognizer.py   `ZeroShotRecognizer`, `Prediction`: window → preprocess → encoder → scorer → label
    manifest.py     `load_manifest`, `load_tables`, `check_plan_compat`: reading and checking a bundle
    rebuild.py      `build_command`, `with_options`: the build_engine command line that (re)builds a bundle
    iospec.py       `IOSpec`: the one IO spec (names, dtypes, dims, batch/class ranges) of a bundle's graphs
    backends.py     `open_backend`: TensorRT > ONNX Runtime > PyTorch, the first that can run the bundle here
    class_set.py    `ClassSet`: class names + table rows + the active subset, shared by every backend
    ort_backend.py  `OrtBackend`, `OrtEncoder`: a bundle's graphs on ONNX Runtime (TensorRT EP > CUDA EP > CPU)
    torch_backend.py `TorchBackend`, `TorchEncoder`: the bundle's reference weights in PyTorch (CPU / CUDA graphs)
    trt_backend.py  `TrtBackend`, `TrtEncoder`: a bundle's TensorRT plans (the one built for this TensorRT + GPU)
    trt_engine.py   `TrtEngine`: load / activate / allocate / infer a plan, a pool of contexts (one profile each)
    batching.py     `features`, `batches`, `row_limit`: input checks, batch chunks (graph range, CPU row budget) for every backend
    cuda_memory.py  device buffers, streams and CUDA graphs through cuda-python (torch as a fallback), `gpu_info`
    stream.py       `ActionStream`: frames pushed one at a time → sliding window, stride, score smoothing
    to_ntu25, ADAPTERS  (from tdsm_edge.skeleton.adapters) COCO-17 / MediaPipe-33 keypoints → NTU-25 windows
    text_encoder.py `OrtTextEncoder`: new class text → class-table rows (the bundle's text side; add_classes)
    tokenizer.py    `WordPieceTokenizer`: BERT WordPiece in pure Python (equal to `tokenizers` on MiniLM's vocab)

Dependencies point one way: runtime ← export ← training; nothing here imports `export`, and torch only
when asked for: the torch backend, or cuda_memory's fallback when cuda-python is missing.
Names are imported lazily (module `__getattr__`), so importing this package loads nothing heavy.
"""

from __future__ import annotations

from tdsm_edge.lazy import lazy_exports

_LAZY = {
    "ZeroShotRecognizer": ".recognizer",
    "Prediction": ".recognizer",
    "NONE_LABEL": ".recognizer",
    "ActionStream": ".stream",
    "StreamStats": ".stream",
    "to_ntu25": "tdsm_edge.skeleton.adapters",
    "ADAPTERS": "tdsm_edge.skeleton.adapters",
}

__all__ = list(_LAZY)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
