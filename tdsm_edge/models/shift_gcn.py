"""Shift-GCN skeleton encoder (Cheng et al., CVPR 2020), pure PyTorch and ONNX-exportable.

Follows the structure of the original code (kchengiva/Shift-GCN, `model/shift_gcn.py` and the
`Temporal_shift` CUDA extension), re-expressed with index gathers so no extension is needed:

- data BatchNorm1d over M·V·C, then every body is processed as its own sample;
- TCN-GCN unit = spatial Shift-GCN block + adaptive temporal Shift-TCN block + residual, ReLU;
- spatial block: non-local shift-in (channel c of joint v reads joint (v + c) mod V), learnable
  feature mask `tanh(m)+1`, pointwise linear, non-local shift-out (channel c of joint v reads joint
  (v − c) mod V), BatchNorm over V·C, residual (1×1 conv + BN when channels change), ReLU;
- temporal block: BN → adaptive shift (stride 1) → 1×1 conv → ReLU → adaptive shift (with the
  unit's stride) → BN. The shift moves channel c by a learnable fractional offset `pos[c]`
  frames with linear interpolation and zero padding;
- global average pool over T and V, mean over bodies → z; dropout → `fc`.

Deliberate differences from the original (documented, none matter for the paper's setting):
- the temporal shift has only the time offset (the original's joint-axis offset is initialised at
  ±1e-8 and its gradient is forced to zero, so it never moves);
- the original CUDA backward replaces the offset gradient by `0.01·sign(g)` (1e-4 where g = 0);
  here that is reproduced with a gradient hook while training (`grad_constraint=True`);
- with a temporal stride s the output has ceil(T/s) frames (the original: floor), so odd T still
  matches the strided 1×1 residual; for even T both agree. Strided offsets add (s−1)/2 frames,
  which is the original's +0.5 for s = 2;
- when the last unit's width differs from `cfg.feature_dim`, a Linear `proj` maps it to
  feature_dim (both presets end at their feature_dim: small 64, paper 256, so there is none). A
  projection to a WIDER feature_dim cannot add rank: the features then fill only a subspace of
  the last unit's width (logged). The demo does this on purpose: see configs/demo.yaml.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..config import EncoderConfig, encoder_preset
from ..errors import ConfigError, InputError

log = logging.getLogger(__name__)


def spatial_shift_index(num_joints: int, channels: int, direction: int) -> torch.Tensor:
    """Gather index `(V*C,) int64` for the non-local spatial shift on a `(…, V*C)` joint-major row.

    `out[v*C + c] = in[((v + direction*c) mod V)*C + c]`: channel c of joint v takes joint
    (v + direction·c) mod V. direction +1 is Shift-GCN's shift-in, −1 its shift-out.
    """
    v = torch.arange(num_joints)[:, None]  # (V, 1)
    c = torch.arange(channels)[None, :]  # (1, C)
    return (((v + direction * c) % num_joints) * channels + c).reshape(-1)  # (V*C,)


def _conv_init(conv: nn.Conv2d) -> None:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _shift_step_grad(g: torch.Tensor) -> torch.Tensor:
    """The original CUDA extension's offset gradient: 0.01·sign(g), and 1e-4 where g == 0."""
    return torch.where(g != 0, 0.01 * torch.sign(g), torch.full_like(g, 1e-4))


class TemporalShift(nn.Module):
    """Adaptive temporal shift: channel c reads frame `h·stride + pos[c] (+ (stride−1)/2)` with
    linear interpolation between the two neighbouring frames; frames outside [0, T) read 0.

    Input `(N, C, T, V)` → output `(N, C, ceil(T/stride), V)`. `pos` is learnable.
    """

    def __init__(self, channels: int, stride: int = 1, init_scale: float = 1.0, grad_constraint: bool = True) -> None:
        super().__init__()
        self.stride = stride
        self.grad_constraint = grad_constraint
        self.pos = nn.Parameter(torch.empty(channels).uniform_(-init_scale, init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, C, T, V = x.shape
        pos = self.pos
        if (
            self.grad_constraint
            and self.training
            and pos.requires_grad
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()
        ):
            pos = pos.view(-1)  # non-leaf alias: the hook lives with this graph only
            pos.register_hook(_shift_step_grad)
        y = pos + (self.stride - 1) / 2  # (C,) offset in input frames
        y0 = torch.floor(y).detach()  # (C,)
        frac = (y - y0).to(x.dtype)  # (C,) differentiable in pos
        T_out = (T + self.stride - 1) // self.stride
        base = torch.arange(T_out, device=x.device) * self.stride  # (T_out,)
        p0 = base[None, :] + y0.long()[:, None]  # (C, T_out) lower source frame
        out = None
        for p, w in ((p0, 1 - frac), (p0 + 1, frac)):
            valid = ((p >= 0) & (p < T)).to(x.dtype)  # (C, T_out)
            idx = p.clamp(0, T - 1)[None, :, :, None].expand(N, C, T_out, V)  # (N, C, T_out, V)
            term = torch.gather(x, 2, idx) * (valid * w[:, None])[None, :, :, None]  # (N, C, T_out, V)
            out = term if out is None else out + term
        return out


class ShiftTemporalConv(nn.Module):
    """Shift-TCN: BN → shift (stride 1) → 1×1 conv → ReLU → shift (stride) → BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn_in = nn.BatchNorm2d(in_channels)
        self.shift_in = TemporalShift(in_channels, stride=1)
        self.linear = nn.Conv2d(in_channels, out_channels, 1)
        nn.init.kaiming_normal_(self.linear.weight, mode="fan_out")
        self.shift_out = TemporalShift(out_channels, stride=stride)
        self.bn_out = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, Cin, T, V)` → `(N, Cout, ceil(T/stride), V)`."""
        x = self.shift_in(self.bn_in(x))  # (N, Cin, T, V)
        x = torch.relu(self.linear(x))  # (N, Cout, T, V)
        return self.bn_out(self.shift_out(x))  # (N, Cout, T', V)


class ShiftGraphConv(nn.Module):
    """Spatial Shift-GCN block: shift-in → feature mask → pointwise linear → shift-out → BN,
    plus a residual (1×1 conv + BN when the width changes), then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_joints: int = 25) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.num_joints = in_channels, out_channels, num_joints
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels).normal_(0, math.sqrt(1.0 / out_channels)))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.feature_mask = nn.Parameter(torch.zeros(num_joints, in_channels))  # tanh(0)+1 = 1 at init
        self.bn = nn.BatchNorm1d(num_joints * out_channels)
        if in_channels != out_channels:
            self.down = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
            _conv_init(self.down[0])
        else:
            self.down = nn.Identity()
        self.register_buffer("shift_in", spatial_shift_index(num_joints, in_channels, +1), persistent=False)
        self.register_buffer("shift_out", spatial_shift_index(num_joints, out_channels, -1), persistent=False)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """`(N, Cin, T, V)` → `(N, Cout, T, V)`."""
        N, C, T, V = x0.shape
        x = x0.permute(0, 2, 3, 1).reshape(N * T, V * C)  # (N*T, V*Cin) joint-major rows
        x = x.index_select(1, self.shift_in)  # (N*T, V*Cin)
        x = x.reshape(N * T, V, C) * (torch.tanh(self.feature_mask) + 1)  # (N*T, V, Cin)
        x = x @ self.weight + self.bias  # (N*T, V, Cout)
        x = x.reshape(N * T, V * self.out_channels).index_select(1, self.shift_out)  # (N*T, V*Cout)
        x = self.bn(x)  # (N*T, V*Cout)
        x = x.reshape(N, T, V, self.out_channels).permute(0, 3, 1, 2)  # (N, Cout, T, V)
        return torch.relu(x + self.down(x0))


class TCNGCNUnit(nn.Module):
    """Spatial block → temporal block, plus a unit residual (identity, strided 1×1 conv + BN, or none)."""

    def __init__(
        self, in_channels: int, out_channels: int, num_joints: int, stride: int = 1, residual: bool = True
    ) -> None:
        super().__init__()
        self.gcn = ShiftGraphConv(in_channels, out_channels, num_joints)
        self.tcn = ShiftTemporalConv(out_channels, out_channels, stride=stride)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=(stride, 1)), nn.BatchNorm2d(out_channels)
            )
            _conv_init(self.residual[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, Cin, T, V)` → `(N, Cout, ceil(T/stride), V)`."""
        y = self.tcn(self.gcn(x))  # (N, Cout, T', V)
        if self.residual is not None:
            y = y + self.residual(x)
        return torch.relu(y)


class ShiftGCN(nn.Module):
    """Shift-GCN classifier and feature extractor.

    Input `(N, C=3, T, V, M)` float32. `features(x)` → `(N, feature_dim)`; `forward(x)` → logits
    `(N, num_classes)`. The first unit has no unit residual, as in the original.
    """

    def __init__(self, cfg: EncoderConfig, num_classes: int, num_joints: int = 25, in_channels: int = 3) -> None:
        super().__init__()
        if len(cfg.channels) != len(cfg.strides) or not cfg.channels:
            raise ConfigError(
                f"encoder.channels {cfg.channels} and encoder.strides {cfg.strides} must be non-empty and equally long"
            )
        if any(s < 1 for s in cfg.strides):
            raise ConfigError(f"encoder.strides must be >= 1, got {cfg.strides}")
        self.cfg = cfg
        self.num_joints, self.in_channels, self.num_person = num_joints, in_channels, cfg.num_person
        self.data_bn = nn.BatchNorm1d(cfg.num_person * num_joints * in_channels)
        units, c_in = [], in_channels
        for i, (c_out, stride) in enumerate(zip(cfg.channels, cfg.strides)):
            units.append(TCNGCNUnit(c_in, c_out, num_joints, stride=stride, residual=i > 0))
            c_in = c_out
        self.units = nn.ModuleList(units)
        self.proj = nn.Linear(c_in, cfg.feature_dim) if c_in != cfg.feature_dim else nn.Identity()
        if cfg.feature_dim > c_in:
            log.info(
                "Shift-GCN: the last unit has %d channels and feature_dim is %d, so the features fill a %d-d "
                "subspace of their %d dimensions (encoder.feature_dim: %d gives full-rank features)",
                c_in,
                cfg.feature_dim,
                c_in,
                cfg.feature_dim,
                c_in,
            )
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cfg.feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0, math.sqrt(2.0 / num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Skeleton feature z: `(N, C, T, V, M)` → `(N, feature_dim)`."""
        if (
            x.ndim != 5
            or x.shape[1] != self.in_channels
            or x.shape[3] != self.num_joints
            or x.shape[4] != self.num_person
        ):
            raise InputError(
                f"Shift-GCN expects (N, {self.in_channels}, T, {self.num_joints}, {self.num_person}), got {tuple(x.shape)}"
            )
        N, C, T, V, M = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(N, M * V * C, T)  # (N, M*V*C, T)
        x = self.data_bn(x)  # (N, M*V*C, T)
        x = x.reshape(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V)  # (N*M, C, T, V)
        for unit in self.units:
            x = unit(x)  # (N*M, C', T', V)
        x = x.reshape(N, M, x.shape[1], -1).mean(dim=3).mean(dim=1)  # (N, C')
        return self.proj(x)  # (N, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(N, num_classes)` for `x (N, C, T, V, M)`."""
        return self.fc(self.dropout(self.features(x)))  # (N, num_classes)


def build_shift_gcn(cfg: EncoderConfig | str, num_classes: int, num_joints: int = 25, **overrides: Any) -> ShiftGCN:
    """A freshly initialised Shift-GCN from a config or a preset name ("small" | "paper")."""
    if isinstance(cfg, str):
        cfg = encoder_preset(cfg, **overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    return ShiftGCN(cfg, num_classes, num_joints=num_joints)
