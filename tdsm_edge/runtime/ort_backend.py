"""Run an engine bundle's graphs on ONNX Runtime: numpy + onnxruntime only, never torch.

    scorer = OrtBackend("engines/demo")              # providers: TensorRT EP > CUDA EP > CPU, as installed
    errors = scorer.errors(z)                        # z (B, Dz) float32 raw features -> (B, K) float32
    scorer.select(["wave", "kick"])                 # score a class subset: table rows, no rebuild
    pred = errors.argmin(1)                          # lower error = more likely class

The scorer's inputs are fed from the IO spec in the manifest: the class tables (float32 in
tables.npz) are cast once to the spec's dtypes, and batches are cut to the spec's batch range
(chunks of at most `max`; a chunk below `min` is zero-padded and the padding dropped), so a
fixed-batch bundle runs any number of samples.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tdsm_edge.errors import ConfigError, require

from .batching import batches, features, row_limit, samples_per_call, windows
from .class_set import ClassSet, Snapshot
from .iospec import BATCH
from .manifest import Manifest, load_manifest, load_tables

log = logging.getLogger(__name__)

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def num_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_providers(providers: str | Sequence[str] = "auto", available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers, best first.

    Args:
        providers: "auto" (TensorRT EP > CUDA EP > CPU, those installed), one of "tensorrt", "cuda",
            "cpu" (that one, CPU as fallback), or a list of ORT provider names used as given.
        available: `onnxruntime.get_available_providers()` (looked up when None).
    """
    if available is None:
        available = require("onnxruntime", extra="runtime").get_available_providers()
    if not isinstance(providers, str) and (
        not isinstance(providers, (list, tuple)) or not providers or not all(isinstance(p, str) for p in providers)
    ):
        raise ConfigError(
            f"providers must be 'auto', one of {sorted(PROVIDERS)} or a non-empty list of ONNX Runtime "
            f"provider names, got {providers!r}"
        )
    if not isinstance(providers, str):
        missing = [p for p in providers if p not in available]
        if missing:
            raise ConfigError(f"ONNX Runtime providers {missing} are not available here; available: {list(available)}")
        return list(providers)
    if providers == "auto":
        return [PROVIDERS[k] for k in AUTO_ORDER if PROVIDERS[k] in available]
    if providers not in PROVIDERS:
        raise ConfigError(
            f"providers must be 'auto', one of {sorted(PROVIDERS)} or a list of ONNX Runtime provider "
            f"names, got {providers!r}"
        )
    if PROVIDERS[providers] not in available:
        how = {"tensorrt": "onnxruntime-gpu built with TensorRT, and TensorRT", "cuda": "onnxruntime-gpu"}.get(
            providers
        )
        raise ConfigError(
            f"the {providers} execution provider is not available in this onnxruntime (available: "
            f"{list(available)}); install {how}, or use providers='auto'"
        )
    chosen = [PROVIDERS[providers]]
    if providers == "tensorrt" and PROVIDERS["cuda"] in available:
        chosen.append(PROVIDERS["cuda"])  # ops TensorRT does not take run on CUDA, not on the CPU
    return chosen + ([PROVIDERS["cpu"]] if providers != "cpu" else [])


def session_options(threads: int | None = None):
    """SessionOptions: every graph optimisation on, intra-op threads = cores (or `threads`)."""
    ort = require("onnxruntime", extra="runtime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = int(threads or num_cores())
    return so


class OrtBackend:
    """The bundle's scorer graph in an ONNX Runtime session, with its class tables resident.

    Args:
        bundle_dir: an engine bundle folder (checked by `load_manifest`, sha256 included), or its
            already loaded and checked Manifest.
        providers: see `resolve_providers`.
        threads: intra-op threads (default: the cores available).
        io_binding: keep the class tables in device memory as OrtValues (uploaded once per class-set
            change) and bind them instead of feeding numpy each call. None = on when the session runs
            on the CUDA or TensorRT execution provider (where feeding would copy every table to the GPU
            on every call); on the CPU it changes nothing but is allowed (tested that way).
        max_rows: cut a call into chunks of about this many scoring rows (B·K·J) at most; None = 256 on
            the CPU provider (measured ×1.1–1.5 faster than one call at B = 64 for K = 5..60, J = 3:
            the activations stay in cache), no limit on GPUs. A chunk never exceeds the batch max.
    """

    def __init__(
        self,
        bundle_dir: str | Path | Manifest,
        providers: str | Sequence[str] = "auto",
        threads: int | None = None,
        io_binding: bool | None = None,
        max_rows: int | None = None,
    ) -> None:
        require("onnxruntime", extra="runtime")
        self.manifest: Manifest = bundle_dir if isinstance(bundle_dir, Manifest) else load_manifest(bundle_dir)
        self.spec = self.manifest.io.graphs["scorer"]
        self.batch = self.manifest.io.axes[BATCH]
        self.class_set = ClassSet(
            self.manifest.class_names, load_tables(self.manifest), {t.name: t.dtype for t in self.spec.inputs[1:]}
        )
        path = self.manifest.path("scorer")
        self.session = open_session(self.manifest, "scorer", threads, providers)
        self._check_session()
        self._z_name, self.z_dim = self.spec.inputs[0].name, int(self.spec.inputs[0].dims[1])
        on_gpu = self.providers[0] in (PROVIDERS["cuda"], PROVIDERS["tensorrt"])
        self.io_binding = on_gpu if io_binding is None else bool(io_binding)
        self.max_rows = row_limit(max_rows, on_gpu)
        self.num_noises = int(self.manifest.data["scoring"]["num_noises"])
        self._ort_device = "cuda" if on_gpu else "cpu"
        self._bound: tuple[int, dict] | None = None  # (class-set version, name -> OrtValue on the device)
        self._bind_lock = threading.Lock()
        log.info(
            "scorer %s on %s: %d classes, batch %d..%d",
            path.name,
            self.session.get_providers()[0],
            len(self.class_set.all_names),
            self.batch.min,
            self.batch.max,
        )

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses, best first."""
        return list(self.session.get_providers())

    @property
    def device(self) -> str:
        """Where it runs: the ONNX Runtime provider in use."""
        return self.providers[0]

    @property
    def classes(self) -> list[str]:
        """The active class names, in score (column) order."""
        return self.class_set.names

    @property
    def all_classes(self) -> list[str]:
        return self.class_set.all_names

    def select(self, classes: Sequence[str | int] | None) -> list[str]:
        """Score only `classes` (names or bundle indices, in the order given); None = every class.

        Takes the table rows of those classes; nothing is rebuilt. Returns the active class names.
        """
        return self.class_set.select(classes)

    def errors(self, z: np.ndarray, snap: Snapshot | None = None) -> np.ndarray:
        """Per-class errors of raw skeleton features.

        Args:
            z: `(B, Dz)` float features (not standardised: the graph does it).
            snap: the class-set snapshot to score (default: the active classes now); the caller that labels
                the columns passes the one it labels with.
        Returns:
            `(B, K) float32`, K the snapshot's classes; lower = more likely.
        """
        snap = snap or self.class_set.snapshot()  # one class set for the whole call, whatever other threads do
        run = self._run_bound if self.io_binding else (lambda feed, _snap: self.session.run(None, feed)[0])
        out = [run(feed, snap)[:n] for n, feed in self.feeds(z, snap)]
        return np.concatenate(out) if out else np.zeros((0, len(snap.names)), np.float32)

    def _run_bound(self, feed: dict[str, np.ndarray], snap: Snapshot) -> np.ndarray:
        """One run with the tables bound as device OrtValues and z copied in from the host."""
        tables = self._device_tables(snap)
        binding = self.session.io_binding()  # one per call: bindings are not shared between threads
        binding.bind_cpu_input(self._z_name, feed[self._z_name])
        for name, value in tables.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(self.spec.outputs[0].name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _device_tables(self, snap: Snapshot) -> dict:
        """The snapshot's tables as OrtValues on the session's device, uploaded once per class-set version."""
        with self._bind_lock:
            if self._bound is None or self._bound[0] != snap.version:
                ort = require("onnxruntime", extra="runtime")
                self._bound = (
                    snap.version,
                    {
                        n: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(t), self._ort_device, 0)
                        for n, t in snap.tables.items()
                    },
                )
            return self._bound[1]

    def feeds(self, z: np.ndarray, snap: Snapshot | None = None) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """The scorer's input feeds for `z (B, Dz)`, as the IO spec shapes them: `(n, feed)` per chunk of
        at most the batch max, zero-padded up to the batch min (keep the first n output rows)."""
        snap = snap or self.class_set.snapshot()
        tables = snap.tables
        z = features(z, self.z_dim)
        lo = self.batch.min
        hi = samples_per_call(self.max_rows, len(snap.names) * self.num_noises, lo, self.batch.max)
        for n, part in batches(z, lo, hi):
            yield n, {self._z_name: part, **tables}

    def _check_session(self) -> None:
        check_session(self.manifest, "scorer", self.session)


class OrtEncoder:
    """The bundle's encoder graph in an ONNX Runtime session: preprocessed windows → raw features.

        z = OrtEncoder(manifest).features(x)       # x (B, 3, T, V, M) float32 -> z (B, Dz) float32

    Batches are cut to the IO spec's batch range, as `OrtBackend` does.
    """

    def __init__(self, manifest: Manifest, providers: str | Sequence[str] = "auto", threads: int | None = None) -> None:
        require("onnxruntime", extra="runtime")
        self.spec = manifest.encoder_io()
        self.manifest = manifest
        self.batch = manifest.io.axes[BATCH]
        self.session = open_session(manifest, "encoder", threads, providers)
        check_session(manifest, "encoder", self.session)
        x = self.spec.inputs[0]
        self._x_name, self.window_shape = x.name, tuple(int(d) for d in x.dims[1:])  # (3, T, V, M)

    def features(self, x: np.ndarray) -> np.ndarray:
        """`x (B, 3, T, V, M)` preprocessed windows → `(B, Dz) float32` raw features."""
        x = windows(x, self.window_shape)
        out = [
            self.session.run(None, {self._x_name: part})[0][:n]
            for n, part in batches(x, self.batch.min, self.batch.max)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)


def open_session(manifest: Manifest, graph: str, threads: int | None = None, providers: str | Sequence[str] = "auto"):
    """An ONNX Runtime session of one of the bundle's graphs, from the bytes the manifest's sha256 vouches for
    (`Manifest.graph_source`): a file changed after loading is refused, and nothing outside the bundle is read."""
    ort = require("onnxruntime", extra="runtime")
    chosen = resolve_providers(providers)  # a bad providers argument is the caller's error, not the bundle's
    so = session_options(threads)
    with manifest.graph_source(graph) as source:
        if isinstance(source, bytes):  # external data (none is expected) resolves inside the bundle, not the cwd
            so.add_session_config_entry("session.model_external_initializers_file_folder_path", str(manifest.root))
        try:
            return ort.InferenceSession(source, so, providers=chosen)
        except Exception as e:  # onnxruntime's Fail / InvalidGraph / NotImplemented are plain Exceptions
            raise manifest.error(
                f"ONNX Runtime {ort.__version__} cannot open the {graph} graph",
                str(e).splitlines()[0] if str(e) else type(e).__name__,
            ) from e


def check_session(manifest: Manifest, graph: str, session) -> None:
    """An ORT session's graph must have exactly the IO the manifest's spec gives `graph` (BundleError)."""

    def conv(a):  # an ORT NodeArg as the spec compares it
        return SimpleNamespace(name=a.name, dtype=_ORT_TYPES.get(a.type, a.type), dims=tuple(a.shape))

    problems = manifest.io.graphs[graph].mismatches(map(conv, session.get_inputs()), map(conv, session.get_outputs()))
    if problems:
        raise manifest.error(f"the {graph} graph does not match the manifest's IO spec", "; ".join(problems))
