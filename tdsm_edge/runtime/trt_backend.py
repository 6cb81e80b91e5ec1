"""The TensorRT backend: a bundle's plans on the GPU (TensorRT 10.x, device buffers through cuda-python).

    scorer = TrtBackend(manifest, cuda_graph=True)     # the scorer plan built for this TensorRT + GPU
    errors = scorer.errors(z)                          # (B, Dz) float -> (B, K) float32, active classes
    z = TrtEncoder(manifest).features(x)               # (B, 3, T, V, M) float -> (B, Dz) float32

Plan choice: the manifest's `plans` records (one per graph and build machine, see export/bundle.py);
the one for the graph whose TensorRT version, GPU and compute capability match this machine is
loaded (EngineIncompatibleError naming the rebuild command when none does; ConfigError when the
bundle has no plan for the graph or no CUDA GPU is visible, so that backend="auto" moves on).

Per call the scorer takes ONE class-set snapshot; its tables go to the device once per snapshot
version and execution context. Threads follow TensorRT's contract (trt_engine.py): a plan built with
P optimization profiles (`python -m export.build_engine ... --trt-contexts P`, default 1) runs up to P
calls at once, each on its own context, stream and buffers over one shared engine; further calls wait
for a free context. Batches are cut to the plan's profile (chunks of at most its max, zero-padded up
to its min; padding rows dropped); class tables below the profile's class min are padded with copies
of the first row (their columns dropped); more active classes than the profile's max is an error
naming the rebuild command. `cuda_graph=True` captures the call shape (B, K) in a CUDA graph on the
context after one warm-up enqueue and replays it while the shape stays; every chunk of a call is
padded to the call's one chunk shape, so a steady B (a control loop's) replays on every call and a
change of B or of the active class count re-captures once (TensorRT's rule: a graph is valid only for
the shapes it was captured with; buffers are sized for the profile's max, so addresses stay fixed).

numpy only at import; `tensorrt` and cuda-python are imported when a scorer / encoder is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from tdsm_edge.errors import ConfigError, EngineIncompatibleError, MissingDependencyError

from .batching import batches, features, windows
from .class_set import ClassSet, Snapshot
from .cuda_memory import CUDA_PYTHON_MISSING, _cudart, gpu_info
from .manifest import Manifest, check_plan_compat, load_tables
from .rebuild import with_options
from .trt_engine import TrtEngine, import_trt

log = logging.getLogger(__name__)


def rebuild_command(manifest: Manifest) -> str:
    """The bundle's build command with `--backend tensorrt`: it builds plans for the machine it runs on."""
    return with_options(manifest.rebuild_command, backend="tensorrt")


def plan_for(manifest: Manifest, graph: str, trt_version: str, gpu_name: str, compute_capability) -> dict:
    """The manifest's plan record for `graph` that this TensorRT version and GPU can run.

    Raises:
        ConfigError: the bundle has no plan for `graph`.
        EngineIncompatibleError: it has some, none built for this machine (each one's differences listed).
    """
    cmd = rebuild_command(manifest)
    candidates = [p for p in manifest.plans if p.get("graph") == graph]
    if not candidates:
        raise ConfigError(
            f"the bundle {str(manifest.root)!r} has no TensorRT plan for its {graph} graph; build "
            f"plans on this device with:\n  {cmd}"
        )
    errors = []
    for plan in candidates:
        try:
            check_plan_compat(plan, trt_version, gpu_name, compute_capability, cmd)
            return plan
        except EngineIncompatibleError as e:
            errors.append(e)
    if len(errors) == 1:
        raise errors[0]
    raise EngineIncompatibleError(
        f"none of the bundle's {len(errors)} TensorRT plans for its {graph} graph can run "
        f"here:\n"
        + "\n".join(str(e).split("\nPlans are")[0] for e in errors)
        + f"\nRebuild on this machine with:\n  {cmd}"
    )


@dataclass(frozen=True)
class OpenPlan:
    engine: TrtEngine  # loaded; its contexts are made on first use
    record: dict  # the plan's manifest record
    device: str  # "TensorRT 10.3.0 on <GPU> (compute 8.7)"


def open_plan(manifest: Manifest, graph: str, memory="cuda-python") -> OpenPlan:
    """Load the plan of `graph` that fits this machine, checked against the bundle's IO spec."""
    trt = import_trt()
    if memory == "cuda-python" and _cudart() is None:
        raise MissingDependencyError(CUDA_PYTHON_MISSING)
    gpu_name, cc = gpu_info()  # ConfigError when no GPU is visible
    record = plan_for(manifest, graph, trt.__version__, gpu_name, cc)
    engine = TrtEngine(manifest.path(record["file"]), memory=memory, reserve_max=True)
    engine.load(expected_record=record, rebuild_cmd=rebuild_command(manifest), data=manifest.read_bytes(record["file"]))
    spec = manifest.io.graphs[graph]
    problems = []
    for kind, got, want in (("inputs", engine.inputs, spec.inputs), ("outputs", engine.outputs, spec.outputs)):
        if sorted(got) != sorted(t.name for t in want):
            problems.append(f"its {kind} are {got}, the spec says {[t.name for t in want]}")
        else:
            problems += [
                f"{t.name} is {engine.dtypes[t.name]}, the spec says {t.dtype}"
                for t in want
                if str(engine.dtypes[t.name]) != t.dtype
            ]
    if engine.profiles != record.get("profiles", 1):
        problems.append(f"it has {engine.profiles} optimization profiles, the record says {record.get('profiles', 1)}")
    if problems:
        engine.close()
        raise manifest.error(
            f"the TensorRT plan {record['file']} does not fit the manifest's IO spec of the {graph} graph",
            "; ".join(problems),
        )
    log.info("%s plan %s on TensorRT %s, %s (compute %s)", graph, record["file"], trt.__version__, gpu_name, cc)
    return OpenPlan(engine, record, f"TensorRT {trt.__version__} on {gpu_name} (compute {cc})")


class TrtBackend:
    """The bundle's scorer plan with its class tables resident on the device (see the module docstring).

    Args:
        manifest: a loaded, checked bundle manifest with a scorer plan for this machine.
        cuda_graph: capture the (B, K) call shape in a CUDA graph per context and replay it while it stays.
        memory: device memory: "cuda-python" (default) or "torch" (no CUDA graphs), see cuda_memory.py.
    """

    def __init__(self, manifest: Manifest, cuda_graph: bool = False, memory="cuda-python") -> None:
        self.manifest = manifest
        self.spec = manifest.io.graphs["scorer"]
        self.cuda_graph = bool(cuda_graph)
        if self.cuda_graph and memory != "cuda-python":
            raise ConfigError(
                f"cuda_graph=True needs memory='cuda-python' (CUDA graphs are captured with it), got memory={memory!r}"
            )
        opened = open_plan(manifest, "scorer", memory)
        self.engine, self.record, self._where = opened.engine, opened.record, opened.device
        z, tables = self.spec.inputs[0], self.spec.inputs[1:]
        self._z_name, self.z_dim, self._out = z.name, int(z.dims[1]), self.spec.outputs[0].name
        lo, _, hi = self.engine.profile(self._z_name)
        self.batch = (lo[0], hi[0])  # rows per call: min, max
        klo, _, khi = self.engine.profile(tables[0].name)
        self.class_range = (klo[0], khi[0])  # classes per call: min, max
        # it may hold more classes than the profile takes; at most class_range[1] of them can be active
        self.class_set = ClassSet(manifest.class_names, load_tables(manifest), {t.name: t.dtype for t in tables})
        self._padded: tuple[int, dict[str, np.ndarray]] | None = None  # (snapshot version, tables padded to min)

    @property
    def device(self) -> str:
        return f"{self._where}, {self.manifest.precision}" + (", CUDA graphs" if self.cuda_graph else "")

    def errors(self, z: np.ndarray, snap: Snapshot | None = None) -> np.ndarray:
        """`z (B, Dz)` float raw features → `(B, K) float32` errors over the classes of `snap` (default: the active
        classes now; lower = likelier)."""
        snap = snap or self.class_set.snapshot()  # one class set for the whole call, whatever other threads do
        z = features(z, self.z_dim, self.engine.dtypes[self._z_name])
        K = len(snap.names)
        if K > self.class_range[1]:
            raise ConfigError(
                f"{K} classes are active but the TensorRT scorer plan {self.record['file']} takes at "
                f"most {self.class_range[1]} (its optimization profile). Activate at most "
                f"{self.class_range[1]} (set_active_classes), or rebuild the bundle with every class you "
                f"need (--classes ...) on this device:\n  {rebuild_command(self.manifest)}"
            )
        if len(z) == 0:
            return np.zeros((0, K), np.float32)
        tables = self._tables(snap)
        cached = {n: snap.version for n in tables}  # uploaded once per version (and context)
        lo, hi = self.batch
        if self.cuda_graph:  # one chunk shape per call: the context's graph is re-captured only when B or K change
            lo = max(lo, min(len(z), hi))
        out = []
        for n, part in batches(z, lo, hi):
            errors = self.engine.infer({self._z_name: part, **tables}, cached=cached, graph=self.cuda_graph)
            out.append(errors[self._out][:n, :K])  # (n, K): padded rows and classes dropped
        return np.concatenate(out).astype(np.float32, copy=False)

    def _tables(self, snap: Snapshot) -> dict[str, np.ndarray]:
        """The snapshot's tables, rows padded up to the profile's class min with copies of row 0."""
        padded = self._padded
        if padded is None or padded[0] != snap.version:
            extra = self.class_range[0] - len(snap.names)
            tables = (
                snap.tables
                if extra <= 0
                else {
                    n: np.ascontiguousarray(np.concatenate([t, np.repeat(t[:1], extra, axis=0)]))
                    for n, t in snap.tables.items()
                }
            )
            padded = self._padded = (snap.version, tables)
        return padded[1]

    def close(self) -> None:
        """Free every context's device buffers and the engine."""
        self.engine.close()


class TrtEncoder:
    """The bundle's encoder plan: preprocessed windows `(B, 3, T, V, M)` → raw features `(B, Dz) float32`."""

    def __init__(self, manifest: Manifest, memory="cuda-python") -> None:
        self.spec = manifest.encoder_io()
        self.manifest = manifest
        opened = open_plan(manifest, "encoder", memory)
        self.engine, self.record, self.device = opened.engine, opened.record, opened.device
        x = self.spec.inputs[0]
        self._x_name, self._out = x.name, self.spec.outputs[0].name
        self.window_shape = tuple(int(d) for d in x.dims[1:])  # (3, T, V, M)
        lo, _, hi = self.engine.profile(x.name)
        self.batch = (lo[0], hi[0])

    def features(self, x: np.ndarray) -> np.ndarray:
        """`x (B, 3, T, V, M)` preprocessed windows → `(B, Dz) float32` raw features."""
        x = windows(x, self.window_shape, self.engine.dtypes[self._x_name])
        out = [self.engine.infer({self._x_name: part})[self._out][:n] for n, part in batches(x, *self.batch)]
        if not out:
            return np.zeros((0, int(self.spec.outputs[0].dims[1])), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def close(self) -> None:
        self.engine.close()
