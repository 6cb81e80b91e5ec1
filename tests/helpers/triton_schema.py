"""Triton's own `ModelConfig` schema for the tests: config.pbtxt parsed as the server parses it, plus the
load-time rules of the server that the writer relies on.

The schema is the generated protobuf module that ships in the `tritonclient` wheel
(`tritonclient/grpc/model_config_pb2.py`, from Triton's model_config.proto). `make test` installs that
wheel with `--no-deps` (its pins — ml-dtypes <= 0.5.4, protobuf < 7 for the grpc extra — clash with
onnx's; the module itself needs only protobuf, and loads with protobuf 7). It is loaded from its file,
because `tritonclient.grpc`'s package import needs grpcio. Without the wheel the tests that need it skip.

    cfg = parse_config(text)                    # a ModelConfig message; unknown fields / enum values raise
    problems = server_rules(cfg, model_dir)     # [] when Triton's load-time checks we rely on pass
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import pytest

MODULE = "_tdsm_tests_triton_model_config_pb2"
DEFAULT_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}  # Triton's default_model_filename


@functools.cache
def model_config_pb2():
    """tritonclient's model_config_pb2 module, or None when the wheel is not installed."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        return None
    loader_spec = importlib.util.spec_from_file_location(MODULE, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[MODULE] = module
    loader_spec.loader.exec_module(module)
    return module


def require_schema():
    """The schema module, or skip (the tritonclient wheel is not installed: `make test` installs it)."""
    pb2 = model_config_pb2()
    if pb2 is None:
        pytest.skip("Triton's ModelConfig schema needs the tritonclient wheel (pip install --no-deps tritonclient)")
    return pb2


def parse_config(text: str):
    """config.pbtxt → inference.ModelConfig, strictly (an unknown field or enum value is a ParseError)."""
    from google.protobuf import text_format

    return text_format.Parse(text, require_schema().ModelConfig())


def type_name(value: int) -> str:
    """A DataType enum value's name, e.g. "TYPE_FP32"."""
    return require_schema().DataType.Name(value)


def server_rules(cfg, model_dir: Path, graph_io: dict | None = None) -> list[str]:
    """Triton's load-time checks (model_config_utils.cc, ValidateModelConfig / ValidateModelInput|Output)
    that a config we write must pass; each broken one as a sentence.

    graph_io: {name: (TYPE_* name, dims with the batch axis)} of the served graph, checked against the
        config's inputs and outputs (Triton's ONNX Runtime backend checks these at load time).
    """
    pb2 = require_schema()
    problems = []
    if cfg.name != model_dir.name:  # Triton: "directory name must equal model name"
        problems.append(f"model name {cfg.name!r} is not its folder's name {model_dir.name!r}")
    if cfg.platform not in DEFAULT_FILES:
        problems.append(f"platform {cfg.platform!r} is not one this writer uses")
    elif not (model_dir / "1" / DEFAULT_FILES[cfg.platform]).is_file():
        problems.append(f"version 1 has no {DEFAULT_FILES[cfg.platform]}")
    if cfg.max_batch_size < 0:
        problems.append("max_batch_size < 0")
    if cfg.HasField("dynamic_batching"):
        if cfg.max_batch_size == 0:
            problems.append("dynamic batching needs max_batch_size > 0")
        for size in cfg.dynamic_batching.preferred_batch_size:
            if not 1 <= size <= cfg.max_batch_size:
                problems.append(f"preferred_batch_size {size} outside 1..max_batch_size {cfg.max_batch_size}")
    for group in cfg.instance_group:
        if group.count < 1:
            problems.append(f"instance_group count {group.count} < 1")
        if cfg.platform == "tensorrt_plan" and group.kind != pb2.ModelInstanceGroup.KIND_GPU:
            problems.append("a TensorRT plan needs KIND_GPU instances")
    for kind, entries in (("input", cfg.input), ("output", cfg.output)):
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            problems.append(f"duplicate {kind} names {names}")
        for e in entries:
            if e.data_type == pb2.TYPE_INVALID:
                problems.append(f"{kind} {e.name!r} has no data_type")
            if not e.dims or any(d < -1 or d == 0 for d in e.dims):
                problems.append(f"{kind} {e.name!r} dims {list(e.dims)}: each must be > 0 or -1")
            label = getattr(e, "label_filename", "")
            if label and not (model_dir / label).is_file():
                problems.append(f"{kind} {e.name!r} names the missing label file {label!r}")
    if graph_io is not None:
        declared = {e.name: e for e in (*cfg.input, *cfg.output)}
        if sorted(declared) != sorted(graph_io):
            problems.append(f"the config declares {sorted(declared)}, the graph has {sorted(graph_io)}")
        for name, (type_, dims) in graph_io.items():
            e = declared.get(name)
            if e is None:
                continue
            if pb2.DataType.Name(e.data_type) != type_:
                problems.append(f"{name!r} is {pb2.DataType.Name(e.data_type)} in the config, {type_} in the graph")
            want = [-1 if isinstance(d, str) or not d else int(d) for d in (dims[1:] if cfg.max_batch_size else dims)]
            if list(e.dims) != want:
                problems.append(f"{name!r} dims {list(e.dims)} in the config, {want} in the graph")
            if cfg.max_batch_size and not (isinstance(dims[0], str) or dims[0] in (0, -1)):
                problems.append(f"{name!r} has no dynamic batch axis in the graph, but max_batch_size > 0")
    return problems
