"""Staged candidate pruning: score every class with one noise, rescore only the best few with all J.

Stage 1 scores all K classes with J = 1 (the FIRST noise of the bank); stage 2 rescores the `keep`
lowest-error classes of each sample with the full bank (J noises). The result is `(B, K)`:

    kept classes      the full-J error (the same number the unpruned scorer gives that class)
    pruned classes    +inf

so argmin and the top-k for k <= keep are well defined and are exactly the unpruned ranking among
the kept classes; `+inf` (not a scaled stage-1 error) because a J = 1 error is not on the J-sum's
scale and must never outrank a rescored class. keep >= K is plain full scoring (no stage 1);
J = 1 needs no stage 2 (its errors are the stage-1 errors).

Cost, in denoiser rows (one row = one skeleton token + L text tokens through every block):
    full     B·K·J
    staged   B·K + B·keep·J        e.g. K = 60, J = 3, keep = 5: 180 → 75 rows per sample
                                   K = 5,  J = 3, keep = 2:  15 → 11
plus a top-k and a gather. Each sample keeps its own classes, so stage 2 gathers per-sample rows of
the class tables (`(B, keep, ...)` instead of the broadcast `(1, K, ...)`); the adaLN tables are
gathered one block at a time, so the extra memory is about `B·keep` rows of `text_qkv0` (the paper
model: 35 × 2304 floats ≈ 0.3 MB per row in fp32). Both stages run the FoldedScorer's own
weights and blocks (`score_rows`); no second scorer is built. Torch only (not an ONNX graph).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from tdsm_edge.errors import ConfigError, InputError

from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.models.class_tables import layer_norm

# score_fn(z (B, Dz), index None | (B, k') int64, J) -> (B, K) for index None, (B, k') otherwise
ScoreFn = Callable[[torch.Tensor, "torch.Tensor | None", int], torch.Tensor]


def staged_scores(score_fn: ScoreFn, z: torch.Tensor, K: int, J_full: int, keep: int) -> torch.Tensor:
    """Two-stage pruned scoring.

    Args:
        score_fn: `score_fn(z, index, J)`: errors with the first J noises of the bank, for all K
            classes when index is None (`(B, K)`), else for the per-sample classes `index (B, k')
            int64` (`(B, k')`, column i = class index[b, i]).
        z: `(B, Dz)` features (passed through to score_fn).
        K: number of classes; J_full: noises of the full bank; keep: classes rescored per sample.
    Returns:
        `(B, K) float32` errors: full-J errors for the kept classes, +inf for the pruned ones.
    """
    if not 1 <= keep:
        raise ConfigError(f"keep must be >= 1, got {keep}")
    if J_full < 1:
        raise ConfigError(f"J_full must be >= 1, got {J_full}")
    if keep >= K:  # nothing to prune
        return score_fn(z, None, J_full)
    e1 = score_fn(z, None, 1)  # (B, K) stage 1: one noise, every class
    kept = torch.topk(e1, keep, dim=1, largest=False, sorted=True).indices  # (B, keep)
    e2 = e1.gather(1, kept) if J_full == 1 else score_fn(z, kept, J_full)  # (B, keep)
    return torch.full_like(e1, math.inf).scatter_(1, kept, e2)  # (B, K)


def score_rows(scorer: FoldedScorer, z: torch.Tensor, tables: dict[str, torch.Tensor],
               index: torch.Tensor | None = None, num_noises: int | None = None) -> torch.Tensor:
    """`FoldedScorer.forward` with a per-sample class subset and the first `num_noises` noises.

    Args:
        scorer: the FoldedScorer whose weights and constants are used (not modified).
        z: `(B, Dz) float32` raw features; tables: the K-row class tables (`scorer.names`).
        index: None = every class (errors `(B, K)`); `(B, k') int64` = sample b scores classes
            index[b] (errors `(B, k')`).
        num_noises: J' <= the scorer's J; default all.
    Returns:
        `(B, K or k') float32` errors summed over the first J' noises.
    """
    scorer._check(z, tables)
    J_all = scorer.num_noises
    J = J_all if num_noises is None else int(num_noises)
    if not 1 <= J <= J_all:
        raise InputError(f"num_noises must lie in [1, {J_all}] (the scorer's bank), got {num_noises}")
    B = z.shape[0]
    if index is not None and (index.ndim != 2 or index.shape[0] != B):
        raise InputError(f"index must be (B={B}, k') int64, got {tuple(index.shape)}")
    dt, net = scorer.dtype, scorer.net
    take = (lambda t: t[None]) if index is None else (lambda t: t[index])  # (1 or B, K', ...)
    K = tables["ada_x"].shape[0] if index is None else index.shape[1]
    noises = scorer.noises[:J]  # (J, Dz)
    zs = (z.float() - scorer.mean) / scorer.std  # (B, Dz) float32
    x_t = scorer.a * zs[:, None] + scorer.s * noises[None]  # (B, J, Dz) float32
    x = net["x_embedder"](x_t.to(dt))[:, None, :, None]  # (B, 1, J, 1, D)

    R = B * K * J
    bias = take(tables["key_bias"])[:, :, None].expand(B, K, J, -1).reshape(R, 1, 1, -1)  # (R, 1, 1, 1+L)
    text = take(tables["text0"])[:, :, None] if "text0" in tables else None  # (1 or B, K, 1, L, D)
    text_qkv = take(tables["text_qkv0"])[:, :, None]  # (1 or B, K, 1, L, 3D or 2D)
    for i, block in enumerate(net["blocks"]):
        ax = take(tables["ada_x"][:, i])[:, :, None]  # (1 or B, K, 1, 6, D): one block at a time
        ac = take(tables["ada_c"][:, i])[:, :, None]  # (1 or B, K, 1, 6, D)
        x, text = block(x, text, ax, ac, bias, (B, K, J), dt, text_qkv if i == 0 else None)  # (B, K, J, 1, D)

    fin = take(tables["ada_final"])[:, :, None]  # (1 or B, K, 1, 2, D)
    h = layer_norm(x, dt) * fin[:, :, :, 1:2] + fin[:, :, :, 0:1]  # (B, K, J, 1, D)
    pred = net["final_linear"](h)[:, :, :, 0]  # (B, K, J, Dz)
    err = (pred.float() - _target(scorer, zs, noises)).pow(2).mean(dim=-1)  # (B, K, J) float32
    return err.sum(dim=-1)  # (B, K)


def _target(scorer: FoldedScorer, zs: torch.Tensor, noises: torch.Tensor) -> torch.Tensor:
    """The diffusion target for a noise subset, broadcastable to (B, K, J, Dz) (as FoldedScorer._target)."""
    if scorer.prediction == "epsilon":
        return noises[None, None]  # (1, 1, J, Dz)
    if scorer.prediction == "sample":
        return zs[:, None, None]  # (B, 1, 1, Dz)
    return (scorer.a * noises[None] - scorer.s * zs[:, None])[:, None]  # (B, 1, J, Dz): v


class PrunedScorer(nn.Module):
    """`forward(z (B, Dz), **tables) -> (B, K) float32`: `staged_scores` on a FoldedScorer.

    Stage 1 uses the scorer's first noise, stage 2 its whole bank (J = scorer.num_noises).
    """

    def __init__(self, scorer: FoldedScorer, keep: int) -> None:
        super().__init__()
        if keep < 1:
            raise ConfigError(f"keep must be >= 1, got {keep}")
        self.scorer, self.keep = scorer, int(keep)

    def forward(self, z: torch.Tensor, **tables: torch.Tensor) -> torch.Tensor:
        K = int(tables["ada_x"].shape[0]) if "ada_x" in tables else 0

        def score_fn(zb: torch.Tensor, index: torch.Tensor | None, J: int) -> torch.Tensor:
            if index is None and J == self.scorer.num_noises:
                return self.scorer(zb, **tables)  # the unpruned graph itself
            return score_rows(self.scorer, zb, tables, index, J)

        return staged_scores(score_fn, z, K, self.scorer.num_noises, self.keep)
