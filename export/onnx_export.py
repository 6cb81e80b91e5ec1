"""ONNX export of the folded scorer and the tables graph (opset 18, torch.export / dynamo).

Both graphs have dynamic axes: the scorer's batch `B` (input z, output errors) and classes `K`
(every class-table input and the output); the tables graph's `K` (all inputs and outputs). So a
new batch size, a class subset or a new class set needs no re-export.

FP16 graphs carry their types explicitly (the modules cast every island themselves; no autocast):
fp16 weights and activations, float32 LayerNorm / mask + softmax / error reduction / input prep.
`check_fp16_islands` verifies that on the exported file and raises rather than let a precision
change pass silently. Each export returns an `ExportRecord` (names, dtypes, dims, opset, the ops
per compute dtype) for the engine manifest.
"""

from __future__ import annotations

import copy
import keyword
import logging
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tdsm_edge.errors import ConfigError, ExportError, require
from tdsm_edge.models.class_tables import PRECISIONS, ClassTablesGraph
from tdsm_edge.models.denoiser import TDSMDenoiser
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.runtime.iospec import BATCH, CLASSES, scorer_io

log = logging.getLogger(__name__)

OPSET = 18
# the IR version written: ONNX Runtime 1.17 (the oldest pyproject declares) loads IR <= 9, and refuses the
# exporter's IR 10; opset 18 needs IR >= 8, and these graphs use nothing newer (checked by onnx.checker)
IR_VERSION = 8
BATCH_AXIS, CLASS_AXIS = BATCH, CLASSES  # the IO spec's axis names
# ops that must compute in float32 inside a fp16 graph, and the ones that must really be fp16
FP32_ISLAND_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum")
FP16_HEAVY_OPS = ("MatMul", "Gemm")
_EXTERNAL_DATA_BYTES = 1_500_000_000  # above this the weights go to a side file (protobuf limit: 2 GB)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy-style name: float32 | float16 | bool | int64
    shape: tuple  # ints for static dims, axis names (str) for dynamic ones


@dataclass
class ExportRecord:
    """What an export wrote and the graph's contract, for the engine manifest."""

    graph: str  # "scorer" | "tables"
    path: str  # the .onnx file
    precision: str  # "fp32" | "fp16"
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    dynamic_axes: dict[str, dict[int, str]]  # input/output name → {axis: axis name}
    op_counts: dict[str, int]  # op type → nodes
    fp32_ops: dict[str, int]  # op type → nodes whose output is float32
    fp16_ops: dict[str, int]  # op type → nodes whose output is float16
    files: list[str] = field(default_factory=list)  # every file written (.onnx and any external data)

    def to_dict(self) -> dict:
        return asdict(self)


def export_scorer(
    scorer: FoldedScorer,
    path: str | Path,
    precision: str = "fp32",
    example_batch: int = 2,
    example_classes: int = 3,
    external_data: bool | None = None,
) -> ExportRecord:
    """Export `scorer` as an ONNX graph `z (B, Dz) float32, <class tables> (K, ...) → errors (B, K) float32`.

    Args:
        scorer: a FoldedScorer (not modified: a fp16 export casts a copy).
        path: output `.onnx` file.
        precision: "fp32" | "fp16". fp16 tables are fp16 except key_bias (float32).
        example_batch, example_classes: trace sizes (>= 2; the axes stay dynamic).
        external_data: weights in a side file; None = only when they exceed ~1.5 GB.
    Returns:
        The ExportRecord.
    """
    _check_args(precision, example_batch, example_classes)
    if scorer.precision != precision:
        scorer = copy.deepcopy(scorer).to_precision_(precision)
    scorer = scorer.eval()
    spec = scorer_io(scorer.cfg, precision)  # names, dtypes, dims: the bundle's IO spec
    dev = scorer.noises.device
    g = torch.Generator().manual_seed(0)
    sizes = {BATCH_AXIS: example_batch, CLASS_AXIS: example_classes}
    z, *tables = (torch.randn(t.shape(sizes), generator=g).to(dev, getattr(torch, t.dtype)) for t in spec.inputs)
    tables = dict(zip(scorer.names, tables))
    Bd, Kd = torch.export.Dim(BATCH_AXIS, min=1), torch.export.Dim(CLASS_AXIS, min=1)
    wrapper = _named_tables(scorer).eval()  # forward(z, <one argument per table>)
    dynamic = {"z": {0: Bd}, **{n: {0: Kd} for n in scorer.names}}
    record = _export(
        wrapper,
        (z, *(tables[n] for n in scorer.names)),
        None,
        dynamic,
        spec.output_names,
        spec.dynamic_axes(),
        path,
        "scorer",
        precision,
        external_data,
    )
    problems = spec.mismatches(record.inputs, record.outputs)
    if problems:
        raise ExportError(f"{record.path}: the exported graph breaks the IO spec: " + "; ".join(problems))
    return record


def export_tables(
    model: TDSMDenoiser,
    path: str | Path,
    t: int,
    precision: str = "fp32",
    example_classes: int = 3,
    external_data: bool | None = None,
) -> ExportRecord:
    """Export the tables graph `fc (K, Dc), fl (K, L, Dc) float32[, mask (K, L) bool] → class tables`.

    The mask input exists only when the model masks text padding (`cfg.mask_text_padding`); t is
    folded in at build. Outputs are named and shaped as `table_schema.TABLE_SPEC`, in `precision`
    (key_bias float32), ready to feed a scorer of the same precision.
    """
    _check_args(precision, 2, example_classes)
    module = ClassTablesGraph(model, t, precision).eval()
    cfg = model.cfg
    dev = module.t_emb.device
    g = torch.Generator().manual_seed(0)
    K = example_classes
    fc = torch.randn(K, cfg.cond_dim, generator=g).to(dev)
    fl = torch.randn(K, cfg.num_tokens, cfg.cond_dim, generator=g).to(dev)
    Kd = torch.export.Dim(CLASS_AXIS, min=1)
    args: tuple = (fc, fl)
    dynamic: dict = {"fc": {0: Kd}, "fl": {0: Kd}}
    inputs = ["fc", "fl"]
    if module.uses_mask:
        mask = torch.ones(K, cfg.num_tokens, dtype=torch.bool, device=dev)
        mask[0, cfg.num_tokens // 2 :] = False
        args, dynamic, inputs = (fc, fl, mask), {**dynamic, "mask": {0: Kd}}, inputs + ["mask"]
    axes = {n: {0: CLASS_AXIS} for n in (*inputs, *module.names)}
    record = _export(module, args, None, dynamic, list(module.names), axes, path, "tables", precision, external_data)
    _check_io(record, inputs, list(module.names))
    return record


class _TablesWrapper(torch.nn.Module):
    """Holds the scorer; `_named_tables` gives each wrapper class a forward naming every table."""

    def __init__(self, scorer: FoldedScorer) -> None:
        super().__init__()
        self.scorer = scorer


def _named_tables(scorer: FoldedScorer) -> torch.nn.Module:
    """`scorer` behind `forward(self, z, <one argument per class table>)`, for torch.export.

    Older torch.export (2.11) cannot match dynamic shapes to variadic keyword arguments, so the
    forward must name every table. It is generated from the scorer's table names (the schema in
    tdsm_edge/runtime/table_schema.py), so no table list is written by hand here.
    """
    names = tuple(scorer.names)
    if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names):
        raise ExportError(f"class table names must be identifiers, got {list(names)}")
    source = (
        f"def forward(self, z, {', '.join(names)}):\n"
        f"    return self.scorer(z, {', '.join(f'{n}={n}' for n in names)})\n"
    )
    namespace: dict = {}
    exec(compile(source, "<generated by export/onnx_export.py _named_tables>", "exec"), namespace)
    cls = type("_NamedTables", (_TablesWrapper,), {"forward": namespace["forward"]})
    return cls(scorer)


def check_fp16_islands(model) -> None:
    """Raise ExportError unless a fp16 graph keeps its contract: every LayerNormalization, Softmax,
    ReduceMean and ReduceSum reads and writes float32, and every MatMul / Gemm computes in fp16.

    `model` is an `onnx.ModelProto` or a path.
    """
    onnx = require("onnx", extra="export")
    proto = onnx.load(str(model)) if isinstance(model, (str, Path)) else model
    types = _value_types(proto)
    bad = []
    for node in proto.graph.node:
        float_ins = [types.get(i) for i in node.input[:1] if i]
        io = float_ins + [types.get(node.output[0])]
        if node.op_type in FP32_ISLAND_OPS and any(d != "float32" for d in io):
            bad.append(f"{node.op_type} {node.name!r} runs in {io} (must be float32)")
        if node.op_type in FP16_HEAVY_OPS and any(d != "float16" for d in io):
            bad.append(f"{node.op_type} {node.name!r} runs in {io} (must be float16 in a fp16 graph)")
    if bad:
        raise ExportError(
            "the fp16 graph breaks its precision contract:\n  "
            + "\n  ".join(bad)
            + "\nEvery op's dtype is set in tdsm_edge/models/folded.py and tdsm_edge/models/class_tables.py; fix the cast there."
        )


# ---------------------------------------------------------------- helpers
def _check_args(precision: str, example_batch: int, example_classes: int) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"ONNX export supports precision {sorted(PRECISIONS)}, got {precision!r}")
    if example_batch < 2 or example_classes < 2:
        # torch.export specialises a dimension traced at size 1, which would make the axis static
        raise ConfigError(
            f"example_batch and example_classes must be >= 2 (traced sizes), got {example_batch}, {example_classes}"
        )


def _export(module, args, kwargs, dynamic, output_names, axes, path, graph, precision, external_data) -> ExportRecord:
    onnx = require("onnx", extra="export")
    require("onnxscript", extra="export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external_data is None:
        nbytes = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
        external_data = nbytes > _EXTERNAL_DATA_BYTES
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            program = torch.onnx.export(
                module,
                args,
                kwargs=kwargs,
                dynamo=True,
                opset_version=OPSET,
                dynamic_shapes=dynamic,
                output_names=output_names,
                external_data=external_data,
                verbose=False,
            )
            program.save(str(path), external_data=external_data)
    except Exception as e:  # the exporter raises many types; name the graph and keep the cause
        raise ExportError(f"exporting the {precision} {graph} graph to {path} failed: {e}") from e
    header = onnx.load(str(path), load_external_data=False)  # weights stay where they are
    if header.ir_version > IR_VERSION:
        header.ir_version = IR_VERSION
        onnx.save_model(header, str(path))
    proto = onnx.load(str(path))
    onnx.checker.check_model(str(path))
    if precision == "fp16":
        check_fp16_islands(proto)
    # the side files from the header: onnx.load with external data clears the tensors' locations
    files = [str(path)] + sorted(str(path.parent / loc) for loc in _external_locations(header))
    record = _record(proto, graph, str(path), precision, axes, files)
    log.info("exported %s %s graph to %s: %d nodes", precision, graph, path, sum(record.op_counts.values()))
    return record


def _value_types(proto) -> dict[str, str]:
    """Element type name of every value in the graph, after ONNX shape inference."""
    onnx = require("onnx", extra="export")
    inferred = onnx.shape_inference.infer_shapes(proto)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.value_info, *g.input, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:  # constants are not in value_info
        if node.op_type == "Constant" and node.attribute:
            types.setdefault(node.output[0], node.attribute[0].t.data_type)
    return {name: _dtype_name(code) for name, code in types.items()}


def _dtype_name(code: int) -> str:
    onnx = require("onnx", extra="export")
    return str(onnx.helper.tensor_dtype_to_np_dtype(code)) if code else "unknown"


def _record(proto, graph, path, precision, axes, files) -> ExportRecord:
    types = _value_types(proto)

    def spec(v) -> TensorSpec:
        dims = tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
        return TensorSpec(v.name, _dtype_name(v.type.tensor_type.elem_type), dims)

    by_dtype: dict[str, Counter] = {"float32": Counter(), "float16": Counter()}
    for node in proto.graph.node:
        dt = types.get(node.output[0])
        if dt in by_dtype:
            by_dtype[dt][node.op_type] += 1
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return ExportRecord(
        graph=graph,
        path=path,
        precision=precision,
        opset=int(opset),
        inputs=[spec(v) for v in proto.graph.input],
        outputs=[spec(v) for v in proto.graph.output],
        dynamic_axes=axes,
        op_counts=dict(sorted(Counter(n.op_type for n in proto.graph.node).items())),
        fp32_ops=dict(sorted(by_dtype["float32"].items())),
        fp16_ops=dict(sorted(by_dtype["float16"].items())),
        files=files,
    )


def _external_locations(proto) -> set[str]:
    locs = set()
    for t in proto.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                locs.add(entry.value)
    return locs


def _check_io(record: ExportRecord, inputs: list[str], outputs: list[str]) -> None:
    """The graph's IO names, order and dynamic dims must be exactly what the record promises."""
    got_in, got_out = [s.name for s in record.inputs], [s.name for s in record.outputs]
    if got_in != inputs or got_out != outputs:
        raise ExportError(f"{record.path}: graph IO is {got_in} → {got_out}, expected {inputs} → {outputs}")
    for s in [*record.inputs, *record.outputs]:
        for axis, name in record.dynamic_axes.get(s.name, {}).items():
            if s.shape[axis] != name:
                raise ExportError(
                    f"{record.path}: {s.name} axis {axis} is {s.shape[axis]!r}, expected the dynamic axis {name!r}"
                )
