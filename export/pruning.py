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
forward pass (`FoldedScorer.score_rows`); no second scorer is built. Torch only (not an ONNX graph).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from tdsm_edge.errors import ConfigError
from tdsm_edge.models.folded import FoldedScorer

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
        K = int(self.scorer.check_inputs(z, tables))

        def score_fn(zb: torch.Tensor, index: torch.Tensor | None, J: int) -> torch.Tensor:
            if index is None and J == self.scorer.num_noises:
                return self.scorer(zb, **tables)  # the unpruned graph itself
            return self.scorer.score_rows(zb, tables, index, J)

        return staged_scores(score_fn, z, K, self.scorer.num_noises, self.keep)
