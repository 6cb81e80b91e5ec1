"""An NVIDIA Triton model repository for the scorer: clients send z, get (B, K) errors.

Layout written:
    <repo>/<model_name>/config.pbtxt
    <repo>/<model_name>/labels.txt        class names, one a line, in score order
    <repo>/<model_name>/1/model.onnx      backend "onnxruntime" (platform onnxruntime_onnx)
    <repo>/<model_name>/1/model.plan      backend "tensorrt"    (platform tensorrt_plan)

Why the class tables are baked into the served model. The scorer graph takes z `(B, Dz)` plus six
class tables `(K, ...)` with no batch axis. Triton's `max_batch_size > 0` means "every input and
output has a leading batch axis", which the tables do not have; the alternative, `max_batch_size: 0`
with explicit -1 dims, turns off the dynamic batcher and makes every client send all the tables
(megabytes at paper size) with every request. For many robots calling one server the useful shape
is the opposite: the class set is fixed per deployment, so the tables become initializers of a
wrapper graph (`bake_tables`), each robot sends only its z rows, and Triton's dynamic batcher
merges requests from many robots into one batched call, which is exactly the batch axis the scorer
is built for. A new class set means a new model version (re-run this with the new bundle).

Outputs: `errors (B, K)` as the scorer defines them (lower = better) and `scores = -errors`
(higher = better). `labels.txt` is attached to `scores`, because Triton's classification extension
(`class_count` in a request) returns the top-k highest values: on `errors` it would return the
worst classes.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from tdsm_edge.errors import BundleError, ConfigError, MissingDependencyError, require
from tdsm_edge.runtime.iospec import BATCH, CLASSES, GraphIO
from tdsm_edge.runtime.manifest import load_manifest, load_tables
from tdsm_edge.runtime.trt_engine import tensorrt_available

from .tensorrt_build import build_plan

log = logging.getLogger(__name__)

BACKENDS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
TRITON_TYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "float64": "TYPE_FP64",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "int8": "TYPE_INT8",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
LABELS_FILE = "labels.txt"
SCORE_OUTPUT = "scores"
_EXTERNAL_DATA_BYTES = 1_500_000_000  # protobuf caps one file at 2 GB; above this, weights go to model.onnx.data


# ---------------------------------------------------------------- the served graph
def bake_tables(onnx_path: str | Path, tables: dict[str, np.ndarray], io: GraphIO | dict | None = None):
    """The scorer graph with its class tables as initializers: input z only, outputs errors and scores.

    Args:
        onnx_path: the scorer graph (`z (B, Dz)`, tables `(K, ...)` → `errors (B, K)`).
        tables: name → array `(K, ...)`; each is cast to the dtype the graph declares for it (the
            fp16 graph's contract: fp16 tables, key_bias float32) and must stay finite.
        io: optional IO spec of the graph (`iospec.GraphIO` or its dict), checked against it exactly.
    Returns:
        (onnx.ModelProto, K). Every remaining input and output has the leading "batch" axis, the
        class axis is fixed to K, and `scores = -errors` is added when the graph outputs "errors".
    """
    onnx = require("onnx", extra="export")
    from onnx import helper, numpy_helper

    proto = onnx.load(str(onnx_path))  # with any external weights
    g = proto.graph
    weights = {t.name for t in g.initializer}
    inputs = {v.name: v for v in g.input if v.name not in weights}
    if io is not None:
        _check_io(io, [*inputs.values()], list(g.output), onnx_path)
    unknown = sorted(set(tables) - set(inputs))
    if unknown or not tables:
        raise BundleError(f"tables {unknown or '(none)'} are not inputs of {onnx_path} (inputs: {list(inputs)})")
    counts = {name: np.shape(a)[0] if np.ndim(a) else None for name, a in tables.items()}
    if len(set(counts.values())) != 1 or None in counts.values():
        raise BundleError(f"every class table needs the same number of rows K, got {counts}")
    K = int(next(iter(counts.values())))
    for name, arr in tables.items():
        v = inputs[name]
        want = np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
        dims = _dims(v)
        if not dims or dims[0] != CLASSES:
            raise BundleError(
                f"input {name} of {onnx_path} has no leading {CLASSES!r} axis (dims {dims}), so it is not a class table"
            )
        arr = np.asarray(arr)
        if arr.ndim != len(dims) or any(isinstance(d, int) and d != n for d, n in zip(dims, arr.shape)):
            raise BundleError(f"table {name} has shape {arr.shape}; {onnx_path} declares {dims}")
        if arr.dtype != want:
            if not np.can_cast(arr.dtype, want, "same_kind"):
                raise BundleError(f"table {name} is {arr.dtype}; the graph takes {want} and that cast is unsafe")
            with np.errstate(over="ignore"):
                cast = arr.astype(want)
            if not np.array_equal(np.isfinite(cast), np.isfinite(arr)):
                raise BundleError(f"table {name} overflows {want}: its values do not fit the graph's dtype")
            arr = cast
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        g.input.remove(v)
    for v in [*g.input, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != BATCH:
            raise BundleError(
                f"{v.name} in {onnx_path} has no leading {BATCH!r} axis, so Triton cannot batch it; "
                f"bake it as a table or export it with a batch axis"
            )
        for d in dims:
            if d.dim_param == CLASSES:
                d.dim_value = K  # oneof: clears the dim_param
    del g.value_info[:]  # intermediate shapes named the class axis; runtimes re-infer them
    outputs = {v.name: v for v in g.output}
    if "errors" in outputs and SCORE_OUTPUT not in outputs:
        g.node.append(helper.make_node("Neg", ["errors"], [SCORE_OUTPUT], name="tdsm_scores_from_errors"))
        err = outputs["errors"].type.tensor_type
        g.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, err.elem_type, [BATCH, K]))
    proto.doc_string = (proto.doc_string + "\n" if proto.doc_string else "") + (
        f"tdsm-edge scorer for serving: {K} classes' tables baked in as constants; input z, outputs "
        f"errors (lower = better) and scores = -errors."
    )
    return proto, K


def _dims(v) -> tuple:
    return tuple(d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim)


def _check_io(io, inputs: list, outputs: list, onnx_path) -> None:
    """The bundle's IO spec (a GraphIO or its dict) must describe the graph exactly."""
    from onnx import helper

    spec = io if isinstance(io, GraphIO) else GraphIO.from_dict(io)

    def tensor(v):
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)).name
        return SimpleNamespace(name=v.name, dtype=dtype, dims=_dims(v))

    problems = spec.mismatches([tensor(v) for v in inputs], [tensor(v) for v in outputs])
    if problems:
        raise BundleError(
            f"the bundle's IO spec does not describe {onnx_path}: "
            + "; ".join(problems)
            + ". The bundle is inconsistent: rebuild it"
        )


def _save_onnx(proto, path: Path) -> None:
    onnx = require("onnx", extra="export")
    if proto.ByteSize() > _EXTERNAL_DATA_BYTES:
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(proto, str(path))
    onnx.checker.check_model(str(path))


# ---------------------------------------------------------------- config.pbtxt
def config_pbtxt(
    model_name: str,
    platform: str,
    max_batch_size: int,
    inputs: list[tuple],
    outputs: list[tuple],
    *,
    label_output: str | None = SCORE_OUTPUT,
    instance_kind: str = "KIND_GPU",
    instance_count: int = 1,
    max_queue_delay_us: int = 500,
    preferred_batch_sizes: list[int] | None = None,
    header: str = "",
) -> str:
    """Triton's model configuration (protobuf text). inputs/outputs: (name, numpy dtype name, dims
    without the batch axis). ConfigError on values Triton would refuse to load (preferred batch sizes
    outside 1..max_batch_size, a non-positive instance count, a negative queue delay)."""
    check_batching(max_batch_size, preferred_batch_sizes, instance_count, max_queue_delay_us)

    def q(s: str) -> str:
        return json.dumps(str(s), ensure_ascii=False)

    def tensor(name, dtype, dims, labels=False) -> str:
        lines = [
            f"    name: {q(name)}",
            f"    data_type: {TRITON_TYPES[dtype]}",
            f"    dims: [ {', '.join(str(-1 if isinstance(d, str) or not d else int(d)) for d in dims)} ]",
        ]
        if labels:
            lines.append(f"    label_filename: {q(LABELS_FILE)}")
        return "  {\n" + "\n".join(lines) + "\n  }"

    batcher = [f"  max_queue_delay_microseconds: {int(max_queue_delay_us)}"]
    if preferred_batch_sizes:
        batcher.insert(0, f"  preferred_batch_size: [ {', '.join(str(int(b)) for b in preferred_batch_sizes)} ]")
    parts = [
        *(f"# {line}".rstrip() for line in header.splitlines()),
        f"name: {q(model_name)}",
        f"platform: {q(platform)}",
        f"max_batch_size: {int(max_batch_size)}",
        "version_policy: { latest: { num_versions: 1 } }",
        "input [\n" + ",\n".join(tensor(*t) for t in inputs) + "\n]",
        "output [\n" + ",\n".join(tensor(*t, labels=t[0] == label_output) for t in outputs) + "\n]",
        "dynamic_batching {\n" + "\n".join(batcher) + "\n}",
        f"instance_group [\n  {{\n    count: {int(instance_count)}\n    kind: {instance_kind}\n  }}\n]",
    ]
    return "\n".join(parts) + "\n"


INT32_MAX = 2**31 - 1  # Triton's int32 fields


def check_batching(
    max_batch_size: int, preferred: list[int] | None, instance_count: int = 1, max_queue_delay_us: int = 0
) -> None:
    """Triton's rules for the batching fields we write (it refuses to load a model breaking them)."""

    def whole(v) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not whole(max_batch_size) or not 1 <= max_batch_size <= INT32_MAX:
        raise ConfigError(f"max_batch_size must be a whole number from 1 to {INT32_MAX}, got {max_batch_size!r}")
    if preferred is not None and not isinstance(preferred, (list, tuple)):
        raise ConfigError(f"preferred batch sizes must be a list of whole numbers, got {preferred!r}")
    bad = [b for b in preferred or () if not whole(b) or not 1 <= b <= max_batch_size]
    if bad:
        raise ConfigError(
            f"preferred batch sizes {bad} lie outside 1..max_batch_size={max_batch_size}: Triton refuses to load "
            "such a model; pass sizes up to the max batch, or raise max_batch_size"
        )
    if not (whole(instance_count) and 1 <= instance_count <= INT32_MAX) or not (
        whole(max_queue_delay_us) and 0 <= max_queue_delay_us < 2**63
    ):
        raise ConfigError(
            f"instance_count must be >= 1 and max_queue_delay_us >= 0, got {instance_count} and {max_queue_delay_us}"
        )


# ---------------------------------------------------------------- repository writers
def write_triton_model(
    onnx_path: str | Path,
    tables: dict[str, np.ndarray],
    io: GraphIO | dict | None,
    repo_dir: str | Path,
    *,
    class_names: list[str],
    model_name: str = "tdsm_scorer",
    max_batch_size: int = 64,
    backend: str = "onnxruntime",
    plan_path: str | Path | None = None,
    instance_kind: str = "KIND_GPU",
    instance_count: int = 1,
    max_queue_delay_us: int = 500,
    preferred_batch_sizes: list[int] | None = None,
) -> Path:
    """Write `<repo_dir>/<model_name>/` (config.pbtxt, labels.txt, 1/model.onnx or 1/model.plan).

    `tables` (name → (K, ...), score order) and `class_names` (K) describe the served class set;
    `io` is the scorer's IO spec (`iospec.GraphIO` or its dict), checked against the graph, or None.

    The class tables are baked into the served graph (`bake_tables`): clients send `z (B, Dz)
    float32` and receive `errors (B, K)` and `scores (B, K)`; Triton batches requests up to
    `max_batch_size`. backend="tensorrt" builds `model.plan` from the baked graph here (needs
    TensorRT; profile batch 1..max_batch_size) unless `plan_path` gives one already built from
    `bake_tables`' graph with the Triton server's own TensorRT version. The model folder is
    replaced as a whole. Returns the model folder.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if plan_path is not None and backend != "tensorrt":
        raise ConfigError("plan_path is only used by backend='tensorrt'")
    check_batching(max_batch_size, preferred_batch_sizes, instance_count, max_queue_delay_us)  # before any work
    if instance_kind not in ("KIND_GPU", "KIND_CPU") or (backend == "tensorrt" and instance_kind != "KIND_GPU"):
        raise ConfigError(f"instance_kind must be KIND_GPU or KIND_CPU (KIND_GPU for TensorRT), got {instance_kind!r}")
    if any(not str(n).strip() or "\n" in str(n) for n in class_names):
        raise BundleError(f"class names must be non-empty single lines for {LABELS_FILE}, got {class_names!r}")
    if backend == "tensorrt" and plan_path is None and not tensorrt_available():
        raise MissingDependencyError(
            "backend='tensorrt' builds model.plan with TensorRT, which is not installed here. "
            "Build it where the Triton server runs (same TensorRT version): save "
            "bake_tables(...)'s graph, build_plan() it, and pass plan_path=; or use "
            "backend='onnxruntime'."
        )
    proto, K = bake_tables(onnx_path, tables, io)
    if K != len(class_names):
        raise BundleError(f"the tables have {K} classes but {len(class_names)} class names were given")
    platform, model_file = BACKENDS[backend]
    repo = Path(repo_dir)
    if repo.exists() and not repo.is_dir():
        raise BundleError(f"the Triton repository {str(repo)!r} is a file; pass a folder (--triton-repo DIR)")
    repo.mkdir(parents=True, exist_ok=True)
    final = repo / model_name
    _check_replaceable_model(final)
    stage = Path(tempfile.mkdtemp(prefix=f".{model_name}.", dir=repo))
    try:
        (stage / "1").mkdir()
        header = [
            f"tdsm-edge scorer for {K} classes, written by export/triton.py (edit the bundle, not this file).",
            "The class tables are constants inside the model: send z (B, Dz) raw skeleton features,",
            "get errors (B, K) (lower = better) and scores = -errors (labels.txt, score order).",
        ]
        if backend == "onnxruntime":
            _save_onnx(proto, stage / "1" / model_file)
        else:
            header += _place_plan(proto, stage / "1" / model_file, plan_path, max_batch_size)
        (stage / LABELS_FILE).write_text("".join(f"{n}\n" for n in class_names))
        g = proto.graph
        helper = require("onnx", extra="export").helper

        def spec(v) -> tuple:
            return v.name, str(np.dtype(helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))), _dims(v)[1:]

        weights = {t.name for t in g.initializer}
        text = config_pbtxt(
            model_name,
            platform,
            max_batch_size,
            [spec(v) for v in g.input if v.name not in weights],
            [spec(v) for v in g.output],
            instance_kind=instance_kind,
            instance_count=instance_count,
            max_queue_delay_us=max_queue_delay_us,
            preferred_batch_sizes=preferred_batch_sizes,
            header="\n".join(header),
        )
        (stage / "config.pbtxt").write_text(text)
        old = repo / f".{model_name}.old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(stage, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote Triton model %s (%s, %d classes, max batch %d)", final, platform, K, max_batch_size)
    return final


def _check_replaceable_model(folder: Path) -> None:
    """BundleError unless `folder` is absent or a model folder this module wrote (its config.pbtxt carries our
    header): such a folder is generated and replaced as a whole; any other folder is never touched."""
    if not folder.exists() and not folder.is_symlink():
        return
    config = folder / "config.pbtxt"
    ok = folder.is_dir() and not folder.is_symlink() and config.is_file() and not config.is_symlink()
    if not (ok and "tdsm-edge scorer" in config.read_text(errors="replace")[:300]):
        raise BundleError(
            f"refusing to replace {str(folder)!r}: it is not a Triton model folder written by tdsm-edge "
            "(no config.pbtxt with its header); nothing was changed. Pass another --triton-repo or "
            "move that folder away"
        )


def _place_plan(proto, dest: Path, plan_path, max_batch_size: int) -> list[str]:
    """Copy the given plan, or build one from the baked graph; returns config header lines."""
    if plan_path is not None:
        shutil.copyfile(plan_path, dest)
        return [
            f"TensorRT plan copied from {Path(plan_path).name}: it must come from bake_tables' graph and "
            "match the server's TensorRT version and GPU."
        ]
    with tempfile.TemporaryDirectory() as tmp:
        graph = Path(tmp) / "served.onnx"
        _save_onnx(proto, graph)
        fp16 = require("onnx", extra="export").TensorProto.FLOAT16
        precision = "fp16" if any(t.data_type == fp16 for t in proto.graph.initializer) else "fp32"
        rec = build_plan(
            graph,
            tmp,
            graph="triton_scorer",
            precision=precision,
            min_batch=1,
            opt_batch=min(8, max_batch_size),
            max_batch=max_batch_size,
            classes=1,
        )
        shutil.copyfile(Path(tmp) / rec["file"], dest)
    return [
        f"TensorRT {rec['tensorrt_version']} plan ({rec['precision_mode']}) built on {rec['gpu_name']} "
        f"(compute capability {rec['compute_capability']}); sha256 {rec['sha256']}. It loads only on that "
        "TensorRT version and GPU."
    ]


def write_triton_repo(
    bundle_dir: str | Path,
    repo_dir: str | Path,
    *,
    model_name: str = "tdsm_scorer",
    max_batch_size: int = 64,
    backend: str = "onnxruntime",
    **kwargs,
) -> Path:
    """Write a Triton model repository serving an engine bundle's scorer (see `write_triton_model`).

    Reads the bundle through `tdsm_edge.runtime.manifest` (files checked against their sha256): the scorer
    graph, `tables.npz` (float32; cast to the graph's table dtypes when baked), the class names and
    the scorer's IO spec. Returns `<repo_dir>/<model_name>`.
    """
    m = load_manifest(bundle_dir)
    return write_triton_model(
        m.path("scorer"),
        load_tables(m),
        m.io.graphs["scorer"],
        repo_dir,
        class_names=m.class_names,
        model_name=model_name,
        max_batch_size=max_batch_size,
        backend=backend,
        **kwargs,
    )
