"""TensorRT plans for the exported graphs: build, compatibility check, and a small runner (TensorRT 10.x API).

One `TrtEngine` with one method per stage, as NVIDIA's TensorRT demo/Diffusion does it:
build (ONNX → plan) / load (plan → engine, checked against its manifest record) / activate
(execution context) / allocate (input shapes → device buffers) / infer (numpy in, numpy out).

Precision: the FP16 graph from `onnx_export.export_scorer(..., "fp16")` already carries its types
(fp16 compute, float32 islands), so the plan is built from a STRONGLY_TYPED network that takes
those types as they are. `BuilderFlag.FP16` (weak typing, deprecated from TensorRT 10.12, removed
in 11) is used only where the STRONGLY_TYPED flag does not exist, and the record says which
(`precision_mode`). The target is JetPack 6's TensorRT 10.3.

Metadata never goes inside the plan: the plan file is TensorRT's bytes only, and `build_plan`
returns the record (TensorRT version, GPU, compute capability, profile, sha256 …) for the bundle's
manifest. The TensorRT version is in the plan's file name too (`scorer_fp16.trt10.3.0.plan`).

`tensorrt` is imported inside functions only: this module imports without it. Device memory comes
from torch when it is importable with CUDA, else from cuda-python's runtime API (`cuda.bindings.runtime`,
or `cuda.cudart` before cuda-python 13); pycuda is not used.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import math
import re
import time
from contextlib import suppress
from pathlib import Path

import numpy as np

from tdsm_edge.errors import (BundleError, ConfigError, EngineIncompatibleError, ExportError, InputError,
                              MissingDependencyError, require)
from tdsm_edge.io import atomic_path, sha256_file
from tdsm_edge.runtime.manifest import DEFAULT_REBUILD
from tdsm_edge.runtime.manifest import check_plan_compat as _check_plan_compat

from .iospec import BATCH as BATCH_AXIS
from .iospec import CLASSES as CLASS_AXIS

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
_TRT_MISSING = ("TensorRT (the `tensorrt` Python package, >= 10) is not installed, and building or running a "
                "plan needs it. On Jetson it ships with JetPack 6 (TensorRT 10.3: `apt install python3-libnvinfer`); "
                "on x86 install it from NVIDIA's index: `pip install tensorrt` (pulls from pypi.nvidia.com). "
                "Without TensorRT, serve the ONNX graph with onnxruntime instead.")
_NAME_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VERSION_TOKEN = re.compile(r"^\d+(\.[0-9A-Za-z]+)*$")


# ---------------------------------------------------------------- availability, names
def tensorrt_available() -> bool:
    """True when the `tensorrt` package can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def plan_name(graph: str, precision: str, trt_version: str) -> str:
    """File name of a plan: `<graph>_<precision>.trt<version>.plan`, e.g. `scorer_fp16.trt10.3.0.plan`."""
    if not _NAME_TOKEN.match(graph or ""):
        raise ConfigError(f"graph name {graph!r} must be letters, digits, '_' or '-' (it becomes a file name)")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}")
    if not _VERSION_TOKEN.match(str(trt_version)):
        raise ConfigError(f"TensorRT version {trt_version!r} is not a dotted version such as '10.3.0'")
    return f"{graph}_{precision}.trt{trt_version}.plan"


def _import_trt():
    """`import tensorrt`, or MissingDependencyError that says where TensorRT comes from."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as e:
        raise MissingDependencyError(_TRT_MISSING) from e
    if int(str(trt.__version__).split(".")[0]) < 10:
        raise MissingDependencyError(f"TensorRT {trt.__version__} is too old: this builder uses the TensorRT 10 API "
                                     f"(JetPack 6 ships 10.3). {_TRT_MISSING}")
    return trt


# ---------------------------------------------------------------- CUDA runtime (cuda-python or torch)
def _cudart():
    """cuda-python's runtime module (`cuda.bindings.runtime`, or `cuda.cudart` before 13), or None."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        with suppress(ImportError):
            return importlib.import_module(name)
    return None


def _ok(rt, result, what: str):
    """Unpack a cuda-python `(err, *values)` result; raise ExportError naming the call on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise ExportError(f"CUDA call {what} failed: {err!r}. Is a CUDA GPU visible (nvidia-smi) and the driver "
                          f"recent enough for this CUDA runtime?")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def _torch_cuda():
    """torch when it is installed and sees a CUDA device, else None (torch is imported only then)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch
    return torch if torch.cuda.is_available() else None


def gpu_info() -> tuple[str, str]:
    """(name, compute capability "major.minor") of the current CUDA device, via cuda-python or torch."""
    rt = _cudart()
    if rt is not None:
        device = _ok(rt, rt.cudaGetDevice(), "cudaGetDevice")
        prop = _ok(rt, rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return name.rstrip("\x00").strip(), f"{prop.major}.{prop.minor}"
    torch = _torch_cuda()
    if torch is not None:
        major, minor = torch.cuda.get_device_capability()
        return torch.cuda.get_device_name(), f"{major}.{minor}"
    raise MissingDependencyError("cannot read the GPU's name and compute capability: install cuda-python "
                                 "(`pip install cuda-python`) or torch with CUDA, on a machine with a CUDA GPU")


# ---------------------------------------------------------------- optimization profile
def _triple(what: str, value) -> tuple[int, int, int]:
    """(min, opt, max) from an int (fixed) or a 3-sequence; 1 <= min <= opt <= max."""
    t = (value,) * 3 if isinstance(value, (int, np.integer)) else tuple(value)
    if len(t) != 3 or not all(isinstance(v, (int, np.integer)) for v in t) or not 1 <= t[0] <= t[1] <= t[2]:
        raise ConfigError(f"{what} must be an int or (min, opt, max) with 1 <= min <= opt <= max, got {value!r}")
    return tuple(int(v) for v in t)


def profile_shapes(inputs: dict[str, tuple], batch=(1, 8, 64), classes=(1, 8, 64),
                   overrides: dict | None = None) -> dict[str, dict[str, list[int]]]:
    """The optimization profile for graph inputs whose dims are ints (static) or axis names.

    Args:
        inputs: name → dims, e.g. `{"z": ("batch", 256), "ada_x": ("classes", 12, 6, 768)}`.
        batch, classes: (min, opt, max) for the "batch" / "classes" axes; an int fixes the axis.
        overrides: name → (min_shape, opt_shape, max_shape) for inputs with other dynamic axes,
            or to set one input's shapes explicitly (static dims must match the graph).
    Returns:
        name → {"min": [...], "opt": [...], "max": [...]} (JSON-ready, for the manifest).
    """
    axes = {BATCH_AXIS: _triple("batch (min, opt, max)", batch),
            CLASS_AXIS: _triple("classes (min, opt, max)", classes)}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(inputs))
    if unknown:
        raise ConfigError(f"dynamic_inputs names {unknown}, which the graph does not have; "
                          f"its inputs are {list(inputs)}")
    out = {}
    for name, dims in inputs.items():
        if name in overrides:
            shapes = [tuple(int(d) for d in s) for s in overrides[name]]
            ok = len(shapes) == 3 and all(len(s) == len(dims) for s in shapes) and all(
                1 <= a <= b <= c and (not isinstance(d, (int, np.integer)) or a == b == c == d)
                for d, a, b, c in zip(dims, *shapes))
            if not ok:
                raise ConfigError(f"dynamic_inputs[{name!r}] = {overrides[name]!r} does not fit the graph's dims "
                                  f"{dims}: give (min, opt, max) shapes of rank {len(dims)}, min <= opt <= max, "
                                  "static dims as they are")
            out[name] = dict(zip(("min", "opt", "max"), (list(s) for s in shapes)))
            continue
        per_dim = []
        for d in dims:
            if isinstance(d, (int, np.integer)) and d > 0:
                per_dim.append((int(d),) * 3)
            elif d in axes:
                per_dim.append(axes[d])
            else:
                raise ConfigError(f"input {name!r} has a dynamic dim {d!r} that is neither {BATCH_AXIS!r} nor "
                                  f"{CLASS_AXIS!r}; give its shapes in dynamic_inputs={{{name!r}: (min, opt, max)}}")
        out[name] = {k: [p[i] for p in per_dim] for i, k in enumerate(("min", "opt", "max"))}
    return out


def _onnx_inputs(onnx_path: Path) -> tuple[dict[str, tuple], set[str]]:
    """(graph inputs name → dims with axis names, numpy names of every float type in the graph)."""
    onnx = require("onnx", extra="export")
    proto = onnx.load(str(onnx_path), load_external_data=False)  # headers only: dtypes, no weights
    g = proto.graph
    weights = {t.name for t in g.initializer}
    inputs = {v.name: tuple(d.dim_param if d.dim_param else (d.dim_value or "?") for d in v.type.tensor_type.shape.dim)
              for v in g.input if v.name not in weights}
    codes = {t.data_type for t in g.initializer} | {v.type.tensor_type.elem_type for v in [*g.input, *g.output]}
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to":
                codes.add(a.i)
            elif node.op_type == "Constant" and a.name == "value":
                codes.add(a.t.data_type)
    names = {str(onnx.helper.tensor_dtype_to_np_dtype(c)) for c in codes if c}
    return inputs, {n for n in names if n.startswith("float")}


def _network_flags(trt, precision: str) -> tuple[int, str]:
    """Network creation flags and the precision mode they give: strongly typed where the flag exists."""
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if strongly is not None:
        return 1 << int(strongly), "strongly_typed"
    if precision == "fp16":
        if getattr(trt.BuilderFlag, "FP16", None) is None:
            raise ExportError(f"TensorRT {trt.__version__} has neither NetworkDefinitionCreationFlag.STRONGLY_TYPED "
                              "nor BuilderFlag.FP16, so it cannot build a fp16 plan here")
        return 0, "fp16_flag_fallback"
    return 0, "fp32_weak_typing"


def _make_logger(trt):
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


# ---------------------------------------------------------------- build
def build_plan(onnx_path: str | Path, out_dir: str | Path, *, graph: str = "scorer", precision: str = "fp16",
               min_batch: int = 1, opt_batch: int = 8, max_batch: int = 64, classes=(1, 8, 64),
               workspace_gb: float = 2.0, opt_level: int = 3, timing_cache: str | Path | None = None,
               dynamic_inputs: dict | None = None, allow_tf32: bool = False) -> dict:
    """Build a TensorRT plan from an exported ONNX graph and return its manifest record.

    Args:
        onnx_path: the graph (external weight files next to it are found by the parser).
        out_dir: where `plan_name(graph, precision, <TensorRT version>)` is written (atomically).
        precision: "fp16" needs a graph whose types are already fp16 (checked); "fp32" a float32 one.
        min_batch, opt_batch, max_batch: the profile of every input's "batch" axis.
        classes: (min, opt, max) of the "classes" axis, or an int to fix it.
        workspace_gb: builder workspace pool limit. opt_level: builder optimization level (0–5).
        timing_cache: a file; loaded if it exists, and saved (atomically) after the build.
        dynamic_inputs: name → (min, opt, max) shapes, for inputs with other dynamic axes.
        allow_tf32: leave TF32 on for float32 matmuls (off by default: fp32 means fp32).
    Returns:
        The plan record: file, sha256, bytes, graph, precision, precision_mode ("strongly_typed" |
        "fp16_flag_fallback" | "fp32_weak_typing"), tensorrt_version, gpu_name, compute_capability,
        profile, workspace_bytes, opt_level, tf32, timing_cache, build_seconds, onnx, onnx_sha256.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}")
    if not 0 <= int(opt_level) <= 5 or not workspace_gb > 0:
        raise ConfigError(f"opt_level must be 0..5 and workspace_gb > 0, got {opt_level}, {workspace_gb}")
    batch = _triple("(min_batch, opt_batch, max_batch)", (min_batch, opt_batch, max_batch))
    trt = _import_trt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"no ONNX graph at {onnx_path}; export it first (export/onnx_export.py)")
    dims, float_types = _onnx_inputs(onnx_path)
    if precision == "fp16" and "float16" not in float_types:
        raise ExportError(f"{onnx_path} has no float16 tensors, so a strongly typed build would make a float32 plan "
                          "and call it fp16. Build fp16 plans from the fp16 export (export_scorer(..., 'fp16')).")
    if precision == "fp32" and "float16" in float_types:
        raise ExportError(f"{onnx_path} holds float16 tensors; a fp32 plan must come from the fp32 export")
    profile = profile_shapes(dims, batch, classes, dynamic_inputs)
    gpu_name, capability = gpu_info()

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags, mode = _network_flags(trt, precision)
    network = builder.create_network(flags)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or logger.errors
        raise ExportError(f"TensorRT {trt.__version__} could not parse {onnx_path}:\n  " + "\n  ".join(errors)
                          + "\nAn unsupported op or dtype must be changed in the export (export/folded.py).")
    net_inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(net_inputs) != sorted(profile):
        raise ExportError(f"the parsed network's inputs {net_inputs} differ from the ONNX graph's {list(profile)}")

    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(opt_level)
    if mode == "fp16_flag_fallback":
        log.warning("TensorRT %s has no STRONGLY_TYPED networks: building fp16 with BuilderFlag.FP16 (weak typing); "
                    "the record says precision_mode='fp16_flag_fallback'", trt.__version__)
        config.set_flag(trt.BuilderFlag.FP16)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None and not allow_tf32:
        config.clear_flag(tf32)
    opt = builder.create_optimization_profile()
    for name, s in profile.items():
        opt.set_shape(name, s["min"], s["opt"], s["max"])
    if config.add_optimization_profile(opt) < 0:
        raise ExportError(f"TensorRT rejected the optimization profile {profile}")
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), False)  # ignore_mismatch=False

    log.info("building %s %s plan from %s (TensorRT %s, %s, %s)", precision, graph, onnx_path, trt.__version__,
             gpu_name, mode)
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build {onnx_path}:\n  " + "\n  ".join(logger.errors)
                          + f"\nIf it ran out of memory, raise workspace_gb (now {workspace_gb}) or lower max_batch.")
    data = memoryview(plan).cast("B")
    out = Path(out_dir) / plan_name(graph, precision, trt.__version__)
    with atomic_path(out) as tmp:  # a failed write never leaves a partial plan under the final name
        tmp.write_bytes(data)
    if cache_path is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(memoryview(config.get_timing_cache().serialize()).cast("B"))
    log.info("wrote %s (%.1f MB) in %.1f s", out, data.nbytes / 1e6, seconds)
    return dict(file=out.name, sha256=hashlib.sha256(data).hexdigest(), bytes=int(data.nbytes), graph=graph,
                precision=precision, precision_mode=mode, tensorrt_version=str(trt.__version__), gpu_name=gpu_name,
                compute_capability=capability, profile=profile, workspace_bytes=workspace, opt_level=int(opt_level),
                tf32=bool(tf32 is not None and allow_tf32), timing_cache=cache_path.name if cache_path else None,
                build_seconds=round(seconds, 3), onnx=onnx_path.name, onnx_sha256=sha256_file(onnx_path))


# ---------------------------------------------------------------- compatibility
def check_plan_compat(record: dict, trt_version: str, gpu_name: str, compute_capability,
                      rebuild_cmd: str = DEFAULT_REBUILD, strict_gpu: bool = True) -> None:
    """Raise EngineIncompatibleError unless the plan `record` was built by this TensorRT version on this GPU.

    `tdsm_edge.runtime.manifest.check_plan_compat` (the project's one implementation, torch- and
    TensorRT-free) under this module's argument names; see it for the rules.
    """
    _check_plan_compat(record, trt_version, gpu_name, compute_capability, rebuild_cmd, strict_gpu)


# ---------------------------------------------------------------- device memory
class _CudaRuntimeMemory:
    """Device buffers and one stream through cuda-python's runtime API (no torch, no pycuda)."""

    def __init__(self):
        self.rt = _cudart()
        if self.rt is None:
            raise MissingDependencyError("device memory without torch needs cuda-python: pip install cuda-python")
        self._stream = _ok(self.rt, self.rt.cudaStreamCreate(), "cudaStreamCreate")
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

    def close(self) -> None:
        _ok(self.rt, self.rt.cudaStreamDestroy(self._stream), "cudaStreamDestroy")


class _TorchMemory:
    """Device buffers as torch CUDA tensors (their data_ptr() is the address TensorRT gets)."""

    def __init__(self, torch):
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
            self._tensors[ptr][:arr.nbytes].copy_(self._bytes(arr))

    def to_host(self, arr: np.ndarray, ptr: int) -> None:
        with self.torch.cuda.stream(self._stream_obj):
            self._bytes(arr).copy_(self._tensors[ptr][:arr.nbytes])

    def sync(self) -> None:
        self._stream_obj.synchronize()

    def close(self) -> None:
        self._tensors.clear()


def device_memory(kind: str = "auto"):
    """A device-memory helper: "torch" (CUDA tensors), "cuda-python", or "auto" (torch with CUDA, else cuda-python)."""
    if kind not in ("auto", "torch", "cuda-python"):
        raise ConfigError(f"memory must be 'auto', 'torch' or 'cuda-python', got {kind!r}")
    torch = _torch_cuda() if kind in ("auto", "torch") else None
    if torch is not None:
        return _TorchMemory(torch)
    if kind == "torch":
        raise MissingDependencyError("memory='torch' needs torch with a visible CUDA device")
    return _CudaRuntimeMemory()


# ---------------------------------------------------------------- engine
class TrtEngine:
    """One TensorRT plan through its stages: build → load → activate → allocate → infer.

    ```
    eng = TrtEngine()
    record = eng.build("scorer_fp16.onnx", "engines/demo")          # or load an existing plan:
    eng.load("engines/demo/" + record["file"], expected_record=record, rebuild_cmd="python -m export.build_engine ...")
    eng.activate(); eng.allocate({"z": (B, Dz), "ada_x": (K, depth, 6, D), ...})
    errors = eng.infer({"z": z, **tables})["errors"]                # (B, K) float32
    ```
    """

    def __init__(self, plan_path: str | Path | None = None, memory="auto"):
        """memory: "auto" | "torch" | "cuda-python" (see `device_memory`), or a helper object with the same methods."""
        self.plan_path = Path(plan_path) if plan_path is not None else None
        self.memory, self.record = memory, None
        self.engine = self.context = self._runtime = self._mem = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.shapes: dict[str, tuple] = {}   # every IO tensor's allocated shape
        self.dtypes: dict[str, np.dtype] = {}
        self._ptrs: dict[str, int] = {}

    def build(self, onnx_path: str | Path, out_dir: str | Path, **kwargs) -> dict:
        """`build_plan(onnx_path, out_dir, **kwargs)`; remembers the plan path and record."""
        self.record = build_plan(onnx_path, out_dir, **kwargs)
        self.plan_path = Path(out_dir) / self.record["file"]
        return self.record

    def load(self, plan_path: str | Path | None = None, expected_record: dict | None = None,
             rebuild_cmd: str = DEFAULT_REBUILD) -> "TrtEngine":
        """Deserialize the plan. With `expected_record` (its manifest entry), first check the file's
        sha256 and that this TensorRT version / GPU / compute capability match (EngineIncompatibleError
        naming `rebuild_cmd` otherwise)."""
        path = Path(plan_path) if plan_path is not None else self.plan_path
        if path is None or not path.is_file():
            raise BundleError(f"no TensorRT plan at {path}; build it with: {rebuild_cmd}")
        trt = _import_trt()
        data = path.read_bytes()
        if expected_record is not None:
            digest = hashlib.sha256(data).hexdigest()
            if expected_record.get("sha256") not in (None, digest):
                raise BundleError(f"{path} does not match its manifest (sha256 {digest[:12]}…, expected "
                                  f"{expected_record['sha256'][:12]}…): the file is corrupt or was replaced. "
                                  f"Rebuild it with: {rebuild_cmd}")
            check_plan_compat(expected_record, trt.__version__, *gpu_info(), rebuild_cmd)
        logger = _make_logger(trt)
        self._runtime = trt.Runtime(logger)
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineIncompatibleError(f"TensorRT {trt.__version__} could not load {path}: "
                                          + ("; ".join(logger.errors) or "no reason given")
                                          + f". Rebuild it on this machine with: {rebuild_cmd}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.plan_path, self.record = path, expected_record or self.record
        return self

    def activate(self) -> "TrtEngine":
        """Create the execution context and the device-memory helper (one CUDA stream)."""
        if self.engine is None:
            raise BundleError("TrtEngine.activate() needs a loaded plan: call load() first")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ExportError(f"TensorRT could not create an execution context for {self.plan_path} "
                              "(out of GPU memory?)")
        if self._mem is None:  # a memory helper object may be passed as `memory` instead of a kind name
            self._mem = device_memory(self.memory) if isinstance(self.memory, str) else self.memory
        return self

    def allocate(self, shapes: dict[str, tuple]) -> "TrtEngine":
        """Set every input's shape and (re)allocate device buffers for all inputs and outputs."""
        if self.context is None:
            raise BundleError("TrtEngine.allocate() needs an execution context: call activate() first")
        if sorted(shapes) != sorted(self.inputs):
            raise InputError(f"allocate() needs a shape for exactly the inputs {self.inputs}, got {sorted(shapes)}")
        self._free()
        for name in self.inputs:
            if not self.context.set_input_shape(name, tuple(int(d) for d in shapes[name])):
                lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
                raise InputError(f"{name} shape {tuple(shapes[name])} is outside the plan's profile "
                                 f"{tuple(lo)} .. {tuple(hi)}; rebuild with a larger profile")
        for name in (*self.inputs, *self.outputs):
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            self.shapes[name] = shape
            self._ptrs[name] = self._mem.alloc(math.prod(shape) * self.dtypes[name].itemsize)
            self.context.set_tensor_address(name, self._ptrs[name])
        return self

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once: `feed` maps every input name to an array of the engine's dtype; returns the outputs."""
        if sorted(feed) != sorted(self.inputs):
            raise InputError(f"infer() needs exactly the inputs {self.inputs}, got {sorted(feed)}")
        bad = {n: str(a.dtype) for n, a in feed.items() if np.asarray(a).dtype != self.dtypes[n]}
        if bad:
            raise InputError(f"input dtypes {bad} differ from the plan's "
                             f"{ {n: str(self.dtypes[n]) for n in bad} }; cast them to what the graph declares")
        arrays = {n: np.ascontiguousarray(a) for n, a in feed.items()}
        if any(self.shapes.get(n) != a.shape for n, a in arrays.items()):
            self.allocate({n: a.shape for n, a in arrays.items()})
        for name, arr in arrays.items():
            self._mem.to_device(self._ptrs[name], arr)
        if not self.context.execute_async_v3(self._mem.stream):
            raise ExportError(f"TensorRT execution of {self.plan_path} failed (see the TensorRT log above)")
        out = {n: np.empty(self.shapes[n], self.dtypes[n]) for n in self.outputs}
        for name, arr in out.items():
            self._mem.to_host(arr, self._ptrs[name])
        self._mem.sync()
        return out

    def _free(self) -> None:
        for ptr in self._ptrs.values():
            self._mem.free(ptr)
        self._ptrs.clear()
        self.shapes.clear()

    def close(self) -> None:
        """Free the buffers and stream, drop the context and engine."""
        if self._mem is not None:
            self._free()
            self._mem.close()
        self._mem = self.context = self.engine = self._runtime = None

    def __enter__(self) -> "TrtEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
