"""The folded TDSM scorer: raw skeleton features + class tables → per-class errors, one batched graph.

At a fixed t and a fixed noise bank ε_1..ε_J, the paper scores class k by
    e[k] = Σ_j mean_d (model(x_t(z, ε_j), t, text_k) − target(z, ε_j))²
with J × K denoiser passes per sample. `FoldedScorer` computes the same numbers as ONE batched
computation over B × K × J rows, with every sample-independent quantity taken from constants:

    folded into the scorer (buffers)         standardisation (mean, std), sqrt(ᾱ_t), sqrt(1−ᾱ_t),
                                             the noise bank, the diffusion target when it is ε
    read from the class tables               every adaLN output, the final layer's shift/scale, the
                                             text tokens entering block 0 and their q|k|v, the mask
    computed per (b, j) only, not per class  x_t, x_embedder(x_t), block 0's LayerNorm of it
    computed per row (b, k, j)               the skeleton token through every block; the text tokens
                                             from block 0's attention output on (they attend to the
                                             skeleton token, so they differ per sample)
    dropped                                  the last block's text queries, proj_c and mlp_c, and the
                                             q third of its qkv_c (nothing reads them)

Layout: activations are a grid `(B, K, J, S, D)` so per-class tables broadcast as `(1, K, 1, 1, D)`
and per-sample tensors as `(B, 1, J, 1, D)`; attention runs on rows `(R = B·K·J, H, S, hd)`, rows
ordered (b, k, j). Attention is written out (q scaled before q·kᵀ, softmax, ·v; no SDPA) so the
ONNX graph has the MatMul–Softmax–MatMul pattern TensorRT fuses.

Precision: every op's dtype is explicit. fp16 runs the linears, residual stream and attention
matmuls in fp16 and keeps float32 islands: standardisation and x_t, LayerNorm, mask add + softmax,
and the error reduction. fp32 is the reference (no casts at all).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.class_tables import layer_norm, linear_rows, precision_dtype
from tdsm_edge.models.denoiser import TDSMBlock, TDSMDenoiser
from tdsm_edge.models.schedule import DDPMSchedule, diffusion_target
from tdsm_edge.runtime.table_schema import DECOUPLED, TableDims, check_tables, table_dtype, table_names


class _FoldedBlock(nn.Module):
    """One denoiser block over the grid, reading its modulation from the class tables.

    first: the text tokens' q|k|v come from the tables (`text_qkv0`), not from `qkv_c`.
    last: only the skeleton token's output is computed (no text queries, proj_c, mlp_c).
    kv_table: a decoupled block (first and last): the text keys|values are the class table `text_kv`,
        attended per class without copying them to every (sample, noise) row.
    """

    def __init__(self, block: TDSMBlock, first: bool, last: bool, kv_table: bool = False) -> None:
        super().__init__()
        attn = block.attn
        self.first, self.last, self.kv_table = first or kv_table, last or kv_table, kv_table
        self.num_heads, self.head_dim, self.scale = attn.num_heads, attn.head_dim, attn.scale
        D = attn.num_heads * attn.head_dim
        self.qkv, self.proj, self.mlp = (copy.deepcopy(m) for m in (attn.qkv, attn.proj, block.mlp))
        # the last block reads only k|v of the text (rows D:3D of qkv_c); the first reads them from the tables
        # (a kv_table block is both: it holds none of the text stream's weights)
        first, last = self.first, self.last
        self.qkv_c = None if first else (linear_rows(attn.qkv_c, D, 3 * D) if last else copy.deepcopy(attn.qkv_c))
        self.proj_c = None if last else copy.deepcopy(attn.proj_c)
        self.mlp_c = None if last else copy.deepcopy(block.mlp_c)

    def _heads(self, t: torch.Tensor, S: int, parts: int) -> torch.Tensor:
        """`(..., S, parts·D)` → `(parts, R, H, S, hd)` with R the product of the leading dims."""
        t = t.reshape(-1, S, parts, self.num_heads, self.head_dim)  # (R, S, parts, H, hd)
        return t.permute(2, 0, 3, 1, 4)  # (parts, R, H, S, hd)

    def forward(
        self,
        x: torch.Tensor,
        text: torch.Tensor | None,
        ax: torch.Tensor,
        ac: torch.Tensor,
        bias: torch.Tensor,
        grid: tuple,
        dtype: torch.dtype,
        text_qkv: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One block.

        Args:
            x: skeleton token `(B, 1 or K, J, 1, D)`.
            text: text tokens `(B, K, J, L, D)`; for the first block the class table `text0` as
                `(1, K, 1, L, D)` (None when the first block is also the last).
            ax, ac: this block's modulation `(1, K, 1, 6, D)` (rows shift, 1+scale, gate × msa, mlp).
            bias: `(R, 1, 1, 1+L) float32` key bias.
            grid: (B, K, J) sizes; dtype: compute dtype.
            text_qkv: first block only: the class table `text_qkv0` as `(1, K, 1, L, 3D or 2D)`.
        Returns:
            x `(B, K, J, 1, D)` and the text tokens `(B, K, J, L, D)` (None after the last block).
        """
        B, K, J = grid
        L = bias.shape[-1] - 1
        D = self.num_heads * self.head_dim
        h = layer_norm(x, dtype) * ax[:, :, :, 1:2] + ax[:, :, :, 0:1]  # (B, K, J, 1, D)
        q, k, v = self._heads(self.qkv(h), 1, 3).unbind(0)  # each (R, H, 1, hd)
        if self.kv_table:
            key_bias = bias.reshape(B, K, J, 1, 1 + L)
            out = attend_kv_table(q, k, v, text_qkv, key_bias, grid, self.scale, dtype)  # (B, K, J, 1, D)
        else:
            if self.first:  # text q|k|v are class constants: broadcast them to every (b, j)
                parts = text_qkv.shape[-1] // D
                qkv_c = self._heads(text_qkv.expand(B, K, J, L, parts * D), L, parts)  # (parts, R, H, L, hd)
            else:
                hc = layer_norm(text, dtype) * ac[:, :, :, 1:2] + ac[:, :, :, 0:1]  # (B, K, J, L, D)
                qkv_c = self._heads(self.qkv_c(hc), L, 2 if self.last else 3)  # (2 or 3, R, H, L, hd)
            q = q if self.last else torch.cat((q, qkv_c[0]), dim=2)  # (R, H, 1 or 1+L, hd)
            k = torch.cat((k, qkv_c[-2]), dim=2)  # (R, H, 1+L, hd)
            v = torch.cat((v, qkv_c[-1]), dim=2)  # (R, H, 1+L, hd)

            logits = (q * self.scale) @ k.transpose(-2, -1)  # (R, H, 1 or 1+L, 1+L)
            attn = (logits.float() + bias).softmax(dim=-1).to(dtype)  # float32 island
            out = attn @ v  # (R, H, 1 or 1+L, hd)
            out = out.transpose(1, 2).reshape(B, K, J, out.shape[2], D)  # (B, K, J, 1 or 1+L, D)

        x = x + ax[:, :, :, 2:3] * self.proj(out[:, :, :, :1])  # (B, K, J, 1, D)
        h = layer_norm(x, dtype) * ax[:, :, :, 4:5] + ax[:, :, :, 3:4]  # (B, K, J, 1, D)
        x = x + ax[:, :, :, 5:6] * self.mlp(h)  # (B, K, J, 1, D)
        if self.last:
            return x, None
        text = text + ac[:, :, :, 2:3] * self.proj_c(out[:, :, :, 1:])  # (B, K, J, L, D)
        h = layer_norm(text, dtype) * ac[:, :, :, 4:5] + ac[:, :, :, 3:4]  # (B, K, J, L, D)
        return x, text + ac[:, :, :, 5:6] * self.mlp_c(h)  # (B, K, J, L, D)


def attend_kv_table(q, k, v, kv, bias, grid, scale: float, dtype: torch.dtype) -> torch.Tensor:
    """The skeleton token's attention over [its own key; the class's L text keys from the table]
    (the decoupled variant; the folded scorer and the GPU fast path both run this).

    Args:
        q, k, v: the skeleton token's `(R, H, 1, hd)`, R = B·K·J rows ordered (b, k, j).
        kv: the class table `text_kv` of this block, `(Bt, K, 1, L, 2D)` (Bt = 1: every sample, or B).
        bias: the key bias, float32, broadcastable to `(B, K, J, 1, 1+L)` (0 real, MASK_BIAS or -inf padded).
        scale: 1/√hd; dtype: the compute dtype (logits and softmax in float32).
    Returns:
        `(B, K, J, 1, D)`. With Bt = 1 the text keys and values are read once per (class, head) by a
        `(B·J, hd) × (hd, L)` matmul: nothing is copied per sample or noise.
    """
    B, K, J = grid
    H, hd = q.shape[1], q.shape[3]
    Bt, L, D = kv.shape[0], kv.shape[3], H * hd
    kt = kv[:, :, 0, :, :D].reshape(Bt, K, L, H, hd).permute(0, 1, 3, 2, 4)  # (Bt, K, H, L, hd)
    vt = kv[:, :, 0, :, D:].reshape(Bt, K, L, H, hd).permute(0, 1, 3, 2, 4)  # (Bt, K, H, L, hd)
    qs = (q * scale).reshape(B, K, J, H, hd)  # (B, K, J, H, hd)
    own = (qs.float() * k.reshape(B, K, J, H, hd).float()).sum(-1, keepdim=True)  # (B, K, J, H, 1) float32

    def per_class(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """`a (B, K, J, H, n) @ t (Bt, K, H, n, m)` → `(B, K, J, H, m)`, batched over (class, head)."""
        if Bt == 1:
            rows = a.permute(1, 3, 0, 2, 4).reshape(K, H, B * J, a.shape[-1])  # (K, H, B·J, n)
            return (rows @ t[0]).reshape(K, H, B, J, -1).permute(2, 0, 3, 1, 4)  # (B, K, J, H, m)
        return (a.permute(0, 1, 3, 2, 4) @ t).permute(0, 1, 3, 2, 4)  # per-sample tables (pruning)

    logits = torch.cat([own, per_class(qs, kt.transpose(-2, -1)).float()], dim=-1)  # (B, K, J, H, 1+L)
    attn = (logits + bias).softmax(dim=-1).to(dtype)  # float32 island
    out = attn[..., :1] * v.reshape(B, K, J, H, hd) + per_class(attn[..., 1:], vt)  # (B, K, J, H, hd)
    return out.reshape(B, K, J, 1, D)


class FoldedScorer(nn.Module):
    """`forward(z (B, Dz) raw features, **tables) -> (B, K) float32` errors summed over J (lower = better).

    Built from a denoiser, its schedule, the noise bank `(J, Dz)`, the timestep t and the feature
    statistics (z is standardised inside: `(z − mean) / std`, as `FeatureStats.apply`). Equal to
    `tdsm_edge.scoring.score_reference` on standardised features (tested to 1e-5 relative in fp32).
    The tables come from `class_tables` (fp32) or `ClassTablesGraph`; a fp16 scorer reads them as
    `ClassTables.cast("fp16")` gives them (fp16, key_bias float32).
    """

    def __init__(
        self,
        model: TDSMDenoiser,
        schedule: DDPMSchedule,
        noises: torch.Tensor,
        t: int,
        stats=None,
        precision: str = "fp32",
    ) -> None:
        """stats: a `FeatureStats` (or anything with float32 `mean`, `std` of shape (Dz,)); None = identity."""
        super().__init__()
        cfg = model.cfg
        Dz = cfg.z_dim
        if schedule.prediction not in ("epsilon", "sample", "v_prediction"):
            raise ConfigError(f"FoldedScorer cannot fold prediction type {schedule.prediction!r}")
        if noises.ndim != 2 or noises.shape[1] != Dz:
            raise InputError(f"noises must be (J, Dz={Dz}), got {tuple(noises.shape)}")
        self.cfg, self.t, self.prediction = cfg, int(t), schedule.prediction
        self.precision, self.dtype = precision, precision_dtype(precision)
        self.names = table_names(cfg.depth, cfg.attention)
        self.decoupled = cfg.attention == DECOUPLED
        mean = np.zeros(Dz, np.float32) if stats is None else np.asarray(stats.mean, np.float32)
        std = np.ones(Dz, np.float32) if stats is None else np.asarray(stats.std, np.float32)
        if mean.shape != (Dz,) or std.shape != (Dz,):
            raise InputError(f"feature stats must be (Dz={Dz},), got mean {mean.shape}, std {std.shape}")
        noises = noises.detach().float().cpu()
        a, s = schedule.coefficients(self.t, noises)  # 0-d float32, as schedule.add_noise uses them
        self.register_buffer("mean", torch.from_numpy(mean.copy()))  # (Dz,)
        self.register_buffer("std", torch.from_numpy(std.copy()))  # (Dz,)
        self.register_buffer("noises", noises.clone())  # (J, Dz)
        self.register_buffer("a", a.clone())  # () sqrt(ᾱ_t)
        self.register_buffer("s", s.clone())  # () sqrt(1 − ᾱ_t)
        last = cfg.depth - 1
        net = nn.ModuleDict(
            dict(
                x_embedder=copy.deepcopy(model.x_embedder),
                # decoupled: every block reads its text k|v from the tables and computes no text output
                blocks=nn.ModuleList(
                    [_FoldedBlock(b, i == 0, i == last, kv_table=self.decoupled) for i, b in enumerate(model.blocks)]
                ),
                final_linear=copy.deepcopy(model.final_layer.linear),
            )
        )
        self.net = net.float().requires_grad_(False)
        self.to_precision_(precision)

    @property
    def num_noises(self) -> int:
        return int(self.noises.shape[0])

    def to_precision_(self, precision: str) -> FoldedScorer:
        """Cast the network weights (not the float32 constants) to `precision`, in place.

        Only widening-free moves are allowed: fp32 → fp16, or no change. Going back to fp32 from
        fp16 would pretend a precision the weights no longer have, so it raises.
        """
        dt = precision_dtype(precision)
        current = next(self.net.parameters()).dtype
        if current == torch.float16 and dt == torch.float32:
            raise ConfigError("this scorer's weights are already fp16; build a fresh FoldedScorer for fp32")
        self.net.to(dt)
        self.precision, self.dtype = precision, dt
        return self

    def table_dtypes(self) -> dict[str, torch.dtype]:
        """dtype of each class table this scorer reads (`table_schema.table_dtype`)."""
        return {n: getattr(torch, table_dtype(n, self.precision)) for n in self.names}

    def forward(self, z: torch.Tensor, **tables: torch.Tensor) -> torch.Tensor:
        """Per-class errors.

        Args:
            z: `(B, Dz) float32` raw skeleton features (standardised here).
            **tables: the class tables named in `self.names` (`TABLE_SPEC`), K rows each.
        Returns:
            `(B, K) float32`: Σ_j mean_d (prediction − target)² (lower = better).
        """
        return self.score_rows(z, tables)

    def score_rows(
        self,
        z: torch.Tensor,
        tables: dict[str, torch.Tensor],
        index: torch.Tensor | None = None,
        num_noises: int | None = None,
    ) -> torch.Tensor:
        """`forward` with a per-sample class subset and the first `num_noises` noises (staged pruning).

        Args:
            z: `(B, Dz) float32` raw features; tables: the K-row class tables (`self.names`).
            index: None = every class (errors `(B, K)`); `(B, k') int64` = sample b scores classes
                index[b] (errors `(B, k')`; the tables are gathered per sample, `(B, k', ...)`).
            num_noises: J' <= the scorer's J; default all.
        Returns:
            `(B, K or k') float32` errors summed over the first J' noises.
        """
        K = self.check_inputs(z, tables)
        J = self.num_noises if num_noises is None else int(num_noises)
        if not 1 <= J <= self.num_noises:
            raise InputError(f"num_noises must lie in [1, {self.num_noises}] (the scorer's bank), got {num_noises}")
        B = z.shape[0]
        if index is not None and (index.ndim != 2 or index.shape[0] != B):
            raise InputError(f"index must be (B={B}, k') int64, got {tuple(index.shape)}")
        dt, net = self.dtype, self.net
        # a table as the grid reads it: (1, K, 1, ...) broadcast over samples, or (B, k', 1, ...) per sample
        grid = (lambda t: t[None, :, None]) if index is None else (lambda t: t[index][:, :, None])
        K = K if index is None else index.shape[1]
        noises = self.noises if J == self.num_noises else self.noises[:J]  # (J, Dz)
        zs = (z.float() - self.mean) / self.std  # (B, Dz) float32
        x_t = self.a * zs[:, None] + self.s * noises[None]  # (B, J, Dz) float32
        x = net["x_embedder"](x_t.to(dt))[:, None, :, None]  # (B, 1, J, 1, D): not per class

        R = B * K * J
        bias = grid(tables["key_bias"]).expand(B, K, J, -1).reshape(R, 1, 1, -1)  # (R, 1, 1, 1+L)

        def per_block(name: str):
            """i → block i of a `(K, depth, ...)` table as the grid reads it (None when the variant has none)."""
            if name not in tables:
                return lambda i: None
            if index is None:
                whole = grid(tables[name])  # (1, K, 1, depth, ...): a view
                return lambda i: whole[:, :, :, i]  # (1, K, 1, ...)
            return lambda i: grid(tables[name][:, i])  # gathered one block at a time: (B, k', 1, ...)

        ada_x, ada_c, text_kv = per_block("ada_x"), per_block("ada_c"), per_block("text_kv")
        text = grid(tables["text0"]) if "text0" in tables else None  # (1 or B, K, 1, L, D)
        text_qkv0 = grid(tables["text_qkv0"]) if "text_qkv0" in tables else None  # (1 or B, K, 1, L, 3D or 2D)
        for i, block in enumerate(net["blocks"]):
            # joint: block 0's text q|k|v are a table, later blocks compute them; decoupled: every block's k|v is
            text_qkv = text_kv(i) if self.decoupled else (text_qkv0 if i == 0 else None)
            x, text = block(
                x, text, ada_x(i), ada_c(i), bias, (B, K, J), dt, text_qkv
            )  # (B, K, J, 1, D), (B, K, J, L, D) or None

        fin = grid(tables["ada_final"])  # (1 or B, K, 1, 2, D)
        h = layer_norm(x, dt) * fin[:, :, :, 1:2] + fin[:, :, :, 0:1]  # (B, K, J, 1, D)
        pred = net["final_linear"](h)[:, :, :, 0]  # (B, K, J, Dz)
        target = diffusion_target(self.prediction, zs[:, None, None], noises[None, None], self.a, self.s)
        err = (pred.float() - target).pow(2).mean(dim=-1)  # (B, K, J) float32
        return err.sum(dim=-1)  # (B, K or k')

    def check_inputs(self, z: torch.Tensor, tables: dict[str, torch.Tensor]):
        """Names, static dims and dtypes of the inputs (the dynamic B is not checked); returns K, the
        tables' rows (as the tensors give it: symbolic under torch.export)."""
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise InputError(f"z must be (B, Dz={self.cfg.z_dim}), got {tuple(z.shape)}")
        return check_tables(
            tables,
            TableDims.of(self.cfg),
            "FoldedScorer",
            self.precision,
            fix=f"compute tables with class_tables(...) and, for a {self.precision} scorer, "
            f"ClassTables.from_dict(tables).cast({self.precision!r})",
        )
