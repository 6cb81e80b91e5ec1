"""Running a TensorRT plan (TensorRT 10.x API): load / activate / allocate / infer, one context per thread.

    eng = TrtEngine("engines/demo/scorer_fp16.trt10.3.0.plan")
    eng.load(expected_record=plan_record, rebuild_cmd="python -m export.build_engine ...")  # checked first
    out = eng.infer({"z": z, **tables})["errors"]          # numpy in, numpy out; contexts made on demand

The stages follow NVIDIA's TensorRT demo/Diffusion `Engine` (the builder half, `build`, lives in
`export/tensorrt_build.py`, which subclasses this):
    load      plan → ONE deserialized engine (after the manifest record's sha256 / TensorRT / GPU checks)
    activate  this thread's execution context + device-memory helper (one CUDA stream)
    allocate  input shapes → this thread's device buffers; buffers only grow, so addresses stay put
    infer     numpy → device → execute_async_v3 (or a CUDA graph replay) → numpy

An execution context is not thread-safe, so each thread gets its own (threading.local) over the
shared engine, with its own stream and buffers; `close()` frees every thread's. Inputs named in
`cached` are uploaded only when their tag changes (a scorer's class tables: once per class-set
version). With `graph=True` each set of input shapes is captured once in a CUDA graph — after one
ordinary enqueue, as TensorRT asks (the first enqueue after a shape change does work a capture cannot
hold) — and replayed with this context's shapes set to the captured ones.

numpy only at import: `tensorrt` and cuda-python (or torch) are imported inside functions.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tdsm_edge.errors import (
    BundleError,
    ConfigError,
    DeviceError,
    EngineIncompatibleError,
    InputError,
    MissingDependencyError,
    installed,
)

from .cuda_memory import device_memory, gpu_info
from .manifest import check_plan_compat
from .rebuild import DEFAULT_REBUILD

log = logging.getLogger(__name__)

TRT_MISSING = (
    "TensorRT (the `tensorrt` Python package, >= 10) is not installed, and building or running a "
    "plan needs it. On Jetson it ships with JetPack 6 (TensorRT 10.3: `apt install python3-libnvinfer`); "
    "on x86 install it from NVIDIA's index: `pip install tensorrt` (pulls from pypi.nvidia.com). "
    "Without TensorRT, serve the ONNX graph with onnxruntime instead."
)


def tensorrt_available() -> bool:
    """True when the `tensorrt` package can be imported (found, not imported)."""
    return installed("tensorrt")


def import_trt():
    """`import tensorrt` (>= 10), or MissingDependencyError that says where TensorRT comes from."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        raise MissingDependencyError(TRT_MISSING) from e
    if int(str(trt.__version__).split(".")[0]) < 10:
        raise MissingDependencyError(
            f"TensorRT {trt.__version__} is too old: this code uses the TensorRT 10 API "
            f"(JetPack 6 ships 10.3). {TRT_MISSING}"
        )
    return trt


def make_logger(trt):
    """A trt.ILogger that forwards to `logging` and keeps errors, for the exception messages."""

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
                log.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return _Logger()


@dataclass
class _Slot:
    """One thread's execution state over the shared engine."""

    context: object  # trt.IExecutionContext (not thread-safe)
    mem: object  # device-memory helper with its own stream
    ptrs: dict[str, int] = field(default_factory=dict)  # tensor name -> device address
    capacity: dict[str, int] = field(default_factory=dict)  # tensor name -> bytes allocated there
    shapes: dict[str, tuple] = field(default_factory=dict)  # every IO tensor's current shape
    tags: dict[str, object] = field(default_factory=dict)  # cached input -> tag of what its buffer holds
    graphs: dict[tuple, object] = field(default_factory=dict)  # input shapes -> executable CUDA graph


class TrtEngine:
    """One TensorRT plan, run from any number of threads (see the module docstring).

    Args:
        plan_path: the plan file (or give it to `load`).
        memory: "auto" | "cuda-python" | "torch" (see `cuda_memory.device_memory`; one helper per
            thread), a zero-argument factory of helpers, or one helper object shared by every thread.
        reserve_max: a thread's first activation allocates buffers for the profile's max shapes, so
            no later call reallocates (or invalidates its CUDA graphs).
    """

    def __init__(self, plan_path: str | Path | None = None, memory="auto", reserve_max: bool = False) -> None:
        self.plan_path = Path(plan_path) if plan_path is not None else None
        self.memory, self.reserve_max, self.record = memory, bool(reserve_max), None
        self.engine = self._runtime = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        self._local = threading.local()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ load (once, shared)
    def load(
        self,
        plan_path: str | Path | None = None,
        expected_record: dict | None = None,
        rebuild_cmd: str = DEFAULT_REBUILD,
        data: bytes | None = None,
    ) -> TrtEngine:
        """Deserialize the plan. With `expected_record` (its manifest entry), first check the file's
        sha256 and that this TensorRT version / GPU / compute capability match (EngineIncompatibleError
        naming `rebuild_cmd` otherwise). `data`: the plan's bytes, already read (a bundle reads them
        through its manifest); the path then only names it."""
        path = Path(plan_path) if plan_path is not None else self.plan_path
        if data is None and (path is None or not path.is_file()):
            raise BundleError(f"no TensorRT plan at {path}; build it with: {rebuild_cmd}")
        trt = import_trt()
        data = path.read_bytes() if data is None else data
        if expected_record is not None:
            digest = hashlib.sha256(data).hexdigest()
            if expected_record.get("sha256") not in (None, digest):
                raise BundleError(
                    f"{path} does not match its manifest (sha256 {digest[:12]}…, expected "
                    f"{expected_record['sha256'][:12]}…): the file is corrupt or was replaced. "
                    f"Rebuild it with: {rebuild_cmd}"
                )
            check_plan_compat(expected_record, trt.__version__, *gpu_info(), rebuild_cmd)
        logger = make_logger(trt)
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineIncompatibleError(
                f"TensorRT {trt.__version__} could not load {path}: "
                + ("; ".join(logger.errors) or "no reason given")
                + f". Rebuild it on this machine with: {rebuild_cmd}"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.plan_path, self.record = path, expected_record or self.record
        return self

    def profile(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shape of input `name` in the plan's optimization profile 0."""
        if self.engine is None:
            raise BundleError("TrtEngine.profile() needs a loaded plan: call load() first")
        return tuple(tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, 0))

    # ------------------------------------------------------------ per thread
    @property
    def context(self):
        """The calling thread's execution context (None before it activated)."""
        slot = getattr(self._local, "slot", None)
        return slot.context if slot is not None else None

    @property
    def shapes(self) -> dict[str, tuple]:
        """The calling thread's current IO shapes."""
        slot = getattr(self._local, "slot", None)
        return dict(slot.shapes) if slot is not None else {}

    def activate(self, reserve: bool | None = None) -> TrtEngine:
        """Create the calling thread's execution context and device-memory helper (once per thread).

        reserve: allocate buffers for the profile's max shapes now (default: `reserve_max`).
        """
        if self.engine is None:
            raise BundleError("TrtEngine.activate() needs a loaded plan: call load() first")
        if getattr(self._local, "slot", None) is not None:
            return self
        with self._lock:  # contexts are made one at a time; each is then used by its thread only
            context = self.engine.create_execution_context()
        if context is None:
            raise DeviceError(
                f"TensorRT could not create an execution context for {self.plan_path} (out of GPU memory?)"
            )
        slot = _Slot(context, self._new_memory())
        self._local.slot = slot
        with self._lock:
            self._slots.append(slot)
        if self.reserve_max if reserve is None else reserve:
            self.allocate({n: self.profile(n)[2] for n in self.inputs})
        return self

    def _new_memory(self):
        if isinstance(self.memory, str):
            return device_memory(self.memory)
        if callable(self.memory) and not hasattr(self.memory, "alloc"):
            return self.memory()
        return self.memory  # one helper object, shared (single-threaded use, tests)

    def _slot(self, what: str) -> _Slot:
        slot = getattr(self._local, "slot", None)
        if slot is None:
            raise BundleError(f"TrtEngine.{what}() needs this thread's execution context: call activate() first")
        return slot

    def allocate(self, shapes: dict[str, tuple]) -> TrtEngine:
        """Set this thread's input shapes; (re)allocate only the buffers too small for them."""
        slot = self._slot("allocate")
        if sorted(shapes) != sorted(self.inputs):
            raise InputError(f"allocate() needs a shape for exactly the inputs {self.inputs}, got {sorted(shapes)}")
        for name in self.inputs:
            shape = tuple(int(d) for d in shapes[name])
            if not slot.context.set_input_shape(name, shape):
                slot.shapes.clear()  # the context may hold some of the new shapes: set them all next time
                lo, _, hi = self.profile(name)
                raise InputError(
                    f"{name} shape {shape} is outside the plan's profile {lo} .. {hi}; rebuild with a larger profile"
                )
        for name in (*self.inputs, *self.outputs):
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(name))
            slot.shapes[name] = shape
            need = max(math.prod(shape) * self.dtypes[name].itemsize, 1)
            if slot.capacity.get(name, 0) < need:
                if name in slot.ptrs:
                    slot.mem.free(slot.ptrs.pop(name))
                self._drop_graphs(slot)  # they hold the old address
                slot.ptrs[name], slot.capacity[name] = slot.mem.alloc(need), need
                slot.tags.pop(name, None)
                if not slot.context.set_tensor_address(name, slot.ptrs[name]):  # False: TensorRT refused it
                    slot.mem.free(slot.ptrs.pop(name))  # never leave a buffer the context does not hold
                    slot.capacity.pop(name, None)
                    raise DeviceError(
                        f"TensorRT refused the device address of {name!r} for {self.plan_path} (a buffer "
                        "TensorRT cannot use, e.g. misaligned); reload the bundle, and report it if it persists"
                    )
        return self

    def infer(
        self, feed: dict[str, np.ndarray], cached: dict[str, object] | None = None, graph: bool = False
    ) -> dict[str, np.ndarray]:
        """Run once on the calling thread's context (activated on first use).

        Args:
            feed: every input name → an array of the plan's dtype for it.
            cached: input name → a tag naming its content (e.g. a class-set version): the array is
                uploaded only when this thread's buffer holds another tag.
            graph: run through a CUDA graph captured for these input shapes (captured on first use).
        Returns:
            output name → a new numpy array.
        """
        if sorted(feed) != sorted(self.inputs):
            raise InputError(f"infer() needs exactly the inputs {self.inputs}, got {sorted(feed)}")
        bad = {n: str(a.dtype) for n, a in feed.items() if np.asarray(a).dtype != self.dtypes[n]}
        if bad:
            raise InputError(
                f"input dtypes {bad} differ from the plan's "
                f"{ {n: str(self.dtypes[n]) for n in bad} }; cast them to what the graph declares"
            )
        slot = getattr(self._local, "slot", None) or self.activate()._local.slot
        arrays = {n: np.ascontiguousarray(a) for n, a in feed.items()}
        if any(slot.shapes.get(n) != a.shape for n, a in arrays.items()):
            self.allocate({n: a.shape for n, a in arrays.items()})
        cached = cached or {}
        for name, arr in arrays.items():
            tag = cached.get(name)
            if tag is not None and slot.tags.get(name) == tag:
                continue  # this thread's buffer already holds it
            slot.mem.to_device(slot.ptrs[name], arr)
            slot.tags[name] = tag
        if graph:
            self._replay(slot)
        else:
            self._enqueue(slot)
        out = {n: np.empty(slot.shapes[n], self.dtypes[n]) for n in self.outputs}
        for name, arr in out.items():
            slot.mem.to_host(arr, slot.ptrs[name])
        slot.mem.sync()
        return out

    def _enqueue(self, slot: _Slot) -> None:
        if not slot.context.execute_async_v3(slot.mem.stream):
            raise DeviceError(f"TensorRT execution of {self.plan_path} failed (see the TensorRT log above)")

    def _replay(self, slot: _Slot) -> None:
        """Launch the CUDA graph of the current input shapes, capturing it first if there is none."""
        if not hasattr(slot.mem, "capture"):
            raise ConfigError(
                f"CUDA graphs need cuda-python device memory; {type(slot.mem).__name__} cannot capture "
                "them (pip install cuda-python, or run without cuda_graph)"
            )
        key = tuple(slot.shapes[n] for n in self.inputs)
        exe = slot.graphs.get(key)
        if exe is None:
            self._enqueue(slot)  # TensorRT: one enqueue after a shape change before capturing
            exe = slot.mem.capture(lambda: self._enqueue(slot))
            slot.graphs[key] = exe
            log.debug("captured a CUDA graph of %s for input shapes %s", self.plan_path, key)
        slot.mem.launch(exe)

    def _drop_graphs(self, slot: _Slot) -> None:
        for exe in slot.graphs.values():
            slot.mem.destroy_graph(exe)
        slot.graphs.clear()

    def close(self) -> None:
        """Free every thread's graphs, buffers and stream; drop the contexts and the engine."""
        with self._lock:
            slots, self._slots = self._slots, []
        for slot in slots:
            self._drop_graphs(slot)
            for ptr in slot.ptrs.values():
                slot.mem.free(ptr)
            slot.ptrs.clear()
            slot.mem.close()
            slot.context = None
        self._local = threading.local()
        self.engine = self._runtime = None

    def __enter__(self) -> TrtEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
