"""Per-class constants of the TDSM denoiser at a fixed timestep: the class tables.

At a fixed t, everything the denoiser computes from the class text alone (and t) is a constant per
class. `class_tables` computes it once; `FoldedScorer` (folded.py) then only runs the per-sample
work. What is a constant (all exact: the same operations, run once per class instead of per row):

    c = t_emb(t) + fc_embedder(fc)           never stored; only its consumers are:
    every adaLN output (both streams, all blocks) and the final layer's shift/scale
    text tokens entering block 0             fl_embedder(fl) + fl_pos_embed
    block 0's text q|k|v                     LN → modulate → qkv_c of those tokens (they do not
                                             depend on the skeleton token yet)
    the key-padding mask                     as an additive float32 bias

After block 0's joint attention the text tokens have attended to the skeleton token, so from
there on they are per sample; nothing later is folded.

The tables' names, dims and dtypes are declared once, in `tdsm_edge/runtime/table_schema.py`.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.denoiser import TDSMDenoiser, mask_bias
from tdsm_edge.runtime.table_schema import DECOUPLED, PRECISION_DTYPES, TABLE_SPEC, table_dtype, table_names

PRECISIONS: dict[str, torch.dtype] = {p: getattr(torch, dt) for p, dt in PRECISION_DTYPES.items()}
LN_EPS = 1e-6  # the denoiser's LayerNorm eps (published)

# rows of a (6, D) modulation table that hold 1 + scale
_SCALE_ROWS = (1, 4)


def precision_dtype(precision: str) -> torch.dtype:
    """torch dtype of a precision name ("fp32" | "fp16")."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not supported; use one of {sorted(PRECISIONS)}")
    return PRECISIONS[precision]


def layer_norm(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The denoiser's affine-free LayerNorm, always computed in float32, returned as `dtype`."""
    return F.layer_norm(x.float(), (x.shape[-1],), eps=LN_EPS).to(dtype)


class ClassTables:
    """The class tables of one class set at one t, by name (`TABLE_SPEC`), in graph-input order.

    Row k of every table belongs to class k, so a class subset is `tables.select(index)`.
    """

    def __init__(self, tables: dict[str, torch.Tensor]) -> None:
        unknown = sorted(set(tables) - set(TABLE_SPEC))
        if unknown or not tables:
            raise InputError(
                f"unknown class tables {unknown or '(none given)'}; expected names from {list(TABLE_SPEC)}"
            )
        self._tables = {n: tables[n] for n in TABLE_SPEC if tables.get(n) is not None}

    @classmethod
    def from_dict(cls, tables: dict[str, torch.Tensor]) -> ClassTables:
        return cls(tables)

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Tables by name in graph-input order."""
        return dict(self._tables)

    @property
    def num_classes(self) -> int:
        return int(next(iter(self._tables.values())).shape[0])

    def select(self, index: torch.Tensor | list[int]) -> ClassTables:
        """The tables of a class subset (or reordering): row k of the result is class `index[k]`."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return ClassTables({n: t[idx] for n, t in self._tables.items()})

    def cast(self, precision: str) -> ClassTables:
        """Tables in the dtypes a scorer of `precision` reads (`table_schema.table_dtype`)."""
        return ClassTables({n: t.to(getattr(torch, table_dtype(n, precision))) for n, t in self._tables.items()})


class ClassTablesGraph(nn.Module):
    """The tables graph: class text `fc (K, Dc)`, `fl (K, L, Dc)`, `mask (K, L)` → class tables.

    Holds copies of the text-side weights (fc/fl embedders, every adaLN layer, block 0's qkv_c) in
    the compute dtype of `precision`, and t_emb(t) as a float32 constant computed at build (the
    timestep sinusoid and its MLP run once, in float32; nothing of t is left in the graph).
    fp16: linears in fp16; c, SiLU, LayerNorm and the attention softmax in float32; key_bias float32.

    A decoupled denoiser (`cfg.attention == "decoupled"`) runs its whole text stream here, once per
    class (text queries attend to text keys only), and outputs every block's text keys|values
    (`text_kv`) instead of block 0's text tokens and q|k|v.
    """

    def __init__(self, model: TDSMDenoiser, t: int, precision: str = "fp32") -> None:
        super().__init__()
        cfg = model.cfg
        self.precision = precision
        self.dtype = precision_dtype(precision)
        self.depth, self.num_tokens, self.cond_dim = cfg.depth, cfg.num_tokens, cfg.cond_dim
        self.uses_mask = bool(cfg.mask_text_padding)
        self.names = table_names(cfg.depth, cfg.attention)
        self.decoupled = cfg.attention == DECOUPLED
        attn = model.blocks[0].attn
        self.num_heads, self.head_dim, self.attn_scale = attn.num_heads, attn.head_dim, attn.scale
        self.t = int(t)
        with torch.no_grad():
            t_emb = model.t_embedder(torch.tensor([self.t], device=model.fl_pos_embed.device))  # (1, D)
        self.register_buffer("t_emb", t_emb.float().detach().clone())  # (1, D) float32
        D = cfg.hidden_size
        qkv_c0 = copy.deepcopy(model.blocks[0].attn.qkv_c)
        if cfg.depth == 1:  # block 0 is the last: nothing reads the text queries
            qkv_c0 = linear_rows(qkv_c0, D, 3 * D)
        scale_rows = torch.zeros(6, 1)
        scale_rows[list(_SCALE_ROWS)] = 1.0
        # (6, 1): adds 1 to the scale rows; its first 2 rows (0, 1) fit the final layer's (shift, scale)
        self.register_buffer("scale_one", scale_rows)
        parts = nn.ModuleDict(
            dict(
                fc_embedder=copy.deepcopy(model.fc_embedder),
                fl_embedder=copy.deepcopy(model.fl_embedder),
                ada_x=nn.ModuleList([copy.deepcopy(b.adaLN_modulation[1]) for b in model.blocks]),
                ada_c=nn.ModuleList([copy.deepcopy(b.adaLN_modulation_c[1]) for b in model.blocks]),
                ada_final=copy.deepcopy(model.final_layer.adaLN_modulation[1]),
                qkv_c0=qkv_c0,
            )
        )
        if self.decoupled:  # the text stream of every block; the last one only makes its keys|values
            last = cfg.depth - 1
            parts["text_blocks"] = nn.ModuleList(
                nn.ModuleDict(
                    dict(qkv_c=linear_rows(b.attn.qkv_c, D, 3 * D))
                    if i == last
                    else dict(
                        qkv_c=copy.deepcopy(b.attn.qkv_c),
                        proj_c=copy.deepcopy(b.attn.proj_c),
                        mlp_c=copy.deepcopy(b.mlp_c),
                    )
                )
                for i, b in enumerate(model.blocks)
            )
            del parts["qkv_c0"]
        self.parts = parts.to(self.dtype).requires_grad_(False)
        self.fl_pos_embed = nn.Parameter(model.fl_pos_embed.detach().to(self.dtype).clone(), requires_grad=False)

    def forward(self, fc: torch.Tensor, fl: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Tables for K classes, ordered as `self.names`.

        Args:
            fc: `(K, Dc) float32` global text features.
            fl: `(K, L, Dc) float32` local text tokens.
            mask: `(K, L) bool` True for real tokens; ignored (all keys valid) when the model was
                built without `mask_text_padding`.
        """
        p, dt = self.parts, self.dtype
        K, L, _ = fl.shape
        text0 = p["fl_embedder"](fl.to(dt)) + self.fl_pos_embed  # (K, L, D)
        c = self.t_emb + p["fc_embedder"](fc.to(dt)).float()  # (K, D) float32
        s = F.silu(c).to(dt)  # (K, D): the adaLN input

        def modulation(lin: nn.Linear, rows: int) -> torch.Tensor:
            out = lin(s).reshape(K, rows, -1)  # (K, rows, D)
            return out + self.scale_one[:rows].to(dt)  # 1 + scale in the scale rows; + 0 elsewhere (exact)

        ada_x = torch.stack([modulation(lin, 6) for lin in p["ada_x"]], dim=1)  # (K, depth, 6, D)
        ada_c = torch.stack([modulation(lin, 6) for lin in p["ada_c"]], dim=1)  # (K, depth, 6, D)
        ada_final = modulation(p["ada_final"], 2)  # (K, 2, D): shift, 1+scale
        key_bias = self.key_bias(mask, K, L, fl.device)  # (K, 1+L) float32
        out = dict(key_bias=key_bias, ada_x=ada_x, ada_c=ada_c, ada_final=ada_final)
        if self.decoupled:
            out["text_kv"] = self.text_kv(text0, ada_c, key_bias[:, 1:])  # (K, depth, L, 2D)
        else:
            h = layer_norm(text0, dt) * ada_c[:, 0, 1:2] + ada_c[:, 0, 0:1]  # (K, L, D) modulated block-0 text
            out.update(text0=text0, text_qkv0=p["qkv_c0"](h))  # text_qkv0 (K, L, 3D) or (K, L, 2D)
        return tuple(out[n] for n in self.names)

    def text_kv(self, text: torch.Tensor, ada_c: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Decoupled only: the text stream through every block, once per class → keys|values `(K, depth, L, 2D)`.

        Args:
            text: `(K, L, D)` text tokens entering block 0; ada_c: `(K, depth, 6, D)` text-stream modulation;
            bias: `(K, L) float32` key bias of the text keys (0 real, MASK_BIAS padded).
        """
        dt, (K, L, D) = self.dtype, text.shape
        H, hd = self.num_heads, self.head_dim
        kv = []
        for i, blk in enumerate(self.parts["text_blocks"]):
            a = ada_c[:, i]  # (K, 6, D): shift, 1+scale, gate × (msa, mlp)
            h = layer_norm(text, dt) * a[:, 1:2] + a[:, 0:1]  # (K, L, D)
            qkv = blk["qkv_c"](h)  # (K, L, 3D); (K, L, 2D) in the last block
            kv.append(qkv[..., -2 * D :])  # (K, L, 2D) keys|values
            if "proj_c" not in blk:  # the last block: nothing reads its text output
                break
            q, k, v = qkv.reshape(K, L, 3, H, hd).permute(2, 0, 3, 1, 4)  # each (K, H, L, hd)
            logits = (q * self.attn_scale) @ k.transpose(-2, -1)  # (K, H, L, L): text keys only
            attn = (logits.float() + bias[:, None, None, :]).softmax(dim=-1).to(dt)  # float32 island
            out = (attn @ v).transpose(1, 2).reshape(K, L, D)  # (K, L, D)
            text = text + a[:, 2:3] * blk["proj_c"](out)  # (K, L, D)
            h = layer_norm(text, dt) * a[:, 4:5] + a[:, 3:4]  # (K, L, D)
            text = text + a[:, 5:6] * blk["mlp_c"](h)  # (K, L, D)
        return torch.stack(kv, dim=1)  # (K, depth, L, 2D)

    def key_bias(self, mask: torch.Tensor | None, K: int, L: int, device: torch.device) -> torch.Tensor:
        """`(K, 1+L) float32`: 0 for the skeleton key and real tokens, MASK_BIAS for padding."""
        if mask is None or not self.uses_mask:
            return torch.zeros(K, 1 + L, dtype=torch.float32, device=device)
        if tuple(mask.shape) != (K, L):
            raise InputError(f"mask must be (K, L) = {(K, L)}, got {tuple(mask.shape)}")
        return mask_bias(mask)  # (K, 1+L)


def linear_rows(lin: nn.Linear, start: int, stop: int) -> nn.Linear:
    """A Linear computing output features [start, stop) of `lin` (same dot products, fewer rows)."""
    out = nn.Linear(lin.in_features, stop - start, bias=lin.bias is not None)
    with torch.no_grad():
        out.weight.copy_(lin.weight[start:stop])
        if lin.bias is not None:
            out.bias.copy_(lin.bias[start:stop])
    return out.to(lin.weight.device, lin.weight.dtype)


def class_tables(
    model: TDSMDenoiser, fc: torch.Tensor, fl: torch.Tensor, mask: torch.Tensor | None, t: int, precision: str = "fp32"
) -> dict[str, torch.Tensor]:
    """Per-class constants for K classes at timestep t (see `TABLE_SPEC`), computed in `precision`.

    Args:
        model: the denoiser (its weights are copied, not modified).
        fc: `(K, Dc) float32`; fl: `(K, L, Dc) float32`; mask: `(K, L) bool` or None.
        t: the fixed scoring timestep.
    Returns:
        dict name → tensor in graph-input order; dtype `precision`, key_bias float32.
    """
    if fc.ndim != 2 or fl.ndim != 3 or fc.shape[0] != fl.shape[0]:
        raise InputError(f"class text must be fc (K, Dc) and fl (K, L, Dc); got {tuple(fc.shape)}, {tuple(fl.shape)}")
    cfg = model.cfg
    if fl.shape[1] != cfg.num_tokens or fl.shape[2] != cfg.cond_dim or fc.shape[1] != cfg.cond_dim:
        raise InputError(
            f"the denoiser expects fc (K, {cfg.cond_dim}) and fl (K, {cfg.num_tokens}, {cfg.cond_dim}); "
            f"got {tuple(fc.shape)}, {tuple(fl.shape)} (check the text encoder and text.num_tokens)"
        )
    module = ClassTablesGraph(model, t, precision).eval()
    with torch.no_grad():
        out = module(fc, fl, mask)
    return dict(zip(module.names, out))
