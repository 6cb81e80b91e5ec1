"""The TDSM denoiser: a DiT over one skeleton token and L text tokens with per-stream weights.

Architecture, parameter names and initialisation follow the published TDSM code
(KAIST-VICLab/TDSM, `model/dit.py`, read at commit e3fad9b) so that a published checkpoint loads
key-for-key. Names verified against that file (and pinned by `tests/models/test_denoiser.py`):

    x_embedder.{weight,bias}                       Linear(Dz → D)
    t_embedder.mlp.{0,2}.{weight,bias}             Linear(256 → D), SiLU, Linear(D → D)
    fc_embedder.{0,2}.{weight,bias}                Linear(Dc → D), SiLU, Linear(D → D)
    fl_embedder.{weight,bias}                      Linear(Dc → D)
    fl_pos_embed                                   (1, L, D)
    blocks.N.attn.{qkv,proj,qkv_c,proj_c}.*        one attention module holding both streams
    blocks.N.mlp.{fc1,fc2}.*, blocks.N.mlp_c.{fc1,fc2}.*   (timm `Mlp` naming)
    blocks.N.adaLN_modulation.1.*, blocks.N.adaLN_modulation_c.1.*
    blocks.N.norm1/norm2/norm1_c/norm2_c           LayerNorm without affine (no parameters)
    final_layer.{adaLN_modulation.1,linear}.*      final_layer.norm_final has no parameters

Differences from the published module (none change the state dict):
- `x` is `(N, Dz)` (one token, the published code passes `(N, 1, Dz)`; both are accepted here).
- optional padding mask for the text tokens (`cfg.mask_text_padding`; the published code has none).
- the attention softmax always runs in float32 (identical in fp32; safer under fp16/bf16).
- the local-token count L comes from `cfg.num_tokens` (published: fixed 35).
- `cfg.attention = "decoupled"` (not published; default "joint"): text queries attend to text keys
  only, so at a fixed t the whole text stream is a function of the class text alone and every
  block's text keys/values fold into per-class tables (class_tables.py). The skeleton token still
  attends to all 1 + L keys. Same modules and parameter names, so a TDSM checkpoint loads into it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..config import DenoiserConfig, denoiser_preset
from ..errors import ConfigError, InputError

FREQ_EMBED_SIZE = 256  # width of the timestep sinusoid (published)
MAX_PERIOD = 10_000  # longest sinusoid period (published)
MASK_BIAS = -1e9  # additive attention bias for padded keys; softmax runs in float32


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: `x (N, S, D)`, `shift/scale (N, D)` → `x·(1+scale)+shift`."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_sinusoid(t: torch.Tensor, dim: int = FREQ_EMBED_SIZE, max_period: int = MAX_PERIOD) -> torch.Tensor:
    """Sinusoidal timestep features laid out [cos | sin].

    Args:
        t: `(N,)` timesteps (any numeric dtype; used as float32).
    Returns:
        `(N, dim) float32`.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )  # (half,)
    args = t[:, None].float() * freqs[None]  # (N, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (N, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (N, dim)
    return emb


def mask_bias(mask: torch.Tensor, n_skel: int = 1) -> torch.Tensor:
    """`(N, n_skel+L) float32` additive key bias from a text mask `(N, L)` (True = real token): 0 for
    the `n_skel` skeleton keys (always valid) and real tokens, MASK_BIAS for padding."""
    N = mask.shape[0]
    valid = torch.cat([torch.ones(N, n_skel, dtype=torch.bool, device=mask.device), mask.bool()], dim=1)
    return torch.where(valid, 0.0, MASK_BIAS).to(torch.float32)  # (N, n_skel+L)


class TimestepEmbedder(nn.Module):
    """`t (N,)` → `(N, D)` via the sinusoid and `mlp` = Linear, SiLU, Linear."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = FREQ_EMBED_SIZE) -> None:
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = timestep_sinusoid(t, self.frequency_embedding_size)  # (N, 256) float32
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (N, D)


class Mlp(nn.Module):
    """fc1 → GELU(tanh) → fc2; named like timm's `Mlp` so checkpoints keep `mlp.fc1` / `mlp.fc2`."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class JointAttention(nn.Module):
    """Joint multi-head attention over [skeleton tokens; text tokens] with per-stream weights.

    Written with explicit matmul + softmax (no SDPA) so it exports to plain ONNX ops.
    decoupled: text queries attend to the text keys only (skeleton queries still see every key).
    """

    def __init__(self, dim: int, num_heads: int, decoupled: bool = False) -> None:
        super().__init__()
        self.decoupled = decoupled
        if dim % num_heads:
            raise ConfigError(f"hidden_size ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim)  # skeleton stream
        self.proj = nn.Linear(dim, dim)
        self.qkv_c = nn.Linear(dim, 3 * dim)  # text stream
        self.proj_c = nn.Linear(dim, dim)

    def _heads(self, qkv: torch.Tensor) -> torch.Tensor:
        B, S, _ = qkv.shape
        qkv = qkv.reshape(B, S, 3, self.num_heads, self.head_dim)  # (B, S, 3, H, hd)
        return qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, S, hd)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor, key_bias: torch.Tensor | None = None, text_out: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend jointly.

        Args:
            x: `(B, N, D)` skeleton tokens.
            cond: `(B, L, D)` text tokens.
            key_bias: `(B, 1, 1, N+L) float32` additive bias on the attention logits (0 or
                MASK_BIAS per key) or None.
            text_out: False skips the text tokens' queries and output projection (nothing reads
                them after the last block); the skeleton output is unchanged.
        Returns:
            `(B, N, D)`, `(B, L, D)` (None when text_out is False).
        """
        B, N, D = x.shape
        q, k, v = self._heads(self.qkv(x)).unbind(0)  # each (B, H, N, hd)
        q_c, k_c, v_c = self._heads(self.qkv_c(cond)).unbind(0)  # each (B, H, L, hd)
        q = torch.cat((q, q_c), dim=2) if text_out else q  # (B, H, N+L or N, hd)
        k = torch.cat((k, k_c), dim=2)  # (B, H, N+L, hd)
        v = torch.cat((v, v_c), dim=2)  # (B, H, N+L, hd)

        logits = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, N+L or N, N+L)
        logits = logits.float()
        if key_bias is not None:
            logits = logits + key_bias  # (B, H, N+L, N+L)
        if self.decoupled and text_out:  # text query rows: the skeleton keys are masked out
            text_rows = torch.arange(N + cond.shape[1], device=x.device)[:, None] >= N  # (N+L, 1)
            skel_cols = torch.arange(N + cond.shape[1], device=x.device)[None, :] < N  # (1, N+L)
            logits = logits.masked_fill(text_rows & skel_cols, MASK_BIAS)  # (B, H, N+L, N+L)
        attn = logits.softmax(dim=-1).to(v.dtype)
        out = attn @ v  # (B, H, N+L or N, hd)
        out = out.transpose(1, 2).reshape(B, out.shape[2], D)  # (B, N+L or N, D)
        if not text_out:
            return self.proj(out), None
        x, cond = out[:, :N], out[:, N:]  # (B, N, D), (B, L, D)
        return self.proj(x), self.proj_c(cond)


class TDSMBlock(nn.Module):
    """One DiT block with separate skeleton (plain names) and text (`_c`) streams, adaLN-Zero."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, decoupled: bool = False) -> None:
        super().__init__()
        D = hidden_size
        hidden = int(D * mlp_ratio)
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.norm1_c = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.norm2_c = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = JointAttention(D, num_heads, decoupled)
        self.mlp = Mlp(D, hidden)
        self.mlp_c = Mlp(D, hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))
        self.adaLN_modulation_c = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        c: torch.Tensor,
        key_bias: torch.Tensor | None = None,
        text_out: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`x (B, N, D)`, `cond (B, L, D)`, `c (B, D)` → updated `(x, cond)`.

        text_out=False (the last block) skips the text stream's work that nothing reads
        (text queries, `proj_c`, `mlp_c`) and returns `(x, None)`; x is unchanged by the skip.
        """
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(
            6, dim=1
        )  # 6 × (B, D)
        shift_msa_c, scale_msa_c, gate_msa_c, shift_mlp_c, scale_mlp_c, gate_mlp_c = self.adaLN_modulation_c(c).chunk(
            6, dim=1
        )  # 6 × (B, D)

        x_a, cond_a = self.attn(
            modulate(self.norm1(x), shift_msa, scale_msa),
            modulate(self.norm1_c(cond), shift_msa_c, scale_msa_c),
            key_bias,
            text_out,
        )
        x = x + gate_msa.unsqueeze(1) * x_a
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        if not text_out:
            return x, None
        cond = cond + gate_msa_c.unsqueeze(1) * cond_a
        cond = cond + gate_mlp_c.unsqueeze(1) * self.mlp_c(modulate(self.norm2_c(cond), shift_mlp_c, scale_mlp_c))
        return x, cond


class FinalLayer(nn.Module):
    """norm_final → adaLN (shift, scale) from `c` → linear back to Dz."""

    def __init__(self, hidden_size: int, out_dim: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, out_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """`x (B, N, D)`, `c (B, D)` → `(B, N, Dz)`."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 × (B, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (B, N, Dz)


class TDSMDenoiser(nn.Module):
    """ε̂(x_t, t, text): the TDSM diffusion transformer (see module docstring for the names)."""

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        if cfg.depth < 1:
            raise ConfigError(f"denoiser.depth must be >= 1, got {cfg.depth}")
        self.cfg = cfg
        D = cfg.hidden_size
        self.x_embedder = nn.Linear(cfg.z_dim, D)
        self.t_embedder = TimestepEmbedder(D)
        self.fc_embedder = nn.Sequential(nn.Linear(cfg.cond_dim, D), nn.SiLU(), nn.Linear(D, D))
        self.fl_embedder = nn.Linear(cfg.cond_dim, D)
        self.fl_pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens, D))
        if cfg.attention not in ("joint", "decoupled"):
            raise ConfigError(f"denoiser.attention must be 'joint' or 'decoupled', got {cfg.attention!r}")
        decoupled = cfg.attention == "decoupled"
        self.blocks = nn.ModuleList([TDSMBlock(D, cfg.num_heads, cfg.mlp_ratio, decoupled) for _ in range(cfg.depth)])
        self.final_layer = FinalLayer(D, cfg.z_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Published init: Xavier linears / zero bias, N(0, .02) pos + t-MLP, zero adaLN and output."""

        def _basic(m: nn.Module) -> None:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

        self.apply(_basic)
        nn.init.normal_(self.fl_pos_embed, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        zero = [b.adaLN_modulation[-1] for b in self.blocks] + [b.adaLN_modulation_c[-1] for b in self.blocks]
        zero += [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]
        for lin in zero:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def condition(self, t: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """`c = t_embedder(t) + fc_embedder(fc)`: `t (N,)`, `fc (N, Dc)` → `(N, D)`."""
        return self.t_embedder(t) + self.fc_embedder(fc)  # (N, D)

    def key_bias(self, mask: torch.Tensor | None, n_skel: int = 1) -> torch.Tensor | None:
        """Additive float32 key bias `(N, 1, 1, n_skel+L)` from a text mask `(N, L)` (True = real
        token), or None when masking is off (`cfg.mask_text_padding` False) or no mask is given.

        Skeleton keys are always valid, so every query row keeps at least one finite logit and
        padded query rows stay finite.
        """
        if mask is None or not self.cfg.mask_text_padding:
            return None
        return mask_bias(mask, n_skel)[:, None, None, :]  # (N, 1, 1, n_skel+L)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        fc: torch.Tensor,
        fl: torch.Tensor,
        mask: torch.Tensor | None = None,
        text_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the diffusion target for a batch.

        Args:
            x: `(N, Dz)` (or `(N, 1, Dz)`) noised skeleton feature x_t, float.
            t: `(N,)` int64 timesteps.
            fc: `(N, Dc)` global text feature.
            fl: `(N, L, Dc)` local text tokens.
            mask: `(N, L)` bool, True for real tokens, False for padding; used only when
                `cfg.mask_text_padding` is True (published behaviour: ignored).
            text_index: optional `(N,)` int64. When given, fc `(K, Dc)`, fl `(K, L, Dc)` and mask
                `(K, L)` are per-CLASS tables and row n uses class `text_index[n]`: each class's
                text is embedded once and gathered (same result, far cheaper when K ≪ N).
        Returns:
            Same shape as `x`: the prediction (ε for the default schedule).
        """
        squeeze = x.ndim == 2
        if squeeze:
            x = x.unsqueeze(1)  # (N, 1, Dz)
        if x.ndim != 3 or fl.ndim != 3 or fc.ndim != 2:
            raise InputError(
                f"expected x (N, Dz), fc (N, Dc), fl (N, L, Dc); got {tuple(x.shape)}, {tuple(fc.shape)}, {tuple(fl.shape)}"
            )
        if fl.shape[1] != self.cfg.num_tokens or fl.shape[-1] != self.cfg.cond_dim or x.shape[-1] != self.cfg.z_dim:
            raise InputError(
                f"denoiser expects x (N, {self.cfg.z_dim}), fl (N, {self.cfg.num_tokens}, {self.cfg.cond_dim}); "
                f"got x {tuple(x.shape)}, fl {tuple(fl.shape)} (check text.num_tokens and the text encoder width)"
            )
        x = self.x_embedder(x)  # (N, 1, D)
        fl = self.fl_embedder(fl) + self.fl_pos_embed  # (N or K, L, D)
        fc_emb = self.fc_embedder(fc)  # (N or K, D)
        if text_index is not None:
            # index_select, not fl[text_index]: its backward (index_add_) is deterministic on the CPU with
            # several threads, the advanced-indexing backward (index_put_ accumulate, atomic adds) is not
            fl, fc_emb = fl.index_select(0, text_index), fc_emb.index_select(0, text_index)  # (N, L, D), (N, D)
            mask = mask[text_index] if mask is not None else None  # (N, L)
        elif fl.shape[0] != x.shape[0]:
            raise InputError(f"fl has {fl.shape[0]} rows but x has {x.shape[0]}; pass text_index to use class tables")
        c = self.t_embedder(t) + fc_emb  # (N, D)
        bias = self.key_bias(mask, n_skel=x.shape[1])  # (N, 1, 1, 1+L) or None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, fl = block(x, fl, c, bias, text_out=i < last)  # (N, 1, D), (N, L, D) (None after the last)
        x = self.final_layer(x, c)  # (N, 1, Dz)
        return x.squeeze(1) if squeeze else x  # (N, Dz)


# ---------------------------------------------------------------- factory and helpers
def build_denoiser(cfg: DenoiserConfig | str, **overrides: Any) -> TDSMDenoiser:
    """A freshly initialised denoiser from a config or a preset name ("tiny" | "small" | "paper")."""
    if isinstance(cfg, str):
        cfg = denoiser_preset(cfg, **overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    return TDSMDenoiser(cfg)


def denoiser_param_count(model: nn.Module) -> dict[str, int]:
    """Parameter counts: `total`, `adaLN` (every adaLN_modulation layer, which fold into per-class
    constants at a fixed t) and `rest` = total − adaLN."""
    total = sum(p.numel() for p in model.parameters())
    ada = sum(p.numel() for n, p in model.named_parameters() if "adaLN_modulation" in n)
    return {"total": total, "adaLN": ada, "rest": total - ada}


def published_state_dict_keys(depth: int) -> list[str]:
    """The state-dict keys of the published TDSM `DiT` with `depth` blocks (for loaders and tests)."""
    keys = ["fl_pos_embed"]
    for name in ("x_embedder", "fl_embedder", "t_embedder.mlp.0", "t_embedder.mlp.2", "fc_embedder.0", "fc_embedder.2"):
        keys += [f"{name}.weight", f"{name}.bias"]
    per_block = (
        "attn.qkv",
        "attn.proj",
        "attn.qkv_c",
        "attn.proj_c",
        "mlp.fc1",
        "mlp.fc2",
        "mlp_c.fc1",
        "mlp_c.fc2",
        "adaLN_modulation.1",
        "adaLN_modulation_c.1",
    )
    for i in range(depth):
        for name in per_block:
            keys += [f"blocks.{i}.{name}.weight", f"blocks.{i}.{name}.bias"]
    for name in ("final_layer.linear", "final_layer.adaLN_modulation.1"):
        keys += [f"{name}.weight", f"{name}.bias"]
    return keys
