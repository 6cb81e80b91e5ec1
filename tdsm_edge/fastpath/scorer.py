"""`FastScorer`: the folded TDSM scorer as a GPU fast path (fp16, fused kernels, SDPA, CUDA graphs).

Same numbers as `FoldedScorer` (it is built from one), computed on a different layout:

    joint buffer        the skeleton token and the L text tokens of a row live in ONE activation
                        `(R, S = 1+L, D)`, token 0 = skeleton, rows R = B·K·J ordered (b, k, j)
    per-token chains    LayerNorm + modulate, gated residual (+ the linear's bias), bias + GELU and
                        the final error are fused kernels over the whole buffer (kernels.py): the
                        class row and the stream are computed from the row id, never expanded
    linears             two GEMMs per linear: the text weights over all R·S tokens (token 0 is
                        recomputed next; 1/S extra work instead of a gather / scatter of the text
                        tokens), then the skeleton weights over token 0, written in place
                        (a strided view: no copy)
    attention           F.scaled_dot_product_attention straight on strided q/k/v views of the
                        joint q|k|v buffer (no concatenation), the key bias as an additive mask
                        (dropped when no class has padding, so FlashAttention may run)
    folding             x_t and x_embedder once per (b, j), broadcast over classes; block 0's text
                        tokens and their q|k|v from the tables; in the last block only the skeleton
                        query, the text k|v and the skeleton MLP run (nothing reads the rest)

The decoupled student (`attention: decoupled`) has no text stream per row: the buffer is the skeleton
token alone `(R, 1, D)`, the same fused LayerNorm / residual / GELU kernels run on it, and each block's
attention is `attend_kv_table` (tdsm_edge.models.folded) over [its own key; the class's L text keys
from the table `text_kv`], one `(B·J, hd) × (hd, L)` matmul per (class, head): no text key is copied
per sample or noise.

Precision (fp16): weights, GEMMs, the residual stream and attention in fp16; LayerNorm, modulate,
residual adds, GELU, softmax (inside SDPA) and the error reduction in float32; standardisation and
x_t in float32. "fp32" runs the same layout in float32 (an exactness check: it equals FoldedScorer
to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.fastpath import kernels as kn
from tdsm_edge.fastpath.graphs import GraphCache
from tdsm_edge.fastpath.tables import FastClassTables, FastTablesCache, fast_class_tables
from tdsm_edge.models.class_tables import ClassTables, precision_dtype
from tdsm_edge.models.folded import FoldedScorer, attend_kv_table
from tdsm_edge.models.schedule import diffusion_target


@dataclass
class _Block:
    """One block's weights. GEMM weights in the compute dtype; biases added by kernels in float32,
    stacked per stream (skeleton, text) — one stream only in the last block."""

    first: bool
    last: bool
    qkv_w: torch.Tensor  # (3D, D) skeleton
    qkv_b: torch.Tensor  # (3D,)
    qkv_c_w: torch.Tensor | None  # (3D, D) text; (2D, D) k|v in the last block; None in the first
    qkv_c_b: torch.Tensor | None
    proj_w: torch.Tensor  # (D, D)
    proj_c_w: torch.Tensor | None  # None in the last block
    proj_b: torch.Tensor  # (streams, D) float32
    fc1_w: torch.Tensor  # (4D, D)
    fc1_c_w: torch.Tensor | None
    fc1_b: torch.Tensor  # (streams, 4D) float32
    fc2_w: torch.Tensor  # (D, 4D)
    fc2_c_w: torch.Tensor | None
    fc2_b: torch.Tensor  # (streams, D) float32


class FastScorer:
    """`scorer(z (B, Dz) float32, tables) -> (B, K) float32` errors summed over J (lower = better).

    Built from a `FoldedScorer` (its weights, noise bank, t, feature statistics and prediction
    type); `from_denoiser` builds that first. `tables` is the dict of `class_tables(...)` (or a
    `ClassTables`); it is converted once per class set and cached (`tables.py`).

    Args:
        folded: the scorer to accelerate (fp32, or fp16 for precision "fp16").
        precision: "fp16" (the fast path) or "fp32" (same layout in float32, for checking).
        device: where to run; default the device of the folded scorer's weights.
        backend: kernel backend, None = Triton on CUDA when installed, torch otherwise (kernels.py).
        cuda_graphs: capture one CUDA graph per (B, K) shape and replay it (CUDA only).
    """

    def __init__(
        self,
        folded: FoldedScorer,
        precision: str = "fp16",
        device: torch.device | str | None = None,
        backend: str | None = None,
        cuda_graphs: bool = True,
    ) -> None:
        dtype = precision_dtype(precision)
        if folded.dtype == torch.float16 and dtype == torch.float32:
            raise ConfigError(
                "this FoldedScorer's weights are fp16; build the fp32 FastScorer from a fp32 FoldedScorer"
            )
        if backend is not None and backend not in kn.BACKENDS:
            raise ConfigError(f"kernel backend {backend!r} is not supported; use one of {kn.BACKENDS} or None")
        cfg = folded.cfg
        self.cfg, self.precision, self.dtype, self.backend = cfg, precision, dtype, backend
        self.device = torch.device(device) if device is not None else next(folded.net.parameters()).device
        self.prediction, self.t = folded.prediction, folded.t
        self.D, self.H, self.L, self.depth = cfg.hidden_size, cfg.num_heads, cfg.num_tokens, cfg.depth
        self.decoupled, self.attention = folded.decoupled, cfg.attention  # decoupled: the skeleton token alone
        self.scale = float(folded.net["blocks"][0].scale)  # 1/√head_dim
        f32 = dict(device=self.device, dtype=torch.float32)
        self.mean, self.std = folded.mean.to(**f32), folded.std.to(**f32)  # (Dz,)
        self.noises = folded.noises.to(**f32)  # (J, Dz)
        self.a, self.s = float(folded.a), float(folded.s)  # sqrt(ᾱ_t), sqrt(1−ᾱ_t): float32 values, exact
        self.s_noises = (folded.s.to(**f32) * self.noises).contiguous()  # (J, Dz): s·ε, a constant
        net = folded.net
        self.x_w, self.x_b = self._w(net["x_embedder"].weight), self._w(net["x_embedder"].bias)
        self.fin_w, self.fin_b = self._w(net["final_linear"].weight), self._b([net["final_linear"].bias])[0]
        self.blocks = [self._block(b) for b in net["blocks"]]
        self._tables = FastTablesCache(self._convert)
        self.graphs = GraphCache(self.forward) if cuda_graphs and self.device.type == "cuda" else None

    @classmethod
    def from_denoiser(cls, model, schedule, noises: torch.Tensor, t: int, stats=None, **kwargs) -> FastScorer:
        """Build from the denoiser, schedule, noise bank `(J, Dz)`, t and feature stats (as FoldedScorer takes them)."""
        folded = FoldedScorer(model, schedule, noises.detach().cpu(), t, stats).eval()
        return cls(folded, **kwargs)

    @property
    def num_noises(self) -> int:
        return int(self.noises.shape[0])

    # ------------------------------------------------------------ weights and tables
    def _w(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(self.device, self.dtype).contiguous()

    def _b(self, biases: list[torch.Tensor]) -> torch.Tensor:
        """Biases stacked per stream `(streams, C)` float32 (kernels add them in float32)."""
        return torch.stack([b.detach().float() for b in biases]).to(self.device)

    def _block(self, fb) -> _Block:
        """The weights of one `_FoldedBlock` (first: no qkv_c; last: qkv_c holds k|v only, no proj_c, mlp_c)."""
        first, last = fb.qkv_c is None, fb.proj_c is None
        streams = [(fb.proj, fb.mlp)] if last else [(fb.proj, fb.mlp), (fb.proj_c, fb.mlp_c)]
        text = lambda lin: None if lin is None else self._w(lin.weight)  # noqa: E731
        mlp_c = (None, None) if last else (fb.mlp_c.fc1, fb.mlp_c.fc2)
        return _Block(
            first=first,
            last=last,
            qkv_w=self._w(fb.qkv.weight),
            qkv_b=self._w(fb.qkv.bias),
            qkv_c_w=None if first else self._w(fb.qkv_c.weight),
            qkv_c_b=None if first else self._w(fb.qkv_c.bias),
            proj_w=self._w(fb.proj.weight),
            proj_c_w=text(fb.proj_c),
            proj_b=self._b([p.bias for p, _ in streams]),
            fc1_w=self._w(fb.mlp.fc1.weight),
            fc1_c_w=text(mlp_c[0]),
            fc1_b=self._b([m.fc1.bias for _, m in streams]),
            fc2_w=self._w(fb.mlp.fc2.weight),
            fc2_c_w=text(mlp_c[1]),
            fc2_b=self._b([m.fc2.bias for _, m in streams]),
        )

    def _convert(self, tables: dict[str, torch.Tensor]) -> FastClassTables:
        return fast_class_tables(tables, self.depth, self.D, self.L, self.dtype, self.device, self.attention)

    def prepare(self, tables: dict[str, torch.Tensor] | ClassTables) -> FastClassTables:
        """The class tables in the fast layout on this device (cached per class set)."""
        return self._tables.get(tables)

    # ------------------------------------------------------------ scoring
    def __call__(self, z: torch.Tensor, tables: dict[str, torch.Tensor] | ClassTables) -> torch.Tensor:
        """Per-class errors.

        Args:
            z: `(B, Dz) float32` raw skeleton features (standardised here).
            tables: the class tables of K classes (`class_tables(...)` output or a `ClassTables`).
        Returns:
            `(B, K) float32`: Σ_j mean_d (prediction − target)² (lower = better).
        """
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim or not z.is_floating_point():
            raise InputError(f"z must be (B, Dz={self.cfg.z_dim}) float, got {tuple(z.shape)} {z.dtype}")
        fast = self.prepare(tables)
        z = z.to(self.device, torch.float32)
        if self.graphs is not None:
            return self.graphs(z, fast)
        with torch.no_grad():
            return self.forward(z, fast)

    def forward(self, z: torch.Tensor, tab: FastClassTables) -> torch.Tensor:
        """The eager computation (what a CUDA graph captures): `z (B, Dz) float32` → `(B, K) float32`."""
        B, K, J = z.shape[0], tab.num_classes, self.num_noises
        R, D, dt = B * K * J, self.D, self.dtype
        S = 1 + self.L
        zs = (z - self.mean) / self.std  # (B, Dz) float32
        x_t = torch.add(self.s_noises, zs[:, None], alpha=self.a)  # (B, J, Dz) float32: a·zs + s·ε
        x_emb = F.linear(x_t.to(dt), self.x_w, self.x_b)  # (B, J, D): once per (b, j), not per class

        S_x = S if tab.text0 is not None else 1  # depth 1 or decoupled: only the skeleton token is carried
        x = torch.empty(R, S_x, D, dtype=dt, device=z.device)  # the joint residual stream
        grid = x.view(B, K, J, S_x, D)
        grid[:, :, :, 0] = x_emb[:, None]  # (B, K, J, D) ← (B, 1, J, D)
        if tab.text0 is not None:
            grid[:, :, :, 1:] = tab.text0[None, :, None]  # (B, K, J, L, D) ← (1, K, 1, L, D)
        mask = None
        if tab.has_mask:  # (R, S_pad): the key bias of each row's class (a few KB)
            mask = tab.mask[None, :, None].expand(B, K, J, -1).reshape(R, -1)
        # each block ends on a residual add that is applied together with the next LayerNorm (the next
        # block's, or the final layer's): `pending` = (x view, branch output, gate, bias) not yet added
        pending = None
        if self.decoupled:  # every block: one skeleton token against its class's cached text keys|values
            bias = tab.mask[:, :S].float()[None, :, None, None]  # (1, K, 1, 1, 1+L)
            for i, w in enumerate(self.blocks):
                pending = self._kv_block_forward(x, pending, w, tab.ada[:, i], tab.text_kv[:, i], bias, (B, K, J))
        for i, w in enumerate(self.blocks if not self.decoupled else ()):
            pending = self._block_forward(x, pending, w, tab.ada[:, i], tab.text_qkv0, mask, (B, K, J))
        xs, y, gate, bias = pending  # the skeleton token's last MLP residual
        h = kn.residual_ln_modulate_(xs, y, gate, tab.ada_final, J, K, bias=bias, backend=self.backend)  # (R, 1, D)
        y = F.linear(h.view(R, D), self.fin_w)  # (R, Dz); its bias is added in the error kernel
        err = kn.row_sq_error(y, self.fin_b, self._target(zs, J), J, K, backend=self.backend)  # (R,) float32
        return err.view(B, K, J).sum(dim=-1)  # (B, K)

    def _target(self, zs: torch.Tensor, J: int) -> torch.Tensor:
        """The diffusion target `(B, J, Dz) float32` (an expanded view where it is a constant)."""
        B, Dz = zs.shape
        target = diffusion_target(self.prediction, zs[:, None], self.noises[None], self.a, self.s)
        return target.expand(B, J, Dz)  # (B, J, Dz): a view where ε or z is broadcast

    def _two_stream(self, a: torch.Tensor, w_skel: torch.Tensor, w_text: torch.Tensor) -> torch.Tensor:
        """`(R, S, Cin)` → `(R, S, Cout)`: text weights on every token, then skeleton weights on token 0."""
        R, S, C = a.shape
        out = F.linear(a.reshape(R * S, C), w_text).view(R, S, -1)  # token 0 is overwritten next (1/S extra)
        torch.mm(a[:, 0], w_skel.t(), out=out[:, 0])  # strided in and out: cuBLAS leading dims, no copy
        return out

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """SDPA on `(R, H, Sq, hd)` / `(R, H, S, hd)` views → `(R, Sq, D)`."""
        R, H, Sq, hd = q.shape
        S = k.shape[2]
        bias = None if mask is None else mask[:, None, None, :S].expand(R, H, Sq, S)  # aligned row stride S_pad
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (R, H, Sq, hd); softmax in float32
        return o.transpose(1, 2).reshape(R, Sq, H * hd)  # a view for the fused kernels' (R, Sq, H, hd) layout

    def _kv_block_forward(
        self,
        x: torch.Tensor,
        pending: tuple | None,
        w: _Block,
        ada: torch.Tensor,
        kv: torch.Tensor,
        bias: torch.Tensor,
        grid: tuple[int, int, int],
    ) -> tuple:
        """One decoupled block on the skeleton stream `x (R, 1, D)`, modified in place.

        Args:
            pending: the previous block's last residual (x view, y, gate, bias), None for block 0.
            ada: this block's skeleton modulation `(K, 1, 6, D)` float32.
            kv: this block's class table `text_kv` `(K, L, 2D)`; bias: the key bias `(1, K, 1, 1, 1+L)` float32.
        Returns:
            This block's last residual, to be applied with the next LayerNorm.
        """
        B, K, J = grid
        R, D, H, be = B * K * J, self.D, self.H, self.backend
        msa, gate_msa, mlp, gate_mlp = ada[:, :, 0:2], ada[:, :, 2], ada[:, :, 3:5], ada[:, :, 5]
        if pending is None:
            h = kn.ln_modulate(x, msa, J, K, backend=be)  # (R, 1, D)
        else:
            xp, y, gate, bias_prev = pending
            h = kn.residual_ln_modulate_(xp, y, gate, msa, J, K, bias=bias_prev, backend=be)  # (R, 1, D)
        q, k, v = F.linear(h.view(R, D), w.qkv_w, w.qkv_b).view(R, 3, H, 1, D // H).unbind(1)  # each (R, H, 1, hd)
        o = attend_kv_table(q, k, v, kv[None, :, None], bias, grid, self.scale, x.dtype)  # (B, K, J, 1, D)
        y = F.linear(o.reshape(R, D), w.proj_w).view(R, 1, D)
        h = kn.residual_ln_modulate_(x, y, gate_msa, mlp, J, K, bias=w.proj_b, backend=be)  # (R, 1, D)
        u = kn.bias_gelu_(F.linear(h.view(R, D), w.fc1_w).view(R, 1, -1), w.fc1_b, backend=be)  # (R, 1, 4D)
        return x, F.linear(u.view(R, -1), w.fc2_w).view(R, 1, D), gate_mlp, w.fc2_b

    def _block_forward(
        self,
        x: torch.Tensor,
        pending: tuple | None,
        w: _Block,
        ada: torch.Tensor,
        text_qkv0: torch.Tensor,
        mask: torch.Tensor | None,
        grid: tuple[int, int, int],
    ) -> tuple:
        """One block on the joint buffer `x (R, S, D)` (`(R, 1, D)` when depth == 1), modified in place.

        Args:
            pending: the previous block's last residual (x view, y, gate, bias), None for block 0.
            ada: this block's modulation `(K, 2, 6, D)` float32.
            text_qkv0: the class table (read by block 0 only); mask: `(R, S_pad)` or None.
        Returns:
            This block's last residual, to be applied with the next LayerNorm.
        """
        B, K, J = grid
        R, D, H, be = B * K * J, self.D, self.H, self.backend
        S, hd = 1 + self.L, self.D // self.H
        msa, gate_msa, mlp, gate_mlp = ada[:, :, 0:2], ada[:, :, 2], ada[:, :, 3:5], ada[:, :, 5]
        if w.first:  # text q|k|v are class constants: broadcast the table to every (b, j)
            hs = kn.ln_modulate(x[:, :1], msa, J, K, backend=be)[:, 0]  # (R, D) skeleton only
            qkv = torch.empty(R, S, text_qkv0.shape[-1], dtype=x.dtype, device=x.device)  # (R, S, 3D or 2D)
            qkv.view(B, K, J, S, -1)[:, :, :, 1:] = text_qkv0[None, :, None]
        else:  # the previous block's MLP residual, then this block's LayerNorm, both streams in one pass
            xp, y, gate, bias = pending
            h = kn.residual_ln_modulate_(xp, y, gate, msa, J, K, bias=bias, backend=be)  # (R, S, D)
            qkv = F.linear(h.view(R * S, D), w.qkv_c_w, w.qkv_c_b).view(R, S, -1)  # (R, S, 3D or 2D)
            hs = h[:, 0]  # (R, D)
        if w.last:  # the skeleton query alone; its k|v join the text's
            qkv_s = F.linear(hs, w.qkv_w, w.qkv_b)  # (R, 3D)
            qkv[:, 0] = qkv_s[:, D:]
            q = qkv_s[:, :D].view(R, 1, H, hd).transpose(1, 2)  # (R, H, 1, hd)
            k, v = qkv.view(R, S, 2, H, hd).permute(2, 0, 3, 1, 4)  # each (R, H, S, hd)
        else:
            torch.addmm(w.qkv_b, hs, w.qkv_w.t(), out=qkv[:, 0])  # skeleton q|k|v into token 0
            q, k, v = qkv.view(R, S, 3, H, hd).permute(2, 0, 3, 1, 4)  # each (R, H, S, hd)
        o = self._attention(q, k, v, mask)  # (R, S or 1, D)

        if w.last:  # skeleton token only from here on
            xs = x[:, :1]  # (R, 1, D) view of the residual stream
            y = F.linear(o[:, 0], w.proj_w).view(R, 1, D)
            h = kn.residual_ln_modulate_(xs, y, gate_msa, mlp, J, K, bias=w.proj_b, backend=be)  # (R, 1, D)
            u = kn.bias_gelu_(F.linear(h.view(R, D), w.fc1_w).view(R, 1, -1), w.fc1_b, backend=be)  # (R, 1, 4D)
            return xs, F.linear(u.view(R, -1), w.fc2_w).view(R, 1, D), gate_mlp, w.fc2_b
        y = self._two_stream(o, w.proj_w, w.proj_c_w)  # (R, S, D)
        h = kn.residual_ln_modulate_(x, y, gate_msa, mlp, J, K, bias=w.proj_b, backend=be)  # (R, S, D)
        u = kn.bias_gelu_(self._two_stream(h, w.fc1_w, w.fc1_c_w), w.fc1_b, backend=be)  # (R, S, 4D)
        return x, self._two_stream(u, w.fc2_w, w.fc2_c_w), gate_mlp, w.fc2_b
