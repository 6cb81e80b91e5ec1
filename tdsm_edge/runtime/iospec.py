"""The IO spec of an engine bundle: ONE object that names every graph input/output and its dims.

It drives all three places that must agree on them:
    ONNX export        input/output names, dtypes, dynamic axes and trace shapes (`onnx_export.py`)
    TensorRT build     one optimisation profile per graph: min/opt/max shape of every input (`profile`)
    runtime buffers    the dtype and shape of each input for a given batch and class count (`shape`)
and it is stored in the bundle's manifest.json (`to_dict` / `from_dict`), where loading checks it
against the graphs.

Dims are ints (static) or axis names (dynamic): "batch" (samples per call), "classes" (rows of
the class tables; a class subset is a smaller K, never a rebuild) and "tokens" (the text graph's
token axis, L up to the tokenizer's max length). Each axis has a min/opt/max range; a fixed-batch
bundle (`--no-dynamic`) has min == opt == max. The text side ("text_encoder" and "tables" graphs,
for classes added at run time) always runs on ONNX Runtime: its ranges bound no TensorRT profile.

Numpy-free and torch-free: the lean runtime reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tdsm_edge.errors import BundleError, ConfigError

from .table_schema import TableDims, table_dims, table_dtype

BATCH, CLASSES, TOKENS = "batch", "classes", "tokens"
AXES = (BATCH, CLASSES, TOKENS)
DTYPES = ("float32", "float16", "bool", "int64", "int32")
SCORER_INPUT, SCORER_OUTPUT = "z", "errors"
# the text side's graphs: class text → class tables (tables_io) and prompt tokens → text features (text_io)
TABLES_GRAPH, TEXT_GRAPH = "tables", "text_encoder"
TEXT_INPUTS, TEXT_OUTPUTS = ("input_ids", "attention_mask"), ("global", "local", "mask")


@dataclass(frozen=True)
class TensorIO:
    """One graph input or output."""

    name: str
    dtype: str  # numpy dtype name (DTYPES)
    dims: tuple  # int (static) or axis name (BATCH | CLASSES)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")
        bad = [d for d in self.dims if not (isinstance(d, int) and d > 0 or d in AXES)]
        if bad:
            raise ConfigError(
                f"tensor {self.name!r}: dims {self.dims} hold {bad}; a dim is a positive int or one of the axes {AXES}"
            )

    def shape(self, sizes: Mapping[str, int]) -> tuple[int, ...]:
        """Concrete shape for axis sizes, e.g. `shape({"batch": 4, "classes": 5})`."""
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.dims)

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "dims": list(self.dims)}

    @classmethod
    def from_dict(cls, d: Mapping) -> TensorIO:
        return cls(str(d["name"]), str(d["dtype"]), tuple(d["dims"]))


@dataclass(frozen=True)
class AxisRange:
    """min/opt/max size of a dynamic axis (the TensorRT profile and the runtime's chunk size)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not (isinstance(self.min, int) and 1 <= self.min <= self.opt <= self.max):
            raise ConfigError(f"an axis range needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    @classmethod
    def for_batch(cls, batch: int, dynamic: bool) -> AxisRange:
        """The export CLI's rule (as ultralytics): dynamic → 1 / max(1, batch // 2) / batch; fixed → batch."""
        if batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {batch}")
        return cls(1, max(1, batch // 2), batch) if dynamic else cls(batch, batch, batch)


@dataclass(frozen=True)
class GraphIO:
    """Inputs and outputs of one graph, in graph order."""

    inputs: tuple[TensorIO, ...]
    outputs: tuple[TensorIO, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in (*self.inputs, *self.outputs)]
        if len(set(names)) != len(names):
            raise ConfigError(f"graph IO names must be unique, got {names}")

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def tensor(self, name: str) -> TensorIO:
        for t in (*self.inputs, *self.outputs):
            if t.name == name:
                return t
        raise KeyError(name)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """ONNX dynamic axes: tensor name → {axis index: axis name}."""
        tensors = (*self.inputs, *self.outputs)
        out = {t.name: {i: d for i, d in enumerate(t.dims) if isinstance(d, str)} for t in tensors}
        return {k: v for k, v in out.items() if v}

    def mismatches(self, inputs: Iterable, outputs: Iterable) -> list[str]:
        """What differs between this spec and a graph's actual IO (objects with name, dtype, shape/dims).

        Dims must be equal: the same int, or the same axis name for a dynamic axis.
        """
        problems = []
        for kind, want, got in (("input", self.inputs, list(inputs)), ("output", self.outputs, list(outputs))):
            got_names = [g.name for g in got]
            if got_names != [w.name for w in want]:
                problems.append(f"{kind}s are {got_names}, the spec says {[w.name for w in want]}")
                continue
            for w, g in zip(want, got):
                dims = tuple(getattr(g, "dims", None) or getattr(g, "shape", ()))
                if str(g.dtype) != w.dtype:
                    problems.append(f"{kind} {w.name!r} is {g.dtype}, the spec says {w.dtype}")
                if len(dims) != len(w.dims) or any(s != d for s, d in zip(w.dims, dims)):
                    problems.append(f"{kind} {w.name!r} has dims {list(dims)}, the spec says {list(w.dims)}")
        return problems

    def to_dict(self) -> dict:
        return {"inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    @classmethod
    def from_dict(cls, d: Mapping) -> GraphIO:
        return cls(
            tuple(TensorIO.from_dict(t) for t in d["inputs"]), tuple(TensorIO.from_dict(t) for t in d["outputs"])
        )

    @classmethod
    def from_specs(cls, inputs: Iterable, outputs: Iterable) -> GraphIO:
        """From objects with name, dtype, shape (an `ExportRecord`'s TensorSpecs)."""
        conv = lambda s: TensorIO(s.name, str(s.dtype), tuple(s.shape))  # noqa: E731
        return cls(tuple(conv(s) for s in inputs), tuple(conv(s) for s in outputs))


@dataclass(frozen=True)
class IOSpec:
    """Every graph of a bundle by name ("scorer", "encoder", "tables", "text_encoder") plus the axis ranges
    they share."""

    graphs: dict[str, GraphIO]
    axes: dict[str, AxisRange] = field(default_factory=dict)

    def __post_init__(self) -> None:
        used = {d for g in self.graphs.values() for t in (*g.inputs, *g.outputs) for d in t.dims if isinstance(d, str)}
        missing = sorted(used - set(self.axes))
        if missing:
            raise ConfigError(f"the IO spec uses the dynamic axes {missing} but gives no min/opt/max for them")

    def profile(self, graph: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """TensorRT optimisation profile: input name → (min shape, opt shape, max shape)."""
        return self.input_profile({t.name: t.dims for t in self.graphs[graph].inputs}, self.axes)

    @staticmethod
    def input_profile(
        inputs: Mapping[str, tuple], axes: Mapping[str, AxisRange]
    ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """The optimisation profile of inputs whose dims are ints (static) or names of `axes`: input name →
        (min shape, opt shape, max shape). The one derivation of a profile: `profile` above, and TensorRT's
        builder for the graph it reads (`export/tensorrt_build.py` profile_shapes)."""
        sizes = [{a: getattr(r, k) for a, r in axes.items()} for k in ("min", "opt", "max")]
        return {
            name: tuple(tuple(s[d] if isinstance(d, str) else int(d) for d in dims) for s in sizes)
            for name, dims in inputs.items()
        }

    def shape(self, graph: str, name: str, **sizes: int) -> tuple[int, ...]:
        """Runtime buffer shape of one tensor, e.g. `shape("scorer", "z", batch=4)`."""
        return self.graphs[graph].tensor(name).shape(sizes)

    def to_dict(self) -> dict:
        return {
            "graphs": {k: g.to_dict() for k, g in self.graphs.items()},
            "axes": {k: {"min": r.min, "opt": r.opt, "max": r.max} for k, r in self.axes.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> IOSpec:
        """Parse a manifest's "io" entry; BundleError when it is malformed."""
        try:
            return cls(
                {k: GraphIO.from_dict(g) for k, g in d["graphs"].items()},
                {k: AxisRange(int(r["min"]), int(r["opt"]), int(r["max"])) for k, r in d["axes"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BundleError(f"the manifest's IO spec is malformed ({type(e).__name__}: {e})") from e


def scorer_io(cfg, precision: str) -> GraphIO:
    """The scorer graph's IO for a denoiser config (anything with z_dim, hidden_size, num_tokens, depth).

    `z (batch, Dz) float32` + the class tables (classes, ...) → `errors (batch, classes) float32`.
    The tables, their dims and dtypes are those of `table_schema` (compute dtype of `precision`,
    key_bias float32).
    """
    tables = tuple(
        TensorIO(n, table_dtype(n, precision), (CLASSES, *dims)) for n, dims in table_dims(TableDims.of(cfg)).items()
    )
    return GraphIO(
        (TensorIO(SCORER_INPUT, "float32", (BATCH, int(cfg.z_dim))), *tables),
        (TensorIO(SCORER_OUTPUT, "float32", (BATCH, CLASSES)),),
    )


def tables_io(cfg) -> GraphIO:
    """The tables graph's IO (always fp32) for a denoiser config (cond_dim, num_tokens, mask_text_padding, …).

    `fc (classes, Dc), fl (classes, L, Dc) float32[, mask (classes, L) bool]` → the scorer's class-table
    inputs, the same names, order and dims, in float32 (the dtype of tables.npz; the runtime casts them to
    the scorer's dtypes as it does the bundle's tables). `mask` exists only with `mask_text_padding`.
    """
    Dc, L = int(cfg.cond_dim), int(cfg.num_tokens)
    inputs = [TensorIO("fc", "float32", (CLASSES, Dc)), TensorIO("fl", "float32", (CLASSES, L, Dc))]
    if bool(cfg.mask_text_padding):
        inputs.append(TensorIO("mask", "bool", (CLASSES, L)))
    tables = tuple(TensorIO(t.name, "float32", t.dims) for t in scorer_io(cfg, "fp32").inputs[1:])
    return GraphIO(tuple(inputs), tables)


def text_io(num_tokens: int, dim: int) -> GraphIO:
    """The text graph's IO: one prompt per row (the classes axis), tokens up to the tokenizer's max length.

    `input_ids, attention_mask (classes, tokens) int64` → `global (classes, Dt), local (classes, L, Dt)
    float32, mask (classes, L) bool`.
    """
    L, Dt = int(num_tokens), int(dim)
    ids, am = (TensorIO(n, "int64", (CLASSES, TOKENS)) for n in TEXT_INPUTS)
    outputs = (
        TensorIO("global", "float32", (CLASSES, Dt)),
        TensorIO("local", "float32", (CLASSES, L, Dt)),
        TensorIO("mask", "bool", (CLASSES, L)),
    )
    return GraphIO((ids, am), outputs)
