"""The class-table schema: every per-class constant the scorer reads, declared once. Pure Python.

At a fixed timestep, everything the denoiser computes from a class's text alone is a constant of
that class: a *class table* (one row per class; K, the class axis, is always first). This module
names each table, its per-class dims (from the denoiser's config) and its dtype rule. Everything
else is derived from it:

    tdsm_edge/models/class_tables.py   the tables graph computes them (`ClassTablesGraph`) and `ClassTables` holds them
    tdsm_edge/models/folded.py         `FoldedScorer` checks its inputs with `check_tables`
    tdsm_edge/fastpath/tables.py       the GPU fast path checks and restacks them
    tdsm_edge/runtime/iospec.py        the scorer's and the tables graph's IO (`scorer_io`, `tables_io`)
    export/onnx_export.py              the export wrapper's named arguments (`table_names`)

Adding a table means: one `TableSpec` line here, and the forward passes that compute
(`ClassTablesGraph.forward`) and read it (`FoldedScorer.score_rows`, the fast path).

Scales are stored as `1 + scale` (modulate is `x·(1+scale)+shift`), so the rows of a modulation
table are (shift_msa, 1+scale_msa, gate_msa, shift_mlp, 1+scale_mlp, gate_mlp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tdsm_edge.errors import ConfigError, InputError

# precision name → the dtype a COMPUTE table has in a scorer of that precision
PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16"}
COMPUTE, FLOAT32 = "compute", "float32"  # dtype rules: the scorer's precision, or float32 always
JOINT, DECOUPLED = "joint", "decoupled"  # the denoiser's attention variants (DenoiserConfig.attention)


@dataclass(frozen=True)
class TableDims:
    """The denoiser dims the tables' shapes depend on."""

    hidden: int  # D
    tokens: int  # L, text tokens per class
    depth: int  # denoiser blocks
    attention: str = JOINT  # JOINT (published TDSM) | DECOUPLED (text queries see text keys only)

    @classmethod
    def of(cls, cfg) -> TableDims:
        """From a denoiser config (anything with hidden_size, num_tokens, depth[, attention])."""
        return cls(int(cfg.hidden_size), int(cfg.num_tokens), int(cfg.depth), str(getattr(cfg, "attention", JOINT)))


@dataclass(frozen=True)
class TableSpec:
    """One class table: its name, per-class dims (after K), dtype rule and meaning."""

    name: str
    dims: Callable[[TableDims], tuple[int, ...]]
    dtype: str  # COMPUTE | FLOAT32
    meaning: str
    min_depth: int = 1  # the table exists only for denoisers at least this deep
    attention: tuple[str, ...] = (JOINT, DECOUPLED)  # the variants that read it


def _qkv0_width(d: TableDims) -> int:
    """Block 0 is also the last when depth == 1: nothing reads its text queries, so k|v only."""
    return (3 if d.depth > 1 else 2) * d.hidden


# name → spec, in graph-input order
TABLE_SPEC: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec(
            "text0",
            lambda d: (d.tokens, d.hidden),
            COMPUTE,
            "text tokens entering block 0 (fl_embedder + fl_pos_embed); absent when depth == 1",
            min_depth=2,
            attention=(JOINT,),
        ),
        TableSpec(
            "text_qkv0",
            lambda d: (d.tokens, _qkv0_width(d)),
            COMPUTE,
            "block 0 text-stream q|k|v; k|v only when depth == 1",
            attention=(JOINT,),
        ),
        TableSpec(
            "text_kv",
            lambda d: (d.depth, d.tokens, 2 * d.hidden),
            COMPUTE,
            "every block's text keys|values (the decoupled text stream depends on the class alone)",
            attention=(DECOUPLED,),
        ),
        TableSpec(
            "key_bias",
            lambda d: (1 + d.tokens,),
            FLOAT32,
            "additive attention bias per key: 0 real, MASK_BIAS padded; skeleton key first",
        ),
        TableSpec(
            "ada_x",
            lambda d: (d.depth, 6, d.hidden),
            COMPUTE,
            "skeleton-stream modulation per block (shift, 1+scale, gate) × (msa, mlp)",
        ),
        TableSpec(
            "ada_c",
            lambda d: (d.depth, 6, d.hidden),
            COMPUTE,
            "text-stream modulation per block, same layout; block 0's msa rows are already folded into "
            "text_qkv0 and the last block reads only its msa shift/scale",
            attention=(JOINT,),
        ),
        TableSpec("ada_final", lambda d: (2, d.hidden), COMPUTE, "final layer (shift, 1+scale)"),
    )
}


def table_names(depth: int, attention: str = JOINT) -> tuple[str, ...]:
    """The tables a denoiser of `depth` blocks and `attention` variant reads, in graph-input order."""
    if attention not in (JOINT, DECOUPLED):
        raise ConfigError(f"denoiser attention {attention!r} is not one of {(JOINT, DECOUPLED)}")
    return tuple(n for n, s in TABLE_SPEC.items() if depth >= s.min_depth and attention in s.attention)


def table_dims(dims: TableDims) -> dict[str, tuple[int, ...]]:
    """Per-class dims (after K) of every table a denoiser of `dims` reads, in graph-input order."""
    return {n: TABLE_SPEC[n].dims(dims) for n in table_names(dims.depth, dims.attention)}


def table_dtype(name: str, precision: str) -> str:
    """dtype name of table `name` in a scorer of `precision` ("fp32" | "fp16")."""
    if precision not in PRECISION_DTYPES:
        raise ConfigError(f"precision {precision!r} is not supported; use one of {sorted(PRECISION_DTYPES)}")
    return FLOAT32 if TABLE_SPEC[name].dtype == FLOAT32 else PRECISION_DTYPES[precision]


def dtype_name(t) -> str:
    """numpy-style dtype name of a torch tensor or numpy array ("float32", "float16", …)."""
    return str(t.dtype).removeprefix("torch.")


def check_tables(tables: Mapping, dims: TableDims, who: str, precision: str | None = None, fix: str = "") -> int:
    """Raise InputError unless `tables` (name → tensor or array) are exactly the tables of `dims`,
    each `(K, *dims)` with one K, floating point, and — `precision` given — in their dtype for it.

    `who` names the consumer in the message; `fix` says how to make the right tables. Returns K (the
    first table's rows, as the tensor gives it).
    """
    want = table_dims(dims)
    hint = f"; {fix}" if fix else ""
    if sorted(tables) != sorted(want):
        raise InputError(f"{who} needs the class tables {list(want)}, got {sorted(tables)}{hint}")
    K = tables[next(iter(want))].shape[0]  # not int(): under torch.export that would make K static
    if any(t.ndim < 1 for t in tables.values()) or any(tables[n].shape[0] != K for n in want):
        rows = {n: tuple(tables[n].shape[:1]) for n in want}
        raise InputError(f"the class tables must have one row per class, the same K in all, got rows {rows}{hint}")
    for name, shape in want.items():
        t = tables[name]
        dt = table_dtype(name, precision) if precision else "float"
        got = dtype_name(t)
        if (
            t.ndim != 1 + len(shape)
            or tuple(t.shape[1:]) != shape
            or "float" not in got  # float16/32/64 and bfloat16
            or (precision and got != dt)
        ):
            raise InputError(
                f"class table {name!r} must be (K={K}, {', '.join(map(str, shape))}) {dt}, got "
                f"{tuple(t.shape)} {got}{hint}"
            )
    return K
