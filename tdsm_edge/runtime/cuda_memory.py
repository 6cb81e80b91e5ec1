"""Device memory, one CUDA stream and CUDA graphs for the TensorRT runner: cuda-python, or torch as a fallback.

    mem = device_memory("cuda-python")         # or "torch", or "auto" (cuda-python when importable)
    ptr = mem.alloc(nbytes); mem.to_device(ptr, array); ...; mem.to_host(out, ptr); mem.sync()
    exe = mem.capture(lambda: context.execute_async_v3(mem.stream)); mem.launch(exe)   # cuda-python only

cuda-python's runtime module moved: `from cuda import cudart` up to cuda-python 12.x, and
`from cuda.bindings import runtime` from 12.6 on (the only path in 13); both are tried, newest first.
Every call returns `(cudaError_t, *values)`; `_ok` unpacks it and raises DeviceError naming the call.
Nothing is imported at module level but numpy: cuda-python and torch are imported when first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import suppress

import numpy as np

from tdsm_edge.errors import ConfigError, DeviceError, DriverMismatchError, MissingDependencyError, installed

CUDA_PYTHON_MISSING = (
    "cuda-python is not installed, and TensorRT device buffers need it: pip install cuda-python "
    "(>= 12; on a Jetson use the wheel matching JetPack's CUDA, e.g. cuda-python==12.6.*)"
)
_RUNTIME_MODULES = ("cuda.bindings.runtime", "cuda.cudart")  # cuda-python >= 12.6 / 13, then <= 12.x
INSUFFICIENT_DRIVER = 35  # cudaErrorInsufficientDriver: the CUDA runtime is newer than the driver


def _cudart():
    """cuda-python's runtime module (`cuda.bindings.runtime`, or `cuda.cudart` before 12.6), or None."""
    for name in _RUNTIME_MODULES:
        with suppress(ImportError):
            return importlib.import_module(name)
    return None


def _ok(rt, result, what: str):
    """Unpack a cuda-python `(err, *values)` result; raise DeviceError naming the call on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise DeviceError(
            f"CUDA call {what} failed: {err!r}. Is a CUDA GPU visible (nvidia-smi) and the driver "
            f"recent enough for this CUDA runtime?"
        )
    return values[0] if len(values) == 1 else (tuple(values) or None)


def _torch_cuda():
    """torch when it is installed and sees a CUDA device, else None (torch is imported only then)."""
    if not installed("torch"):
        return None
    import torch

    return torch if torch.cuda.is_available() else None


def cuda_device_count() -> int:
    """CUDA devices cuda-python sees (0 without a GPU or driver); MissingDependencyError without cuda-python."""
    rt = _cudart()
    if rt is None:
        raise MissingDependencyError(CUDA_PYTHON_MISSING)
    try:
        err, *rest = rt.cudaGetDeviceCount()
    except (RuntimeError, OSError):  # cuda-python 12.2: "Failed to dlopen libcuda.so.1" without a driver
        return 0
    if int(err) == INSUFFICIENT_DRIVER:  # also what cuda-bindings 13 says with no driver at all
        driver = driver_cuda_version(rt)
        if driver is None:
            return 0  # no driver: no GPU
        raise DriverMismatchError(driver_mismatch_message(driver))
    return int(rest[0]) if err == rt.cudaError_t.cudaSuccess and rest and rest[0] else 0


def driver_cuda_version(rt) -> str | None:
    """The CUDA version the installed NVIDIA driver runs ("12.2"), or None without a driver."""
    with suppress(Exception):
        err, version = rt.cudaDriverGetVersion()
        if int(err) == 0 and version and int(version) > 0:
            return f"{int(version) // 1000}.{int(version) % 1000 // 10}"
    return None


def driver_mismatch_message(driver: str) -> str:
    """What cudaErrorInsufficientDriver with a driver present means, and which cuda-python to install."""
    wheel = next((f"{d} {v}" for d in ("cuda-python", "cuda-bindings") if (v := dist_version(d))), "?")
    major = driver.split(".")[0]
    return (
        f"the NVIDIA driver here runs CUDA {driver}, but {wheel} needs a newer one (cudaErrorInsufficientDriver): "
        f"this is a version mismatch, not a missing GPU. Install the cuda-python that matches the driver: "
        f"pip install 'cuda-python=={major}.*' (JetPack 6: CUDA 12.6), or update the driver"
    )


def dist_version(name: str) -> str | None:
    """The installed version of the distribution `name`, or None when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def gpu_info() -> tuple[str, str]:
    """(name, compute capability "major.minor") of the current CUDA device, via cuda-python or torch.

    Raises:
        ConfigError: cuda-python is installed but sees no CUDA device (so a backend choice can move on).
        MissingDependencyError: neither cuda-python nor torch with CUDA is installed.
    """
    rt = _cudart()
    if rt is not None:
        if cuda_device_count() < 1:
            raise ConfigError(
                "no CUDA GPU is visible here (cudaGetDeviceCount finds none, or no driver); TensorRT "
                "needs one. Check nvidia-smi and the driver, or use another backend"
            )
        device = _ok(rt, rt.cudaGetDevice(), "cudaGetDevice")
        prop = _ok(rt, rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}"
    torch = _torch_cuda()
    if torch is not None:
        major, minor = torch.cuda.get_device_capability()
        return torch.cuda.get_device_name(), f"{major}.{minor}"
    raise MissingDependencyError(
        "cannot read the GPU's name and compute capability: install cuda-python "
        "(`pip install cuda-python`) or torch with CUDA, on a machine with a CUDA GPU"
    )


class CudaRuntimeMemory:
    """Device buffers, one non-blocking stream and CUDA graphs through cuda-python's runtime API (no torch)."""

    def __init__(self) -> None:
        self.rt = _cudart()
        if self.rt is None:
            raise MissingDependencyError(CUDA_PYTHON_MISSING)
        flags = getattr(self.rt, "cudaStreamNonBlocking", 1)  # no implicit sync with the legacy default stream
        self._stream = _ok(self.rt, self.rt.cudaStreamCreateWithFlags(flags), "cudaStreamCreateWithFlags")
        self.stream = int(self._stream)  # the handle execute_async_v3 takes

    def alloc(self, nbytes: int) -> int:
        return int(_ok(self.rt, self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        _ok(self.rt, self.rt.cudaFree(ptr), "cudaFree")

    def to_device(self, ptr: int, arr: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _ok(self.rt, self.rt.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, kind, self._stream), "cudaMemcpyAsync")

    def to_host(self, arr: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _ok(self.rt, self.rt.cudaMemcpyAsync(arr.ctypes.data, ptr, arr.nbytes, kind, self._stream), "cudaMemcpyAsync")

    def sync(self) -> None:
        _ok(self.rt, self.rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def capture(self, enqueue: Callable[[], None]):
        """Record what `enqueue()` puts on this stream into an executable CUDA graph (nothing runs now).

        Thread-local capture mode: other threads' CUDA calls (their own contexts and streams) go on.
        """
        rt = self.rt
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _ok(rt, rt.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            rt.cudaStreamEndCapture(self._stream)  # leave the stream usable; the enqueue error is the one to see
            raise
        graph = _ok(rt, rt.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        try:
            return _ok(rt, rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        finally:
            _ok(rt, rt.cudaGraphDestroy(graph), "cudaGraphDestroy")  # the executable graph keeps what it needs

    def launch(self, graph_exec) -> None:
        _ok(self.rt, self.rt.cudaGraphLaunch(graph_exec, self._stream), "cudaGraphLaunch")

    def destroy_graph(self, graph_exec) -> None:
        _ok(self.rt, self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")

    def close(self) -> None:
        _ok(self.rt, self.rt.cudaStreamDestroy(self._stream), "cudaStreamDestroy")


class TorchMemory:
    """Device buffers as torch CUDA tensors (their data_ptr() is the address TensorRT gets). No CUDA graphs."""

    def __init__(self, torch) -> None:
        self.torch = torch
        self._stream_obj = torch.cuda.Stream()
        self.stream = int(self._stream_obj.cuda_stream)
        self._tensors: dict[int, object] = {}

    def alloc(self, nbytes: int) -> int:
        t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device="cuda")
        self._tensors[t.data_ptr()] = t
        return t.data_ptr()

    def free(self, ptr: int) -> None:
        self._tensors.pop(ptr, None)

    def _bytes(self, arr: np.ndarray):
        return self.torch.from_numpy(arr.reshape(-1).view(np.uint8))

    def to_device(self, ptr: int, arr: np.ndarray) -> None:
        with self.torch.cuda.stream(self._stream_obj):
            self._tensors[ptr][: arr.nbytes].copy_(self._bytes(arr))

    def to_host(self, arr: np.ndarray, ptr: int) -> None:
        with self.torch.cuda.stream(self._stream_obj):
            self._bytes(arr).copy_(self._tensors[ptr][: arr.nbytes])

    def sync(self) -> None:
        self._stream_obj.synchronize()

    def close(self) -> None:
        self._tensors.clear()


def device_memory(kind: str = "auto"):
    """A device-memory helper: "cuda-python", "torch" (CUDA tensors), or "auto" (cuda-python, else torch with CUDA)."""
    if kind not in ("auto", "torch", "cuda-python"):
        raise ConfigError(f"memory must be 'auto', 'torch' or 'cuda-python', got {kind!r}")
    if kind == "cuda-python" or (kind == "auto" and _cudart() is not None):
        return CudaRuntimeMemory()
    torch = _torch_cuda()
    if torch is not None:
        return TorchMemory(torch)
    if kind == "torch":
        raise MissingDependencyError("memory='torch' needs torch with a visible CUDA device")
    raise MissingDependencyError(CUDA_PYTHON_MISSING)
