"""TensorRT plans for the exported graphs: the builder (TensorRT 10.x API).

`build_plan` turns an ONNX graph into a plan and returns its manifest record; `TrtEngine` is the
runtime's runner (`tdsm_edge/runtime/trt_engine.py`: load / activate / allocate / infer over a pool
of execution contexts, one optimization profile each) with the `build` stage added, so that one
Engine class goes through every stage as in NVIDIA's TensorRT demo/Diffusion.

Precision: the FP16 graph from `onnx_export.export_scorer(..., "fp16")` already carries its types
(fp16 compute, float32 islands), so the plan is built from a STRONGLY_TYPED network that takes
those types as they are. `BuilderFlag.FP16` (weak typing, deprecated from TensorRT 10.12, removed
in 11) is used only where the STRONGLY_TYPED flag does not exist, and the record says which
(`precision_mode`). The target is JetPack 6's TensorRT 10.3.

Metadata never goes inside the plan: the plan file is TensorRT's bytes only, and `build_plan`
returns the record (TensorRT version, GPU, compute capability, profile, sha256 …) for the bundle's
manifest. The TensorRT version is in the plan's file name too (`scorer_fp16.trt10.3.0.plan`).

`tensorrt` is imported inside functions only: this module imports without it. The runner, device
memory (cuda-python, torch as a fallback) and the GPU query live in `tdsm_edge.runtime.cuda_memory`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from pathlib import Path

import numpy as np

from tdsm_edge.errors import ConfigError, ExportError, require
from tdsm_edge.io import atomic_path, sha256_file
from tdsm_edge.runtime import trt_engine as _runner
from tdsm_edge.runtime.cuda_memory import gpu_info
from tdsm_edge.runtime.iospec import BATCH as BATCH_AXIS
from tdsm_edge.runtime.iospec import CLASSES as CLASS_AXIS
from tdsm_edge.runtime.iospec import AxisRange, IOSpec
from tdsm_edge.runtime.manifest_schema import MAX_PROFILES
from tdsm_edge.runtime.trt_engine import import_trt as _import_trt
from tdsm_edge.runtime.trt_engine import make_logger as _make_logger

__all__ = ["PRECISIONS", "TrtEngine", "build_plan", "plan_name", "profile_shapes"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16")
_NAME_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_VERSION_TOKEN = re.compile(r"^\d+(\.[0-9A-Za-z]+)*$")


# ---------------------------------------------------------------- names
def plan_name(graph: str, precision: str, trt_version: str) -> str:
    """File name of a plan: `<graph>_<precision>.trt<version>.plan`, e.g. `scorer_fp16.trt10.3.0.plan`."""
    if not _NAME_TOKEN.match(graph or ""):
        raise ConfigError(f"graph name {graph!r} must be letters, digits, '_' or '-' (it becomes a file name)")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}")
    if not _VERSION_TOKEN.match(str(trt_version)):
        raise ConfigError(f"TensorRT version {trt_version!r} is not a dotted version such as '10.3.0'")
    return f"{graph}_{precision}.trt{trt_version}.plan"


# ---------------------------------------------------------------- optimization profile
def check_profiles(profiles, what: str = "profiles") -> int:
    """`profiles` (copies of the optimization profile) as an int in 1..MAX_PROFILES, or ConfigError naming
    `what` (the argument or command-line option it came from)."""
    if isinstance(profiles, bool) or not isinstance(profiles, (int, np.integer)) or not 1 <= profiles <= MAX_PROFILES:
        raise ConfigError(
            f"{what} must lie in [1, {MAX_PROFILES}] (TensorRT execution contexts that may run a plan at once, "
            f"one optimization profile each), got {profiles!r}"
        )
    return int(profiles)


def _triple(what: str, value) -> tuple[int, int, int]:
    """(min, opt, max) from an int (fixed) or a 3-sequence; 1 <= min <= opt <= max."""
    t = (value,) * 3 if isinstance(value, (int, np.integer)) else tuple(value)
    if len(t) != 3 or not all(isinstance(v, (int, np.integer)) for v in t) or not 1 <= t[0] <= t[1] <= t[2]:
        raise ConfigError(f"{what} must be an int or (min, opt, max) with 1 <= min <= opt <= max, got {value!r}")
    return tuple(int(v) for v in t)


def profile_shapes(
    inputs: dict[str, tuple], batch=(1, 8, 64), classes=(1, 8, 64), overrides: dict | None = None
) -> dict[str, dict[str, list[int]]]:
    """The optimization profile for graph inputs whose dims are ints (static) or axis names.

    Args:
        inputs: name → dims, e.g. `{"z": ("batch", 256), "ada_x": ("classes", 12, 6, 768)}`.
        batch, classes: (min, opt, max) for the "batch" / "classes" axes; an int fixes the axis.
        overrides: name → (min_shape, opt_shape, max_shape) for inputs with other dynamic axes,
            or to set one input's shapes explicitly (static dims must match the graph).
    Returns:
        name → {"min": [...], "opt": [...], "max": [...]} (JSON-ready, for the manifest).
    The shapes are derived as the bundle's IO spec derives its own (`IOSpec.input_profile`).
    """
    axes = {
        BATCH_AXIS: AxisRange(*_triple("batch (min, opt, max)", batch)),
        CLASS_AXIS: AxisRange(*_triple("classes (min, opt, max)", classes)),
    }
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(inputs))
    if unknown:
        raise ConfigError(
            f"dynamic_inputs names {unknown}, which the graph does not have; its inputs are {list(inputs)}"
        )
    shapes = {}
    for name, dims in inputs.items():
        if name in overrides:
            shapes[name] = [tuple(int(d) for d in s) for s in overrides[name]]
            ok = (
                len(shapes[name]) == 3
                and all(len(s) == len(dims) for s in shapes[name])
                and all(
                    1 <= a <= b <= c and (not isinstance(d, (int, np.integer)) or a == b == c == d)
                    for d, a, b, c in zip(dims, *shapes[name])
                )
            )
            if not ok:
                raise ConfigError(
                    f"dynamic_inputs[{name!r}] = {overrides[name]!r} does not fit the graph's dims "
                    f"{dims}: give (min, opt, max) shapes of rank {len(dims)}, min <= opt <= max, "
                    "static dims as they are"
                )
            continue
        for d in dims:
            if not (isinstance(d, (int, np.integer)) and d > 0 or d in axes):
                raise ConfigError(
                    f"input {name!r} has a dynamic dim {d!r} that is neither {BATCH_AXIS!r} nor "
                    f"{CLASS_AXIS!r}; give its shapes in dynamic_inputs={{{name!r}: (min, opt, max)}}"
                )
        shapes[name] = IOSpec.input_profile({name: dims}, axes)[name]
    return {name: dict(zip(("min", "opt", "max"), (list(s) for s in triple))) for name, triple in shapes.items()}


def _onnx_inputs(onnx_path: Path) -> tuple[dict[str, tuple], set[str]]:
    """(graph inputs name → dims with axis names, numpy names of every float type in the graph)."""
    onnx = require("onnx", extra="export")
    proto = onnx.load(str(onnx_path), load_external_data=False)  # headers only: dtypes, no weights
    g = proto.graph
    weights = {t.name for t in g.initializer}
    inputs = {
        v.name: tuple(d.dim_param if d.dim_param else (d.dim_value or "?") for d in v.type.tensor_type.shape.dim)
        for v in g.input
        if v.name not in weights
    }
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
            raise ExportError(
                f"TensorRT {trt.__version__} has neither NetworkDefinitionCreationFlag.STRONGLY_TYPED "
                "nor BuilderFlag.FP16, so it cannot build a fp16 plan here"
            )
        return 0, "fp16_flag_fallback"
    return 0, "fp32_weak_typing"


WEAK_FP16 = "fp16_weak_typed_islands_fp32"  # the fallback when a strongly typed parse fails (see build_plan)
# The fp16 export's float32 islands (export/onnx_export.FP32_ISLAND_OPS; a test keeps the keys equal) as the
# TensorRT layers the parser makes of them: pinned to float32 in a weakly typed fp16 build.
ISLAND_LAYERS = {
    "LayerNormalization": "NORMALIZATION",
    "Softmax": "SOFTMAX",
    "ReduceMean": "REDUCE",
    "ReduceSum": "REDUCE",
}
# the islands' arithmetic (masking, squared errors, input preparation): pinned where the graph types them float32
ISLAND_ARITHMETIC = ("ELEMENTWISE", "UNARY")


def _parse(trt, builder, flags: int, onnx_path: Path, logger) -> tuple[object, object, list[str]]:
    """A network with `flags` parsed from the graph: (network, parser, errors; [] when it parsed)."""
    logger.errors.clear()  # only this parse's messages (a fallback parse follows a failed one)
    network = builder.create_network(flags)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return network, parser, []
    return (
        network,
        parser,
        [str(parser.get_error(i)) for i in range(parser.num_errors)] or list(logger.errors) or ["no reason given"],
    )


def _pin_fp32_islands(trt, network) -> dict[str, int]:
    """Weak typing: keep the fp16 graph's float32 islands in float32, as the strongly typed plan would.

    Every normalization, softmax and reduce layer (the ops of `ISLAND_LAYERS`), and every elementwise /
    unary layer whose outputs the parsed graph types float32, computes and outputs in float32; with
    OBEY_PRECISION_CONSTRAINTS the builder may not move them to fp16. Returns pinned layers per type.
    """
    always = {getattr(trt.LayerType, t) for t in set(ISLAND_LAYERS.values())}
    typed = {getattr(trt.LayerType, t) for t in ISLAND_ARITHMETIC if hasattr(trt.LayerType, t)}
    pinned: dict[str, int] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        fp32_out = bool(outputs) and all(t.dtype == trt.float32 for t in outputs)
        if layer.type in always or (layer.type in typed and fp32_out):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
            name = getattr(layer.type, "name", str(layer.type))
            pinned[name] = pinned.get(name, 0) + 1
    return pinned


# ---------------------------------------------------------------- build
def build_plan(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    graph: str = "scorer",
    precision: str = "fp16",
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 64,
    classes=(1, 8, 64),
    workspace_gb: float = 2.0,
    opt_level: int = 3,
    timing_cache: str | Path | None = None,
    dynamic_inputs: dict | None = None,
    allow_tf32: bool = False,
    profiles: int = 1,
) -> dict:
    """Build a TensorRT plan from an exported ONNX graph and return its manifest record.

    Args:
        onnx_path: the graph (external weight files next to it are found by the parser).
        out_dir: where `plan_name(graph, precision, <TensorRT version>)` is written (atomically).
        precision: "fp16" needs a graph whose types are already fp16 (checked); "fp32" a float32 one.
        min_batch, opt_batch, max_batch: the profile of every input's "batch" axis.
        classes: (min, opt, max) of the "classes" axis, or an int to fix it. A bundle's plans take both
            ranges from its IO spec (`io.axes`, see export/build_engine.py), so that their profiles are
            the IO spec's (`IOSpec.profile`, the same derivation).
        workspace_gb: builder workspace pool limit. opt_level: builder optimization level (0–5).
        timing_cache: a file; loaded if it exists, and saved (atomically) after the build.
        dynamic_inputs: name → (min, opt, max) shapes, for inputs with other dynamic axes.
        allow_tf32: leave TF32 on for float32 matmuls (off by default: fp32 means fp32).
        profiles: identical copies of the optimization profile (1..MAX_PROFILES): how many execution
            contexts may run the plan at once (TensorRT: contexts in concurrent use need separate profiles).
            Each copy lengthens the build and the plan; each running context holds its own activations.
    Returns:
        The plan record: file, sha256, bytes, graph, precision, precision_mode ("strongly_typed" |
        "fp16_flag_fallback" | "fp16_weak_typed_islands_fp32" (a strongly typed parse failed) | "fp32_weak_typing"), tensorrt_version, gpu_name, compute_capability,
        profile, profiles (only when > 1), workspace_bytes, opt_level, tf32, timing_cache, build_seconds, onnx,
        onnx_sha256.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not supported; use one of {list(PRECISIONS)}")
    if not 0 <= int(opt_level) <= 5 or not workspace_gb > 0:
        raise ConfigError(f"opt_level must be 0..5 and workspace_gb > 0, got {opt_level}, {workspace_gb}")
    batch = _triple("(min_batch, opt_batch, max_batch)", (min_batch, opt_batch, max_batch))
    profiles = check_profiles(profiles)
    trt = _import_trt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"no ONNX graph at {onnx_path}; export it first (export/onnx_export.py)")
    dims, float_types = _onnx_inputs(onnx_path)
    if precision == "fp16" and "float16" not in float_types:
        raise ExportError(
            f"{onnx_path} has no float16 tensors, so a strongly typed build would make a float32 plan "
            "and call it fp16. Build fp16 plans from the fp16 export (export_scorer(..., 'fp16'))."
        )
    if precision == "fp32" and "float16" in float_types:
        raise ExportError(f"{onnx_path} holds float16 tensors; a fp32 plan must come from the fp32 export")
    profile = profile_shapes(dims, batch, classes, dynamic_inputs)
    gpu_name, capability = gpu_info()

    logger = _make_logger(trt)
    builder = trt.Builder(logger)
    flags, mode = _network_flags(trt, precision)
    network, parser, errors = _parse(trt, builder, flags, onnx_path, logger)  # parser: kept alive with the network
    if errors and mode == "strongly_typed" and precision == "fp16":
        # onnx-tensorrt 10.1 sets a compute precision on LayerNormalization, which strongly typed networks
        # refuse; later parsers guard it (unknown for JetPack 6's 10.3). Fall back, and say so.
        log.warning(
            "TensorRT %s could not parse %s as a strongly typed network (%s); building fp16 with weak typing "
            "and the graph's float32 islands (normalization, softmax, reductions and their arithmetic) pinned to "
            "fp32 instead: the record says precision_mode=%r",
            trt.__version__,
            onnx_path.name,
            errors[0],
            WEAK_FP16,
        )
        flags, mode = 0, WEAK_FP16
        network, parser, errors = _parse(trt, builder, flags, onnx_path, logger)
    if errors:
        raise ExportError(
            f"TensorRT {trt.__version__} could not parse {onnx_path}:\n  "
            + "\n  ".join(errors)
            + "\nAn unsupported op or dtype must be changed in the export (tdsm_edge/models/folded.py)."
        )
    net_inputs = [network.get_input(i).name for i in range(network.num_inputs)]
    if sorted(net_inputs) != sorted(profile):
        raise ExportError(f"the parsed network's inputs {net_inputs} differ from the ONNX graph's {list(profile)}")

    config = builder.create_builder_config()
    workspace = int(workspace_gb * (1 << 30))
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(opt_level)
    if mode == WEAK_FP16:
        config.set_flag(trt.BuilderFlag.FP16)
        obey = getattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS", None)
        if obey is not None:
            config.set_flag(obey)
        log.info("float32 islands pinned (layers per type): %s", _pin_fp32_islands(trt, network))
    if mode == "fp16_flag_fallback":
        log.warning(
            "TensorRT %s has no STRONGLY_TYPED networks: building fp16 with BuilderFlag.FP16 (weak typing); "
            "the record says precision_mode='fp16_flag_fallback'",
            trt.__version__,
        )
        config.set_flag(trt.BuilderFlag.FP16)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None and not allow_tf32:
        config.clear_flag(tf32)
    for index in range(profiles):  # identical copies: one per execution context that may run at once
        opt = builder.create_optimization_profile()
        for name, s in profile.items():
            opt.set_shape(name, s["min"], s["opt"], s["max"])
        if config.add_optimization_profile(opt) != index:
            raise ExportError(f"TensorRT rejected optimization profile {index} ({profile})")
    cache_path = Path(timing_cache) if timing_cache is not None else None
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        if cache is None or not config.set_timing_cache(cache, False):  # ignore_mismatch=False
            raise ExportError(
                f"TensorRT {trt.__version__} refused the timing cache {cache_path} (written by another TensorRT "
                "version or GPU, or damaged); delete it, or pass another --timing-cache"
            )

    log.info(
        "building %s %s plan from %s (TensorRT %s, %s, %s)",
        precision,
        graph,
        onnx_path,
        trt.__version__,
        gpu_name,
        mode,
    )
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        raise ExportError(
            f"TensorRT {trt.__version__} failed to build {onnx_path}:\n  "
            + "\n  ".join(logger.errors)
            + f"\nIf it ran out of memory, raise workspace_gb (now {workspace_gb}) or lower max_batch."
        )
    data = memoryview(plan).cast("B")
    out = Path(out_dir) / plan_name(graph, precision, trt.__version__)
    with atomic_path(out) as tmp:  # a failed write never leaves a partial plan under the final name
        tmp.write_bytes(data)
    cache = config.get_timing_cache() if cache_path is not None else None
    blob = cache.serialize() if cache is not None else None  # either may be None: nothing to save then
    if blob is not None:
        with atomic_path(cache_path) as tmp:
            tmp.write_bytes(memoryview(blob).cast("B"))
    elif cache_path is not None:
        log.warning("TensorRT returned no timing cache after the build; %s was not updated", cache_path)
    log.info("wrote %s (%.1f MB) in %.1f s", out, data.nbytes / 1e6, seconds)
    return dict(
        file=out.name,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=int(data.nbytes),
        graph=graph,
        precision=precision,
        precision_mode=mode,
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=capability,
        profile=profile,
        **({"profiles": profiles} if profiles > 1 else {}),  # absent = 1, so older runtimes load default plans
        workspace_bytes=workspace,
        opt_level=int(opt_level),
        tf32=bool(tf32 is not None and allow_tf32),
        timing_cache=cache_path.name if cache_path else None,
        build_seconds=round(seconds, 3),
        onnx=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
    )


# ---------------------------------------------------------------- engine
class TrtEngine(_runner.TrtEngine):
    """One TensorRT plan through its stages: build → load → activate → allocate → infer.

    ```
    eng = TrtEngine()
    record = eng.build("scorer_fp16.onnx", "engines/demo")          # or load an existing plan:
    eng.load("engines/demo/" + record["file"], expected_record=record, rebuild_cmd="python -m export.build_engine ...")
    eng.activate(); eng.allocate({"z": (B, Dz), "ada_x": (K, depth, 6, D), ...})
    errors = eng.infer({"z": z, **tables})["errors"]                # (B, K) float32
    ```
    Everything but `build` is the runtime's `tdsm_edge.runtime.trt_engine.TrtEngine`.
    """

    def build(self, onnx_path: str | Path, out_dir: str | Path, **kwargs) -> dict:
        """`build_plan(onnx_path, out_dir, **kwargs)`; remembers the plan path and record."""
        self.record = build_plan(onnx_path, out_dir, **kwargs)
        self.plan_path = Path(out_dir) / self.record["file"]
        return self.record
