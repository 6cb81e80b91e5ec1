"""Class tables in the layout the fast path reads, and the cache that keeps them per class set.

`FoldedScorer` reads the tables of `tdsm_edge.models.class_tables` one stream at a time. The fast
path runs both streams in one joint `(R, 1+L, D)` buffer, so it wants them stacked per stream and
the key bias in the form SDPA takes:

    ada         (K, depth, 2, 6, D) float32   [skeleton, text] × (shift, 1+scale, gate) × (msa, mlp)
    ada_final   (K, 1, 2, D)        float32   final layer (shift, 1+scale), skeleton stream only
    text0       (K, L, D)           compute   text tokens entering block 0 (None when depth == 1)
    text_qkv0   (K, L, 3D or 2D)    compute   block 0's text q|k|v
    mask        (K, S_pad)          compute   additive key bias: 0 real, -inf (fp16) / -1e9 (fp32)
                                              padded; S_pad = 1+L rounded up to 16 so SDPA's fused
                                              kernels take it without re-padding it every call

The decoupled student (`attention: decoupled`) carries the skeleton token alone: `ada` holds the
skeleton stream only, `(K, depth, 1, 6, D)`, there is no text0 / text_qkv0, and every block's text
keys|values come from
    text_kv     (K, depth, L, 2D)   compute   (its schema: tdsm_edge.runtime.table_schema)

The modulation tables stay float32 even in fp16 mode: they are tiny (read per row from L2) and
1 + scale rounded to fp16 would cost ~5e-4 relative on every modulated activation for nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

import torch

from tdsm_edge.errors import InputError
from tdsm_edge.models.class_tables import ClassTables
from tdsm_edge.runtime.table_schema import JOINT, TableDims, check_tables

MASK_ALIGN = 16  # SDPA's memory-efficient kernel re-pads a bias whose row stride is not a multiple of this


@dataclass
class FastClassTables:
    """The tables of one class set on the scorer's device (see the module docstring)."""

    ada: torch.Tensor
    ada_final: torch.Tensor
    text_qkv0: torch.Tensor | None
    mask: torch.Tensor
    has_mask: bool
    text0: torch.Tensor | None = None
    text_kv: torch.Tensor | None = None  # decoupled only

    @property
    def num_classes(self) -> int:
        return int(self.ada.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if isinstance(getattr(self, f.name), torch.Tensor)}

    def clone(self) -> FastClassTables:
        return FastClassTables(**{n: t.clone() for n, t in self.tensors().items()}, has_mask=self.has_mask)

    def copy_(self, other: FastClassTables) -> FastClassTables:
        """Copy another class set of the same K into these buffers (their addresses stay the same)."""
        for name, t in self.tensors().items():
            t.copy_(getattr(other, name))
        self.has_mask = other.has_mask
        return self


def fast_class_tables(
    tables: dict[str, torch.Tensor],
    depth: int,
    D: int,
    L: int,
    dtype: torch.dtype,
    device: torch.device,
    attention: str = JOINT,
) -> FastClassTables:
    """Convert `class_tables(...)` output (fp32, or fp16 for a fp16 scorer) to `FastClassTables`.

    Raises InputError on missing or misshaped tables, and on fp16 tables for a float32 scorer
    (that would claim a precision the tables no longer have).
    """
    K = check_tables(
        tables,
        TableDims(D, L, depth, attention),
        "the fast scorer",
        fix="compute tables with tdsm_edge.models.class_tables",
    )
    lower = [n for n, t in tables.items() if t.dtype != torch.float32]
    if dtype == torch.float32 and lower:
        raise InputError(
            f"class table {lower[0]!r} is {tables[lower[0]].dtype} but this scorer computes in float32; pass the "
            "float32 tables of class_tables(...) (not ClassTables.cast('fp16'))"
        )
    f32 = dict(device=device, dtype=torch.float32)
    streams = [tables["ada_x"]] + ([tables["ada_c"]] if attention == JOINT else [])
    ada = torch.stack(streams, dim=2).to(**f32).contiguous()  # (K, depth, 2 or 1, 6, D)
    ada_final = tables["ada_final"].to(**f32)[:, None].contiguous()  # (K, 1, 2, D)
    S = 1 + L
    S_pad = -(-S // MASK_ALIGN) * MASK_ALIGN
    key_bias = tables["key_bias"].to(**f32)  # (K, 1+L): 0 or MASK_BIAS
    mask = torch.zeros(K, S_pad, device=device, dtype=dtype)
    mask[:, :S] = key_bias.to(dtype)  # fp16: MASK_BIAS (-1e9) rounds to -inf; exp(-inf) = 0 as exp(-1e9) does
    text0 = tables["text0"].to(device, dtype).contiguous() if "text0" in tables else None
    on_device = lambda name: tables[name].to(device, dtype).contiguous() if name in tables else None  # noqa: E731
    return FastClassTables(
        ada=ada,
        ada_final=ada_final,
        text_qkv0=on_device("text_qkv0"),
        mask=mask,
        has_mask=bool((key_bias != 0).any()),
        text0=text0,
        text_kv=on_device("text_kv"),
    )


def _version(t: torch.Tensor) -> int:
    try:
        return int(t._version)
    except RuntimeError:  # inference-mode tensors have no version counter: in-place edits go unnoticed
        return -1


class FastTablesCache:
    """`FastClassTables` per class set, keyed by the identity (and version) of the source tensors.

    Passing the same table dict again (or the same tensors in a new dict) returns the converted
    tables without converting again; editing a source tensor in place (its version changes) or
    passing other tensors converts anew. Holds the source tensors, so their ids stay unique.
    """

    def __init__(self, convert, size: int = 4) -> None:
        self._convert, self._size = convert, size
        self._entries: OrderedDict = OrderedDict()

    def get(self, tables: dict[str, torch.Tensor] | ClassTables) -> FastClassTables:
        if isinstance(tables, ClassTables):
            tables = tables.as_dict()
        key = tuple(sorted((name, id(t), _version(t)) for name, t in tables.items()))
        hit = self._entries.get(key)
        if hit is not None:
            self._entries.move_to_end(key)
            return hit[1]
        fast = self._convert(tables)
        self._entries[key] = (dict(tables), fast)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return fast
