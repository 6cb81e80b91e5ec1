"""Choosing and opening a backend for a bundle: TensorRT > ONNX Runtime > PyTorch.

    name, scorer, encoder = open_backend(manifest, "auto")

Every backend gives the same two objects:
    scorer   `.errors(z (B, Dz), snap=None) -> (B, K) float32` over the classes of a class-set snapshot (the
             active ones now by default), `.class_set` (a ClassSet: names, tables, the active subset),
             `.device` (where it runs, in words)
    encoder  `.features(x (B, 3, T, V, M)) -> (B, Dz) float32`, `.window_shape` (3, T, V, M); None when
             the bundle has no encoder graph

Each backend module is imported only when chosen, so this module (and the runtime) loads numpy only.
"auto" takes the first backend that can run this bundle here: TensorRT needs the `tensorrt` package,
a CUDA GPU and a plan in the bundle built for this TensorRT version and GPU; ONNX Runtime needs
`onnxruntime`; PyTorch needs `torch` and the bundle's reference weights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from tdsm_edge import errors
from tdsm_edge.errors import ConfigError, DriverMismatchError, EngineIncompatibleError, MissingDependencyError

from .class_set import ClassSet, Snapshot
from .manifest import Manifest
from .rebuild import with_options

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
AUTO_ORDER = ("tensorrt", "onnxruntime", "torch")
_PACKAGE = {
    "tensorrt": ("tensorrt", "TensorRT (pip install tensorrt, or JetPack on a Jetson) and cuda-python"),
    "onnxruntime": ("onnxruntime", 'pip install "tdsm-edge[runtime]"'),
    "torch": ("torch", 'pip install "tdsm-edge[train]"'),
}


class Backend(Protocol):
    class_set: ClassSet
    device: str

    def errors(self, z: np.ndarray, snap: Snapshot | None = None) -> np.ndarray: ...


class Encoder(Protocol):
    window_shape: tuple[int, ...]

    def features(self, x: np.ndarray) -> np.ndarray: ...


def installed(backend: str) -> bool:
    """Whether the package a backend needs can be imported here (nothing is imported)."""
    return errors.installed(_PACKAGE[backend][0])


def unavailable_reason(manifest: Manifest, backend: str) -> str | None:
    """Why `backend` cannot run this bundle here, or None when it can (cheap checks only)."""
    if not installed(backend):
        return f"{_PACKAGE[backend][0]} is not installed ({_PACKAGE[backend][1]})"
    if backend == "tensorrt":
        if not any(p.get("graph") == "scorer" for p in manifest.plans):
            return (
                f"the bundle has no TensorRT plan of its scorer; build one on this device: "
                f"{with_options(manifest.rebuild_command, backend='tensorrt')}"
            )
    if backend == "torch" and "reference" not in manifest.data:
        return (
            "the bundle has no reference weights for PyTorch (built with --no-torch-weights); rebuild it: "
            f"{manifest.rebuild_command}"
        )
    return None


def open_backend(
    manifest: Manifest,
    backend: str = "auto",
    *,
    threads: int | None = None,
    providers: str | Sequence[str] = "auto",
    device: str = "auto",
    cuda_graph: bool = False,
) -> tuple[str, Backend, Encoder | None]:
    """Open the scorer (and encoder, when the bundle has one) of `manifest` on `backend`.

    Args:
        backend: "auto" (TensorRT > ONNX Runtime > PyTorch, the first that can run here) or a name.
        threads: CPU threads (ONNX Runtime intra-op / torch), default the cores available.
        providers: ONNX Runtime execution providers ("auto", "cuda", "cpu", … see ort_backend).
        device: PyTorch device ("auto": CUDA when available, else CPU).
        cuda_graph: TensorRT / PyTorch on CUDA: capture each call shape in a CUDA graph.
    Returns:
        (backend name, scorer, encoder or None).
    Raises:
        ConfigError: an unknown backend name, or "auto" with no backend able to run the bundle.
        MissingDependencyError: the named backend's package is not installed.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        reasons = {b: unavailable_reason(manifest, b) for b in AUTO_ORDER}
        usable = [b for b in AUTO_ORDER if reasons[b] is None]
        if not usable:
            raise ConfigError(
                "no backend can run this bundle here: " + "; ".join(f"{b}: {r}" for b, r in reasons.items())
            )
        for b in usable:
            try:
                return b, *_open(manifest, b, threads, providers, device, cuda_graph)
            except (MissingDependencyError, ConfigError, EngineIncompatibleError) as e:  # e.g. no GPU
                if b == usable[-1]:
                    raise
                # a mismatch to fix, or a GPU the user asked for: said at WARNING; an absent GPU is routine
                loud = isinstance(e, (EngineIncompatibleError, DriverMismatchError)) or _asks_for_gpu(device, providers)
                log.log(
                    logging.WARNING if loud else logging.INFO, "backend %s cannot run here (%s); trying the next", b, e
                )
    reason = unavailable_reason(manifest, backend)
    if reason is not None:
        err = MissingDependencyError if not installed(backend) else ConfigError
        raise err(f"backend={backend!r} cannot run this bundle: {reason}. Or use backend='auto'")
    return backend, *_open(manifest, backend, threads, providers, device, cuda_graph)


def _asks_for_gpu(device, providers) -> bool:
    """device="cuda…" or GPU execution providers: the user expects a GPU backend."""
    names = (
        [providers] if isinstance(providers, str) else list(providers) if isinstance(providers, (list, tuple)) else []
    )
    return str(device).startswith("cuda") or any(
        str(p).lower().startswith(("cuda", "tensorrt")) for p in names if p != "auto"
    )


def _open(manifest: Manifest, backend: str, threads, providers, device, cuda_graph):
    if backend == "onnxruntime":
        from .ort_backend import OrtBackend, OrtEncoder

        scorer = OrtBackend(manifest, providers, threads)
        encoder = OrtEncoder(manifest, providers, threads) if "encoder" in manifest.graphs else None
    elif backend == "tensorrt":
        from .trt_backend import TrtBackend, TrtEncoder

        scorer = TrtBackend(manifest, cuda_graph=cuda_graph)
        encoder = TrtEncoder(manifest) if "encoder" in manifest.graphs else None
    else:
        from .torch_backend import TorchBackend, TorchEncoder

        scorer = TorchBackend(manifest, device=device, threads=threads, cuda_graph=cuda_graph)
        encoder = TorchEncoder(manifest, device=scorer.torch_device) if "encoder" in manifest.graphs else None
    return scorer, encoder
