"""Stand-ins for `tensorrt` (10.x API) and cuda-python's runtime module, for tests on machines without either.

They check our calls and bookkeeping, not TensorRT: a fake "plan" is json naming an ONNX graph and an
optimization profile, and the fake engine runs that graph with onnxruntime. The fake CUDA runtime
keeps "device" memory in numpy buffers (a device address is the buffer's real address) and behaves
like CUDA where our code could get it wrong:
    - work on a stream runs at cudaStreamSynchronize, in order (reading results before the sync
      gives stale data);
    - copies are bounds-checked against the allocation they touch (a wrong size or dtype fails);
    - during stream capture, work is recorded instead of run; a host<->device copy there is an
      error (pageable memory cannot be captured); a launched graph replays the recorded work;
    - a captured enqueue replayed after its context's input shapes changed is an error, even when they
      were set back since (a graph is valid only for the shapes it was captured with: TensorRT asks
      for a re-capture after a shape change);
    - two execution contexts of one engine running on the same optimization profile is an error
      (TensorRT: contexts in concurrent use need separate profiles). Stricter than TensorRT, which
      objects only when the uses overlap in time: the fake cannot see that, so it refuses any sharing.
      A context that is gone (no reference left: TensorRT destroys it) frees its profile.
Every call worth asserting on is counted in `calls` / recorded in `log`.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import itertools
import json
import threading
import types
import weakref
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np

CUDA_ALIGN = 256  # cudaMalloc's alignment guarantee; TensorRT requires it of tensor addresses


# ---------------------------------------------------------------- cuda-python's runtime module
class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorStreamCaptureUnsupported = 900


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class cudaStreamCaptureMode(enum.IntEnum):
    cudaStreamCaptureModeGlobal = 0
    cudaStreamCaptureModeThreadLocal = 1
    cudaStreamCaptureModeRelaxed = 2


class _Stream:
    def __init__(self, handle: int) -> None:
        self.handle, self.queue, self.capture, self.destroyed = handle, [], None, False

    def __int__(self) -> int:
        return self.handle


class _Graph:
    def __init__(self, ops: list) -> None:
        self.ops, self.destroyed = list(ops), False


def fake_cudart(
    name: str = "cuda.bindings.runtime", devices: int | str = 1, gpu_name: str = "NVIDIA Fake GPU", capability=(8, 7)
) -> types.ModuleType:
    """A module with the cuda-python runtime calls cuda_memory.py makes, over numpy "device" memory.

    devices: how many GPUs it reports; 0 → cudaErrorNoDevice; "no-driver" → cudaGetDeviceCount raises;
        "old-driver" → cudaErrorInsufficientDriver (a cuda-python newer than the CUDA 12.2 driver);
        "no-driver-13" → cudaErrorInsufficientDriver with no driver (driver version 0), as cuda-bindings 13 says.
    """
    rt = types.ModuleType(name)
    rt.__spec__ = importlib.machinery.ModuleSpec(name, None)
    rt.cudaError_t, rt.cudaMemcpyKind, rt.cudaStreamCaptureMode = cudaError_t, cudaMemcpyKind, cudaStreamCaptureMode
    rt.cudaStreamNonBlocking = 1
    ok = cudaError_t.cudaSuccess
    lock = threading.RLock()
    buffers: dict[int, np.ndarray] = {}  # device address -> its bytes
    streams: dict[int, _Stream] = {}
    handles = itertools.count(0x5000)
    rt.buffers, rt.streams, rt.calls, rt.log = buffers, streams, Counter(), []

    def count(what):
        with lock:
            rt.calls[what] += 1

    def device(ptr: int, nbytes: int) -> np.ndarray:
        """The `nbytes` of device memory at `ptr` (an allocation's start), bounds-checked."""
        with lock:
            buf = buffers.get(int(ptr))
        assert buf is not None, f"address {ptr:#x} is not the start of a live device allocation"
        assert nbytes <= buf.nbytes, f"{nbytes} bytes at {ptr:#x} overrun its {buf.nbytes}-byte allocation"
        return buf[:nbytes]

    def stream_of(s) -> _Stream:
        with lock:
            st = streams.get(int(s))
        assert st is not None and not st.destroyed, f"stream {s!r} was not created (or was destroyed)"
        return st

    def submit(s, op, what: str):
        st = stream_of(s)
        if st.capture is not None:
            if what.startswith("memcpy"):
                return cudaError_t.cudaErrorStreamCaptureUnsupported  # pageable host memory in a capture
            st.capture.append(op)
        else:
            st.queue.append(op)
        return ok

    rt.device, rt.submit, rt.stream_of = device, submit, stream_of

    def cudaGetDeviceCount():
        count("cudaGetDeviceCount")
        if devices == "no-driver":  # what cuda-python 12.2 does without libcuda
            raise RuntimeError("Failed to dlopen libcuda.so.1")
        if devices in ("old-driver", "no-driver-13"):  # cuda-python 13 on a CUDA 12 driver, or on none at all
            return cudaError_t.cudaErrorInsufficientDriver, 0
        return (ok, devices) if devices else (cudaError_t.cudaErrorNoDevice, 0)

    def cudaDriverGetVersion():
        return ok, {"old-driver": 12020, "no-driver-13": 0}.get(devices, 13000)

    def cudaGetDevice():
        if devices in ("old-driver", "no-driver-13"):
            return cudaError_t.cudaErrorInsufficientDriver, 0
        return (ok, 0) if devices and devices != "no-driver" else (cudaError_t.cudaErrorNoDevice, 0)

    def cudaGetDeviceProperties(index):
        name = gpu_name.encode() + b"\x00" * 8  # a fixed-size char array, as cuda-python gives it
        return ok, SimpleNamespace(name=name, major=capability[0], minor=capability[1])

    def cudaStreamCreateWithFlags(flags):
        count("cudaStreamCreate")
        st = _Stream(next(handles))
        with lock:
            streams[st.handle] = st
        return ok, st

    def cudaStreamDestroy(s):
        cudaStreamSynchronize(s)
        stream_of(s).destroyed = True
        count("cudaStreamDestroy")
        return (ok,)

    def cudaStreamSynchronize(s):
        st = stream_of(s)
        if st.capture is not None:
            return (cudaError_t.cudaErrorStreamCaptureUnsupported,)
        ops, st.queue = st.queue, []
        for op in ops:
            op()
        return (ok,)

    def cudaMalloc(nbytes):
        count("cudaMalloc")
        raw = np.zeros(int(nbytes) + CUDA_ALIGN, np.uint8)  # cudaMalloc aligns to at least 256 bytes
        skip = -raw.ctypes.data % CUDA_ALIGN
        buf = raw[skip : skip + int(nbytes)]
        with lock:
            buffers[buf.ctypes.data] = buf
        return ok, buf.ctypes.data

    def cudaFree(ptr):
        count("cudaFree")
        with lock:
            assert buffers.pop(int(ptr), None) is not None, f"cudaFree of {ptr:#x}, not a live allocation"
        return (ok,)

    def cudaMemcpyAsync(dst, src, nbytes, kind, s):
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            device(dst, nbytes)
            what = "memcpy_h2d"
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            device(src, nbytes)
            what = "memcpy_d2h"
        else:
            raise AssertionError(f"unexpected memcpy kind {kind!r}")
        count(what)
        with lock:
            rt.log.append((what, int(dst), int(nbytes), threading.get_ident()))
        return (submit(s, lambda: ctypes.memmove(int(dst), int(src), int(nbytes)), what),)

    def cudaStreamBeginCapture(s, mode):
        st = stream_of(s)
        assert st.capture is None, "capture begun on a stream that is already capturing"
        count("cudaStreamBeginCapture")
        rt.log.append(("capture_mode", mode))
        st.capture = []
        return (ok,)

    def cudaStreamEndCapture(s):
        st = stream_of(s)
        assert st.capture is not None, "cudaStreamEndCapture without a capture"
        graph, st.capture = _Graph(st.capture), None
        count("cudaStreamEndCapture")
        return ok, graph

    def cudaGraphInstantiate(graph, flags):
        assert not graph.destroyed
        count("cudaGraphInstantiate")
        return ok, _Graph(graph.ops)

    def cudaGraphDestroy(graph):
        graph.destroyed = True
        return (ok,)

    def cudaGraphLaunch(exe, s):
        assert not exe.destroyed, "launch of a destroyed graph"
        count("cudaGraphLaunch")
        for op in exe.ops:
            assert submit(s, op, "graph") == ok
        return (ok,)

    def cudaGraphExecDestroy(exe):
        exe.destroyed = True
        count("cudaGraphExecDestroy")
        return (ok,)

    for f in (
        cudaGetDeviceCount,
        cudaDriverGetVersion,
        cudaGetDevice,
        cudaGetDeviceProperties,
        cudaStreamCreateWithFlags,
        cudaStreamDestroy,
        cudaStreamSynchronize,
        cudaMalloc,
        cudaFree,
        cudaMemcpyAsync,
        cudaStreamBeginCapture,
        cudaStreamEndCapture,
        cudaGraphInstantiate,
        cudaGraphDestroy,
        cudaGraphLaunch,
        cudaGraphExecDestroy,
    ):
        setattr(rt, f.__name__, f)
    return rt


# ---------------------------------------------------------------- tensorrt
class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    BOOL = 4
    INT64 = 8


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.INT64: np.int64,
}
_ORT = {
    "tensor(float)": DataType.FLOAT,
    "tensor(float16)": DataType.HALF,
    "tensor(int32)": DataType.INT32,
    "tensor(bool)": DataType.BOOL,
    "tensor(int64)": DataType.INT64,
}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


def write_plan(path: Path, onnx_path: Path, profile: dict, profiles: int = 1) -> bytes:
    """A fake plan: json naming the ONNX graph the fake engine runs, its profile {input: {min, opt, max}} and
    how many identical copies of that profile it holds."""
    spec = {"onnx": str(Path(onnx_path).resolve()), "profile": profile, "profiles": int(profiles)}
    data = json.dumps(spec, sort_keys=True).encode()
    Path(path).write_bytes(data)
    return data


def fake_tensorrt(rt: types.ModuleType, version: str = "10.3.0") -> types.ModuleType:
    """A `tensorrt` module whose engines run their ONNX graph with onnxruntime on `rt`'s fake device memory."""
    import onnxruntime as ort

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = version
    trt.DataType, trt.TensorIOMode = DataType, TensorIOMode
    trt.nptype = lambda t: _NP[t]
    trt.engines, trt.calls, trt.executed = [], Counter(), []  # executed: (engine graph, {input: shape}, thread)
    lock = threading.Lock()

    class ILogger:
        Severity = SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)

        def __init__(self):
            pass

    class Context:
        def __init__(self, engine):
            self.engine, self.shapes, self.addr, self.threads, self.streams = engine, {}, {}, set(), set()
            self.profile = 0  # TensorRT's default; another context may own it already
            self.epoch = 0  # bumped by every input-shape change: work enqueued before it must not run after

        def set_optimization_profile_async(self, index, stream_handle):
            rt.stream_of(stream_handle)
            eng = self.engine
            with lock:
                if not 0 <= int(index) < eng.num_optimization_profiles or eng.owner_of(int(index)) not in (None, self):
                    return False  # TensorRT: "Profile i has been chosen by another IExecutionContext"
                if eng.owner_of(self.profile) is self:
                    del eng.owner[self.profile]
                eng.owner[int(index)] = weakref.ref(self)
            self.profile, self.shapes = int(index), {}  # a profile change invalidates the input shapes
            self.epoch += 1
            return True

        def set_input_shape(self, name, shape):
            lo, _, hi = self.engine.profile[name]
            shape = tuple(int(d) for d in shape)
            if len(shape) != len(lo) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
                return False
            if self.shapes.get(name) != shape:
                self.epoch += 1
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            if name in self.engine.inputs:
                return self.shapes.get(name, tuple(-1 for _ in self.engine.dims[name]))
            sizes = {}
            for n in self.engine.inputs:
                for sym, d in zip(self.engine.dims[n], self.shapes.get(n, ())):
                    if isinstance(sym, str):
                        sizes[sym] = d
            return tuple(sizes.get(d, -1) if isinstance(d, str) else d for d in self.engine.dims[name])

        def set_tensor_address(self, name, ptr):
            if int(ptr) % CUDA_ALIGN:  # TensorRT refuses a misaligned address (returns False)
                return False
            self.addr[name] = int(ptr)
            return True

        def execute_async_v3(self, stream_handle):
            eng = self.engine
            with lock:
                trt.calls["execute_async_v3"] += 1
                owner = eng.owner_of(self.profile)
                if owner is None:
                    owner = self
                    eng.owner[self.profile] = weakref.ref(self)
            assert owner is self, (
                f"two execution contexts ran on optimization profile {self.profile}: TensorRT requires a separate "
                "profile for each context in concurrent use"
            )
            self.threads.add(threading.get_ident())
            self.streams.add(int(stream_handle))
            shapes = {n: self.shapes[n] for n in eng.inputs}  # TensorRT bakes shapes and addresses into the work
            addr = dict(self.addr)
            out_shapes = {n: self.get_tensor_shape(n) for n in eng.outputs}
            thread, epoch = threading.get_ident(), self.epoch

            def run():
                assert self.epoch == epoch, (
                    "work replayed after its context's input shapes changed (a CUDA graph must be re-captured "
                    "after a shape change, even if the shapes were set back)"
                )
                feed = {
                    n: rt.device(addr[n], int(np.prod(s)) * eng.np[n].itemsize).view(eng.np[n]).reshape(s)
                    for n, s in shapes.items()
                }
                with lock:
                    trt.executed.append((eng.graph, {n: s for n, s in shapes.items()}, thread))
                for n, value in zip(eng.outputs, eng.session.run(eng.outputs, feed)):
                    assert value.shape == out_shapes[n], (n, value.shape, out_shapes[n])
                    rt.device(addr[n], value.nbytes)[:] = np.ascontiguousarray(value, eng.np[n]).view(np.uint8).ravel()

            assert rt.submit(stream_handle, run, "execute") == rt.cudaError_t.cudaSuccess
            return True

    class Engine:
        def __init__(self, spec):
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.session = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
            self.graph = Path(spec["onnx"]).stem
            ins, outs = self.session.get_inputs(), self.session.get_outputs()
            self.inputs, self.outputs = [a.name for a in ins], [a.name for a in outs]
            self.dims = {a.name: tuple(a.shape) for a in (*ins, *outs)}
            self.dtype = {a.name: _ORT[a.type] for a in (*ins, *outs)}
            self.np = {n: np.dtype(_NP[t]) for n, t in self.dtype.items()}
            self.profile = {n: tuple(tuple(p[k]) for k in ("min", "opt", "max")) for n, p in spec["profile"].items()}
            self.num_optimization_profiles = int(spec.get("profiles", 1))
            self._contexts, self.created = [], 0  # weak references: a context nothing holds is destroyed
            self.owner = {}  # profile index -> weak reference to the one context that may use it

        @property
        def contexts(self):
            """The contexts still alive (a released one is destroyed, as TensorRT destroys it)."""
            return [c for c in (r() for r in self._contexts) if c is not None]

        def owner_of(self, index):
            ref = self.owner.get(index)
            return ref() if ref is not None else None

        num_io_tensors = property(lambda self: len(self.inputs) + len(self.outputs))

        def get_tensor_name(self, i):
            return [*self.inputs, *self.outputs][i]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name in self.inputs else TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return self.dtype[name]

        def get_tensor_profile_shape(self, name, index):
            assert 0 <= index < self.num_optimization_profiles, f"no optimization profile {index}"
            return [list(s) for s in self.profile[name]]

        def create_execution_context(self):
            ctx = Context(self)
            with lock:
                self._contexts.append(weakref.ref(ctx))
                self.created += 1
            return ctx

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            trt.calls["deserialize_cuda_engine"] += 1
            engine = Engine(json.loads(bytes(data)))
            trt.engines.append(engine)
            return engine

    trt.ILogger, trt.Runtime = ILogger, Runtime
    return trt
