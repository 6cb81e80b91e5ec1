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
run and gives it back; when all are busy it waits. A single-profile plan (the default) therefore runs
one call at a time, from any number of threads. Each context has its own stream, buffers and tags
(inputs named in `cached` are uploaded only when the tag its buffer holds changes: a scorer's class
tables, once per class-set version and context). Memory: the weights are shared; each context holds
its own activation memory and IO buffers. Where the device cannot hold another context, the pool
stops growing (a WARNING) and calls wait for the contexts it has, until the plan is reloaded; one
memory helper object shared by every context makes the pool one context (one stream).

Reload (`load` on a loaded engine): the new plan is read and checked first (a refused one leaves the
old plan serving), then swapped in at once; calls running on the old plan finish there, calls
waiting for a context start over on the new one, and no context of the old plan serves the new.

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
    """A new execution context does not fit on the device (create_execution_context returned None)."""


@dataclass(eq=False)
class _Pool:
    """One loaded plan and its execution contexts. A reload makes a new pool; the old one is closed, and
    a context made for it never serves the new one."""

    engine: object  # trt.ICudaEngine
    runtime: object  # trt.Runtime (kept alive with the engine)
    inputs: list[str]
    outputs: list[str]
    dtypes: dict[str, np.dtype]
    profiles: int  # optimization profiles in the plan = contexts that may run at once
    limit: int  # contexts allowed: `profiles`, fewer once the device could not hold another, 1 for a shared helper
    slots: list = field(default_factory=list)  # every context made (context i owns profile i)
    free: list = field(default_factory=list)  # those no call holds now
    making: set = field(default_factory=set)  # profiles of the contexts being made now
    closed: bool = False


@dataclass(eq=False)
class _Slot:
    """One execution context of a pool, used by one call at a time."""

    pool: _Pool
    context: object  # trt.IExecutionContext (not thread-safe)
    mem: object  # device-memory helper with its own stream
    profile: int  # the optimization profile this context owns (no other context of the engine uses it)
    owns_mem: bool = True  # False: a helper the caller passed in (buffers freed, the helper never closed here)
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
            context), a zero-argument factory of helpers (a class or function), or one helper object,
            which every context then shares: the pool is then one context, so that calls never share a stream.
        reserve_max: a new context allocates buffers for the profile's max shapes, so no later call
            reallocates (best effort: where they do not fit, buffers are sized per call instead).
    """

    def __init__(self, plan_path: str | Path | None = None, memory="auto", reserve_max: bool = False) -> None:
        self.plan_path = Path(plan_path) if plan_path is not None else None
        self.memory, self.reserve_max, self.record = memory, bool(reserve_max), None
        self._pool: _Pool | None = None  # the loaded plan (None before load and after close)
        self._last: _Pool | None = None  # the last plan loaded: its IO names and dtypes stay readable after close
        self._cond = threading.Condition()  # guards every pool's bookkeeping and the swap of `_pool`

    # ------------------------------------------------------------ what is loaded
    engine = property(lambda self: self._pool.engine if self._pool else None, doc="the trt.ICudaEngine, or None")
    inputs = property(lambda self: list(self._last.inputs) if self._last else [], doc="input tensor names")
    outputs = property(lambda self: list(self._last.outputs) if self._last else [], doc="output tensor names")
    dtypes = property(lambda self: dict(self._last.dtypes) if self._last else {}, doc="tensor name -> numpy dtype")
    profiles = property(lambda self: self._last.profiles if self._last else 1, doc="optimization profiles")

    @property
    def contexts(self) -> int:
        """Execution contexts of the loaded plan made so far (at most `profiles`)."""
        return len(self._pool.slots) if self._pool else 0

    @property
    def captures(self) -> int:
        """CUDA graphs captured so far on the loaded plan's contexts."""
        return sum(s.captures for s in self._pool.slots) if self._pool else 0

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
        through its manifest); the path then only names it. A reload replaces the loaded plan only once
        the new one is fully read; a refused one leaves the loaded plan serving."""
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
        if engine is None:
            raise EngineIncompatibleError(
                f"TensorRT {trt.__version__} could not load {path}: "
                + ("; ".join(logger.errors) or "no reason given")
                + f". Rebuild it on this machine with: {rebuild_cmd}"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        try:
            dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        except TypeError as e:  # bfloat16 / fp8 IO: no numpy type
            raise BundleError(
                f"{path} has an input or output of a type numpy cannot hold ({e}); rebuild it with: {rebuild_cmd}"
            ) from e
        profiles = max(1, int(getattr(engine, "num_optimization_profiles", 1)))
        shared = not self._makes_memory()
        pool = _Pool(
            engine, runtime, inputs, [n for n in names if n not in inputs], dtypes, profiles, 1 if shared else profiles
        )
        with self._cond:  # one step: later calls see the new pool, the old one's idle contexts are freed
            old, self._pool, self._last = self._pool, pool, pool
            self.plan_path, self.record = path, expected_record or self.record
            idle = self._retire(old)
            self._cond.notify_all()
        for slot in idle:
            self._release(slot)
        return self

    def profile(self, name: str, index: int = 0) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shape of input `name` in the plan's optimization profile `index` (all are alike)."""
        pool = self._pool
        if pool is None:
            raise BundleError("TrtEngine.profile() needs a loaded plan: call load() first")
        return _profile(pool, name, index)

    # ------------------------------------------------------------ the pool of contexts
    def activate(self, reserve: bool | None = None) -> TrtEngine:
        """Make sure one execution context is ready (the first of the pool; more are made on demand).

        reserve: allocate its buffers for the profile's max shapes now (default: `reserve_max`).
        """
        with self._use(reserve):
            pass
        return self

    @contextmanager
    def _use(self, reserve: bool | None = None, pool: _Pool | None = None):
        """Hold a free context of the loaded plan (or of `pool`, which must still be the loaded one) for the
        block; given back after it, whatever happens."""
        slot = self._acquire(reserve, pool)
        try:
            yield slot
        finally:
            with self._cond:
                kept = not slot.pool.closed
                if kept:
                    slot.pool.free.append(slot)
                self._cond.notify_all()
            if not kept:  # its plan was closed or replaced meanwhile
                self._release(slot)

    def _acquire(self, reserve: bool | None, want: _Pool | None = None) -> _Slot:
        """A free context: an idle one, else a new one on an unused profile while the pool has room, else wait
        until a call gives one back. `want`: the pool the caller checked its inputs against (`_Reloaded`
        when another plan was loaded meanwhile; without it, a context of whatever plan is loaded)."""
        while True:
            with self._cond:
                while True:
                    pool = self._pool
                    if pool is None:
                        raise BundleError("this TensorRT plan is not loaded (or was closed): load() it first")
                    if want is not None and pool is not want:
                        raise _Reloaded
                    if pool.free or len(pool.slots) + len(pool.making) < pool.limit:
                        break
                    self._cond.wait()
                if pool.free:
                    return pool.free.pop()  # the last one given back: its class tables are likeliest current
                index = min(set(range(pool.profiles)) - {s.profile for s in pool.slots} - pool.making)
                pool.making.add(index)
            slot = no_room = None
            try:
                slot = self._new_slot(pool, index, reserve)
            except _NoContext as e:
                no_room = e
            finally:  # made, failed or interrupted: the profile is no longer being made
                with self._cond:
                    pool.making.discard(index)
                    closed, have = pool.closed, len(pool.slots) + len(pool.making)
                    if slot is not None and not closed:
                        pool.slots.append(slot)
                    elif no_room is not None and have and not closed:
                        pool.limit = min(pool.limit, have)  # calls wait for the contexts there are
                    self._cond.notify_all()
            if no_room is not None:
                if closed:
                    raise BundleError("this TensorRT plan was closed while a call was starting")
                if not have:
                    raise DeviceError(
                        f"{no_room} for {self.plan_path}; free GPU memory, or use a smaller batch profile"
                    )
                log.warning(
                    "%s for %s: at most %d calls run at once (the plan has %d optimization profiles)",
                    no_room,
                    self.plan_path,
                    have,
                    pool.profiles,
                )
                continue
            if closed:  # closed (or reloaded) while this context was being made
                self._release(slot)
                if self._pool is None:
                    raise BundleError("this TensorRT plan was closed while a call was starting")
                if want is not None:
                    raise _Reloaded
                continue  # a context of the plan loaded now
            return slot

    def _new_slot(self, pool: _Pool, index: int, reserve: bool | None) -> _Slot:
        """A new execution context of `pool`'s engine on optimization profile `index`, with its own stream.
        _NoContext when the device cannot hold it."""
        context = pool.engine.create_execution_context()
        if context is None:
            raise _NoContext(f"TensorRT could not create execution context {index + 1} (out of GPU memory?)")
        mem, owned = self._new_memory()
        slot = _Slot(pool, context, mem, index, owns_mem=owned)
        del context  # the slot holds it: released with the slot, so its profile is freed with it
        try:
            if pool.profiles > 1:
                if not slot.context.set_optimization_profile_async(index, slot.mem.stream):
                    raise DeviceError(
                        f"TensorRT refused optimization profile {index} of {self.plan_path} for a new execution "
                        f"context (the plan has {pool.profiles}); reload the bundle, and report it if it persists"
                    )
                slot.mem.sync()
        except BaseException:
            self._release(slot)
            raise
        if self.reserve_max if reserve is None else reserve:
            try:
                self._allocate(slot, {n: _profile(pool, n, index)[2] for n in pool.inputs})
            except DeviceError as e:  # best effort: buffers are then sized per call
                self._free_buffers(slot)
                log.warning(
                    "%s: buffers for the profile's max shapes do not fit (%s); sizing them per call", self.plan_path, e
                )
            except BaseException:
                self._release(slot)
                raise
        log.debug("execution context on profile %d of %d for %s", index, pool.profiles, self.plan_path)
        return slot

    def _makes_memory(self) -> bool:
        """True when each context gets its own helper (a kind name or a factory), False for one shared object."""
        return isinstance(self.memory, (str, type)) or (callable(self.memory) and not hasattr(self.memory, "alloc"))

    def _new_memory(self) -> tuple[object, bool]:
        """(device-memory helper, whether this engine owns it and closes it with its context)."""
        if isinstance(self.memory, str):
            return device_memory(self.memory), True
        if self._makes_memory():
            return self.memory(), True
        return self.memory, False  # one helper object the caller passed in (the pool is then one context)

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
        pool = slot.pool
        if sorted(shapes) != sorted(pool.inputs):
            raise InputError(f"allocate() needs a shape for exactly the inputs {pool.inputs}, got {sorted(shapes)}")
        new = {name: tuple(int(d) for d in shapes[name]) for name in pool.inputs}
        if any(slot.shapes.get(n) != s for n, s in new.items()):
            self._drop_graph(slot)  # TensorRT: a graph is valid only for the shapes it was captured with
        for name, shape in new.items():
            if not slot.context.set_input_shape(name, shape):
                lo, _, hi = _profile(pool, name, slot.profile)
                raise InputError(
                    f"{name} shape {shape} is outside the plan's profile {lo} .. {hi}; rebuild with a larger profile"
                )
        for name in (*pool.inputs, *pool.outputs):
            shape = tuple(int(d) for d in slot.context.get_tensor_shape(name))
            slot.shapes[name] = shape
            need = max(math.prod(shape) * pool.dtypes[name].itemsize, 1)
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
        arrays = {n: np.ascontiguousarray(a) for n, a in feed.items()}
        cached = cached or {}
        while True:
            pool = self._pool
            if pool is None:
                raise BundleError("this TensorRT plan is not loaded (or was closed): load() it first")
            self._check_feed(pool, arrays)  # against the plan the call will run on
            try:
                with self._use(pool=pool) as slot:
                    return self._run(slot, arrays, cached, graph)
            except _Reloaded:
                continue  # another plan was loaded while this call waited: check the feed against it

    @staticmethod
    def _check_feed(pool: _Pool, arrays: dict[str, np.ndarray]) -> None:
        if sorted(arrays) != sorted(pool.inputs):
            raise InputError(f"infer() needs exactly the inputs {pool.inputs}, got {sorted(arrays)}")
        bad = {n: str(a.dtype) for n, a in arrays.items() if a.dtype != pool.dtypes[n]}
        if bad:
            raise InputError(
                f"input dtypes {bad} differ from the plan's "
                f"{ {n: str(pool.dtypes[n]) for n in bad} }; cast them to what the graph declares"
            )

    def _run(self, slot: _Slot, arrays: dict[str, np.ndarray], cached: dict, graph: bool) -> dict[str, np.ndarray]:
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
        out = {n: np.empty(slot.shapes[n], slot.pool.dtypes[n]) for n in slot.pool.outputs}
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
                [slot.shapes[n] for n in slot.pool.inputs],
                slot.profile,
            )
        slot.mem.launch(slot.graph)

    def _drop_graph(self, slot: _Slot) -> None:
        if slot.graph is not None:
            graph, slot.graph = slot.graph, None
            slot.mem.destroy_graph(graph)

    def _free_buffers(self, slot: _Slot) -> None:
        self._drop_graph(slot)
        while slot.ptrs:
            slot.mem.free(slot.ptrs.popitem()[1])
        slot.capacity.clear()
        slot.shapes.clear()
        slot.tags.clear()

    def _release(self, slot: _Slot) -> None:
        self._free_buffers(slot)
        if slot.owns_mem:
            slot.mem.close()
        slot.context = None  # the last reference: TensorRT destroys the context and frees its profile

    def _retire(self, pool: _Pool | None) -> list[_Slot]:
        """Mark `pool` closed (under the lock) and return its idle contexts to release; busy ones are released
        when their calls return."""
        if pool is None:
            return []
        pool.closed = True
        idle, pool.free = pool.free, []
        busy = len(pool.slots) - len(idle)
        pool.slots = []
        if busy:
            log.debug(
                "%s: %d call(s) still running on the replaced plan; their contexts go when they return",
                self.plan_path,
                busy,
            )
        return idle

    def close(self) -> None:
        """Free every idle context's graph, buffers and stream, and drop the engine. A call still running
        keeps its context until it returns (then that context is freed); calls waiting for one fail."""
        with self._cond:
            old, self._pool = self._pool, None
            idle = self._retire(old)
            self._cond.notify_all()
        for slot in idle:
            self._release(slot)

    def __enter__(self) -> TrtEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Reloaded(Exception):
    """Another plan was loaded while a call waited for a context of the previous one: the call starts over."""


def _profile(pool: _Pool, name: str, index: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    return tuple(tuple(int(d) for d in s) for s in pool.engine.get_tensor_profile_shape(name, index))
