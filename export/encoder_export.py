"""ONNX export of the skeleton encoder: preprocessed window `(B, 3, T, V, M) float32` → `z (B, Dz) float32`.

The graph is `ShiftGCN.features` (the classifier head is dropped) with a dynamic batch axis; T, V
and M are fixed at export (T is the bundle's window length). Its output feeds the scorer graph's
`z` input directly.

`EncoderGraph` re-expresses `ShiftGCN.features` with every op's dtype explicit (the same idea as
`FoldedScorer`; fp32 is tested equal to `features` so the two cannot drift apart):

    fp32   no casts at all: the reference.
    fp16   weights and activations of the TCN-GCN units in fp16 (1×1 convs, the spatial shift-GCN
           matmul, their BatchNorms, ReLUs, the temporal-shift gathers), with float32 islands:
             input data_bn      the raw coordinates are normalised in float32, then cast
             shift offsets      the temporal-shift `pos` (index arithmetic) stays float32
             pooling            the mean over T·V and bodies reads the units' output as float32
           `proj` (a Linear, only when the last unit is narrower than Dz) runs in fp16.
           Input and output stay float32. Which ops compute in which dtype is counted in the
           ExportRecord (`fp32_ops` / `fp16_ops`), so a bundle manifest records it.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from torch import nn

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.class_tables import precision_dtype
from tdsm_edge.models.folders import load_encoder
from tdsm_edge.models.shift_gcn import ShiftGCN, TemporalShift

from .onnx_export import BATCH_AXIS, ExportRecord, _check_args, _check_io, _export

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "window", "z"


class EncoderGraph(nn.Module):
    """`forward(window (B, C, T, V, M) float32) -> z (B, Dz) float32`, ShiftGCN.features in `precision`."""

    def __init__(self, model: ShiftGCN, precision: str = "fp32") -> None:
        super().__init__()
        self.precision, self.dtype = precision, precision_dtype(precision)
        self.in_channels, self.num_joints, self.num_person = model.in_channels, model.num_joints, model.num_person
        self.data_bn = copy.deepcopy(model.data_bn).float()  # float32 island: raw coordinates
        self.units = copy.deepcopy(model.units).to(self.dtype)
        for m in self.units.modules():  # frame offsets are index arithmetic: keep them float32
            if isinstance(m, TemporalShift):
                m.pos.data = m.pos.data.float()
        self.proj = copy.deepcopy(model.proj).to(self.dtype)
        self.requires_grad_(False).eval()

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        N, C, T, V, M = window.shape
        if (C, V, M) != (self.in_channels, self.num_joints, self.num_person):
            raise InputError(
                f"the encoder expects windows (B, {self.in_channels}, T, {self.num_joints}, "
                f"{self.num_person}), got {tuple(window.shape)}"
            )
        x = window.float().permute(0, 4, 3, 1, 2).reshape(N, M * V * C, T)  # (N, M*V*C, T)
        x = self.data_bn(x)  # (N, M*V*C, T) float32
        x = x.reshape(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V).to(self.dtype)  # (N*M, C, T, V)
        for unit in self.units:
            x = unit(x)  # (N*M, C', T', V)
        x = x.float().reshape(N, M, x.shape[1], -1).mean(dim=3).mean(dim=1)  # (N, C') float32 pooling
        return self.proj(x.to(self.dtype)).float()  # (N, Dz)


def export_encoder(
    encoder: str | Path | ShiftGCN, onnx_path: str | Path, frames: int, precision: str = "fp32", example_batch: int = 2
) -> ExportRecord:
    """Export the skeleton encoder as `window (B, C=3, T=frames, V, M) float32 → z (B, Dz) float32`.

    Args:
        encoder: an encoder folder (`save_encoder` layout) or a ShiftGCN (not modified).
        onnx_path: output `.onnx` file.
        frames: T, the window length the graph is built for (static).
        precision: "fp32" | "fp16" (see the module docstring for the float32 islands).
        example_batch: traced batch size (>= 2; the batch axis stays dynamic).
    Returns:
        The ExportRecord (graph "encoder").
    """
    if isinstance(encoder, ShiftGCN):
        model = encoder
    elif isinstance(encoder, (str, Path)):
        model, _ = load_encoder(encoder)
    else:
        raise ConfigError(f"export_encoder needs an encoder folder or a ShiftGCN, got {type(encoder).__name__}")
    if frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}")
    _check_args(precision, example_batch, 2)
    graph = EncoderGraph(model.cpu(), precision)
    g = torch.Generator().manual_seed(0)
    window = torch.randn(example_batch, graph.in_channels, frames, graph.num_joints, graph.num_person, generator=g)
    dynamic = {INPUT_NAME: {0: torch.export.Dim(BATCH_AXIS, min=1)}}
    axes = {INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}}
    record = _export(graph, (window,), None, dynamic, [OUTPUT_NAME], axes, onnx_path, "encoder", precision, None)
    _check_io(record, [INPUT_NAME], [OUTPUT_NAME])
    return record
