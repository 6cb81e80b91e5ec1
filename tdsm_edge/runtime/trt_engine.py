"""Running a TensorRT plan (TensorRT 10.x API): load / activate / allocate / infer over a pool of contexts.

    eng = TrtEngine("engines/demo/scorer_fp16.trt10.3.0.plan")
    eng.load(expected_record=plan_record, rebuild_cmd="python -m export.build_engine ...")  # checked first
    out = eng.infer({"z": z, **tables})["errors"]          # numpy in, numpy out; contexts made on demand

The stages follow NVIDIA's TensorRT demo/Diffusion `Engine` (the builder half, `build`, lives in
`export/tensorrt_build.py`, which subclasses this):
    load      plan → ONE deserialized engine (after the manifest record's sha256 / TensorRT / GPU checks)
    activate  one execution context of the pool + its device-memory helper (one CUDA stream)
    allocate  input shapes → that context's device buffers; buffers only grow, so addresses stay put
    infer     numpy → device → execute_async_v3 (or a CUDA graph replay) → numpy

Threads, by TensorRT's contract ("each execution context in concurrent use must use a separate
optimization profile" on a dynamic-shape engine, and a context is not thread-safe): a plan built with
P identical optimization profiles (`build_plan(..., profiles=P)`) gets a pool of at most P contexts,
context i on profile i (set_optimization_profile_async). A call takes a free context for its whole
run and gives it back; when all P are busy it waits for one. A single-profile plan (the default)
therefore runs one call at a time, from any number of threads. Each context has its own stream,
buffers and tags (inputs named in `cached` are uploaded only when the tag its buffer holds changes: a
scorer's class tables, once per class-set version and context). Memory: the weights are shared; each
context holds its own activation memory and IO buffers.

CUDA graphs (`graph=True`): one graph per context, valid only while that context keeps the input
shapes it was captured with. A shape change drops the context's graph (TensorRT's rule: re-capture
after a shape change; a graph replayed after the context ran other shapes is undefined); the next
call enqueues once with the new shapes — the first enqueue after a shape change does work a capture
cannot hold — then captures. Callers keep one shape per call to benefit (trt_backend.py pads every
chunk of a call to one shape).

numpy only at import: `tensorrt` and cuda-python (or torch) are imported inside functions.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import threading
from contextlib import contextmanager
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


class _NoContext(Exception):
    """create_execution_context returned None (no device memory for another context)."""


@dataclass
class _Slot:
    """One execution context of the pool, used by one call at a time."""

    context: object  # trt.IExecutionContext (not thread-safe)
    mem: object  # device-memory helper with its own stream
    profile: int  # the optimization profile this context owns (no other context of the engine uses it)
    owns_mem: bool = True  # False: a helper the caller passed in (freed buffers, but never closed here)
    ptrs: dict[str, int] = field(default_factory=dict)  # tensor name -> device address
    capacity: dict[str, int] = field(default_factory=dict)  # tensor name -> bytes allocated there
    shapes: dict[str, tuple] = field(default_factory=dict)  # every IO tensor's current shape
    tags: dict[str, object] = field(default_factory=dict)  # cached input -> tag of what its buffer holds
    graph: object = None  # the executable CUDA graph of the current input shapes (dropped when they change)
    captures: int = 0  # CUDA graphs captured on this context so far


class TrtEngine:
    """One TensorRT plan, run from any number of threads (see the module docstring).

    Args:
        plan_path: the plan file (or give it to `load`).
        memory: "auto" | "cuda-python" | "torch" (see `cuda_memory.device_memory`; one helper per
            context), a zero-argument factory of helpers, or one helper object shared by every context.
        reserve_max: a context's first activation allocates buffers for the profile's max shapes, so
            no later call reallocates.
    """

    def __init__(self, plan_path: str | Path | None = None, memory="auto", reserve_max: bool = False) -> None:
        self.plan_path = Path(plan_path) if plan_path is not None else None
        self.memory, self.reserve_max, self.record = memory, bool(reserve_max), None
        self.engine = self._runtime = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, np.dtype] = {}
        self.profiles = 1  # optimization profiles in the plan = contexts that may run at once
        self._slots: list[_Slot] = []  # every context made (context i owns profile i)
        self._free: list[_Slot] = []  # those no call holds now
        self._making: set[int] = set()  # profiles of the contexts being made now
        self._limit: int | None = None  # contexts that fit on the device, once one could not be made
        self._generation = 0  # bumped by close(): a context made for an older engine never joins the pool
        self._cond = threading.Condition()

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
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:  # a refused reload keeps the engine that was loaded
            raise EngineIncompatibleError(
                f"TensorRT {trt.__version__} could not load {path}: "
                + ("; ".join(logger.errors) or "no reason given")
                + f". Rebuild it on this machine with: {rebuild_cmd}"
            )
        if self.engine is not None:
            self.close()  # a reload: the old engine's contexts must not run the new one's calls
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        with self._cond:
            self.inputs, self.outputs = inputs, [n for n in names if n not in inputs]
            self.dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
            self.profiles = max(1, int(getattr(engine, "num_optimization_profiles", 1)))
            self._limit = None
            self.plan_path, self.record = path, expected_record or self.record
            self._runtime, self.engine = runtime, engine
        return self

    def profile(self, name: str, index: int = 0) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shape of input `name` in the plan's optimization profile `index` (all are alike)."""
        if self.engine is None:
            raise BundleError("TrtEngine.profile() needs a loaded plan: call load() first")
        return tuple(tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(name, index))

    # ------------------------------------------------------------ the pool of contexts
    @property
    def contexts(self) -> int:
        """Execution contexts made so far (at most `profiles`)."""
        return len(self._slots)

    @property
    def captures(self) -> int:
        """CUDA graphs captured so far, over every context."""
        return sum(s.captures for s in self._slots)

    def activate(self, reserve: bool | None = None) -> TrtEngine:
        """Make sure one execution context is ready (the first of the pool; more are made on demand).

        reserve: allocate its buffers for the profile's max shapes now (default: `reserve_max`).
        """
        with self._use(reserve):
            pass
        return self

    @contextmanager
    def _use(self, reserve: bool | None = None):
        """Hold a free context for the block (see `_acquire`); given back after it, whatever happens."""
        slot, generation = self._acquire(reserve)
        try:
            yield slot
        finally:
            with self._cond:
                kept = generation == self._generation  # False: close() ran meanwhile
                if kept:
                    self._free.append(slot)
                self._cond.notify()
            if not kept:
                self._release(slot)

    def _acquire(self, reserve: bool | None) -> tuple[_Slot, int]:
        """A free context and the pool generation it belongs to: an idle one, else a new one on an unused
        profile while fewer than `profiles` exist (and fit on the device), else wait for one to come back."""
        while True:
            with self._cond:
                while True:
                    if self.engine is None:
                        raise BundleError("this TensorRT plan is not loaded (or was closed): load() it first")
                    room = self.profiles if self._limit is None else self._limit
                    if self._free or len(self._slots) + len(self._making) < room:
                        break
                    self._cond.wait()
                generation = self._generation
                if self._free:
                    return self._free.pop(), generation  # the last one given back: its tables are likeliest current
                taken = {s.profile for s in self._slots} | self._making
                index = min(set(range(self.profiles)) - taken)  # a profile no other context uses
                self._making.add(index)
                engine = self.engine
            try:
                slot = self._new_slot(engine, index, reserve)
            except _NoContext:
                with self._cond:
                    current = generation == self._generation
                    if current:
                        self._making.discard(index)
                    have = len(self._slots) + len(self._making) if current else 0
                    if have:  # some contexts exist: calls wait for them instead of failing
                        self._limit = have
                        self._cond.notify_all()
                if have:
                    log.warning(
                        "TensorRT could not make execution context %d of %d for %s (out of GPU memory?): "
                        "at most %d calls run at once",
                        index + 1,
                        self.profiles,
                        self.plan_path,
                        have,
                    )
                    continue
                raise DeviceError(
                    f"TensorRT could not create an execution context for {self.plan_path} (out of GPU memory?)"
                ) from None
            except BaseException:
                with self._cond:
                    if generation == self._generation:
                        self._making.discard(index)
                    self._cond.notify_all()
                raise
            with self._cond:
                current = generation == self._generation
                if current:
                    self._making.discard(index)
                    self._slots.append(slot)
                self._cond.notify_all()
            if not current:  # closed (or reloaded) while this context was being made
                self._release(slot)
                raise BundleError("this TensorRT plan was closed while a call was starting")
            return slot, generation

    def _new_slot(self, engine, index: int, reserve: bool | None) -> _Slot:
        """A new execution context of `engine` on optimization profile `index`, with its own stream."""
        context = engine.create_execution_context()
        if context is None:
            raise _NoContext
        mem, owned = self._new_memory()
        slot = _Slot(context, mem, index, owns_mem=owned)
        if self.profiles > 1:
            if not context.set_optimization_profile_async(index, slot.mem.stream):
                self._release(slot)
                raise DeviceError(
                    f"TensorRT refused optimization profile {index} of {self.plan_path} for a new execution context "
                    f"(the plan has {self.profiles}); reload the bundle, and report it if it persists"
                )
            slot.mem.sync()
        if self.reserve_max if reserve is None else reserve:
            try:
                self._allocate(slot, {n: self.profile(n, index)[2] for n in self.inputs})
            except Exception:
                self._release(slot)
                raise
        log.debug("execution context on profile %d of %d for %s", index, self.profiles, self.plan_path)
        return slot

    def _new_memory(self) -> tuple[object, bool]:
        """(device-memory helper, whether this engine owns it and closes it with its context)."""
        if isinstance(self.memory, str):
            return device_memory(self.memory), True
        if callable(self.memory) and not hasattr(self.memory, "alloc"):
            return self.memory(), True
        return self.memory, False  # one helper object the caller passed in, shared by every context

    def allocate(self, shapes: dict[str, tuple]) -> TrtEngine:
        """Set these input shapes on a free context and allocate the buffers too small for them (at the
        first call: the one context `activate` made, which a single-threaded caller keeps using)."""
        with self._use() as slot:
            self._allocate(slot, shapes)
        return self

    def _allocate(self, slot: _Slot, shapes: dict[str, tuple]) -> None:
        try:
            self._set_shapes(slot, shapes)
        except BaseException:
            slot.shapes.clear()  # whatever failed (a refused shape, an allocation, an address): set all next time
            raise

    def _set_shapes(self, slot: _Slot, shapes: dict[str, tuple]) -> None:
        if sorted(shapes) != sorted(self.inputs):
            raise InputError(f"allocate() needs a shape for exactly the inputs {self.inputs}, got {sorted(shapes)}")
        new = {name: tuple(int(d) for d in shapes[name]) for name in self.inputs}
        if any(slot.shapes.get(n) != s for n, s in new.items()):
            self._drop_graph(slot)  # TensorRT: a graph is valid only for the shapes it was captured with
        for name, shape in new.items():
            if not slot.context.set_input_shape(name, shape):
                lo, _, hi = self.profile(name, slot.profile)
                raise InputError(
                    f"{name} shape {shape} is outside the plan's profile {lo} .. {hi}; rebuild with a larger profile"
                )
        for name in (*self.inputs, *self.outputs):
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(name))
            slot.shapes[name] = shape
            need = max(math.prod(shape) * self.dtypes[name].itemsize, 1)
            if slot.capacity.get(name, 0) < need:
                if name in slot.ptrs:
                    slot.capacity.pop(name, None)
                    slot.mem.free(slot.ptrs.pop(name))
                slot.ptrs[name], slot.capacity[name] = slot.mem.alloc(need), need
                slot.tags.pop(name, None)
                if not slot.context.set_tensor_address(name, slot.ptrs[name]):  # False: TensorRT refused it
                    slot.mem.free(slot.ptrs.pop(name))  # never leave a buffer the context does not hold
                    slot.capacity.pop(name, None)
                    raise DeviceError(
                        f"TensorRT refused the device address of {name!r} for {self.plan_path} (a buffer "
                        "TensorRT cannot use, e.g. misaligned); reload the bundle, and report it if it persists"
                    )

    def infer(
        self, feed: dict[str, np.ndarray], cached: dict[str, object] | None = None, graph: bool = False
    ) -> dict[str, np.ndarray]:
        """Run once on a free context of the pool (made on first use; waits while all are busy).

        Args:
            feed: every input name → an array of the plan's dtype for it.
            cached: input name → a tag naming its content (e.g. a class-set version): the array is
                uploaded only when the context's buffer holds another tag.
            graph: run through the context's CUDA graph for these input shapes (captured when there is none).
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
        arrays = {n: np.ascontiguousarray(a) for n, a in feed.items()}
        cached = cached or {}
        with self._use() as slot:
            if any(slot.shapes.get(n) != a.shape for n, a in arrays.items()):
                self._allocate(slot, {n: a.shape for n, a in arrays.items()})
            for name, arr in arrays.items():
                tag = cached.get(name)
                if tag is not None and slot.tags.get(name) == tag:
                    continue  # this context's buffer already holds it
                slot.tags[name] = None  # unknown until the copy below has run
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
        """Launch the context's CUDA graph, capturing it first if its shapes changed since (or never captured)."""
        if not hasattr(slot.mem, "capture"):
            raise ConfigError(
                f"CUDA graphs need cuda-python device memory; {type(slot.mem).__name__} cannot capture "
                "them (pip install cuda-python, or run without cuda_graph)"
            )
        if slot.graph is None:
            self._enqueue(slot)  # TensorRT: one enqueue after a shape change before capturing
            slot.graph = slot.mem.capture(lambda: self._enqueue(slot))
            slot.captures += 1
            log.debug(
                "captured a CUDA graph of %s for input shapes %s (context %d)",
                self.plan_path,
                [slot.shapes[n] for n in self.inputs],
                slot.profile,
            )
        slot.mem.launch(slot.graph)

    def _drop_graph(self, slot: _Slot) -> None:
        if slot.graph is not None:
            slot.mem.destroy_graph(slot.graph)
            slot.graph = None

    def _release(self, slot: _Slot) -> None:
        self._drop_graph(slot)
        for ptr in slot.ptrs.values():
            slot.mem.free(ptr)
        slot.ptrs.clear()
        slot.capacity.clear()
        if slot.owns_mem:
            slot.mem.close()
        slot.context = None

    def close(self) -> None:
        """Free every idle context's graph, buffers and stream, and drop the engine. A call still running
        keeps its context until it returns (then that context is freed); calls waiting for one fail."""
        with self._cond:
            busy = [s for s in self._slots if not any(s is f for f in self._free)]
            idle, self._slots, self._free, self._making = self._free, [], [], set()
            self.engine = self._runtime = None
            self._generation += 1
            self._cond.notify_all()
        if busy:
            log.debug(
                "closing %s with %d call(s) running: their contexts are freed when they return",
                self.plan_path,
                len(busy),
            )
        for slot in idle:
            self._release(slot)

    def __enter__(self) -> TrtEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
