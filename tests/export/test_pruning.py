"""Staged candidate pruning: J = 1 over every class, then the full bank over the kept few."""

from __future__ import annotations

import math

import pytest
import torch

from export.pruning import PrunedScorer, staged_scores
from tdsm_edge.config import ScheduleConfig
from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.models.class_tables import class_tables
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.scoring import noise_bank

J, K, B = 3, 6, 7


def setup(tiny, stats, prediction="epsilon", **overrides):
    model = tiny.model(**overrides)
    schedule = DDPMSchedule(ScheduleConfig(prediction=prediction))
    scorer = FoldedScorer(model, schedule, noise_bank(J, tiny.cfg.z_dim, 0), tiny.t, stats).eval()
    # stage 1's reference: an independent FoldedScorer on the bank's first noise
    one = FoldedScorer(model, schedule, noise_bank(J, tiny.cfg.z_dim, 0)[:1], tiny.t, stats).eval()
    return scorer, one, class_tables(model, *tiny.text(K), t=tiny.t), tiny.features(B)


def test_keep_all_is_full_scoring_exactly(tiny, stats):
    scorer, one, tables, z = setup(tiny, stats)
    with torch.no_grad():
        assert torch.equal(PrunedScorer(scorer, K)(z, **tables), scorer(z, **tables))
        assert torch.equal(PrunedScorer(scorer, K + 4)(z, **tables), scorer(z, **tables))


@pytest.mark.parametrize(
    "prediction,depth", [("epsilon", 2), ("v_prediction", 2), ("sample", 2), ("epsilon", 1), ("epsilon", 3)]
)
def test_kept_classes_get_their_full_errors(tiny, stats, prediction, depth):
    scorer, one, tables, z = setup(tiny, stats, prediction=prediction, depth=depth)
    with torch.no_grad():
        full = scorer(z, **tables)  # (B, K)
        e1 = one(z, **tables)  # (B, K)
        got = PrunedScorer(scorer, 3)(z, **tables)
    assert got.shape == (B, K) and got.dtype == torch.float32
    kept = torch.isfinite(got)
    assert (kept.sum(1) == 3).all()
    # the kept classes are each sample's 3 lowest J=1 errors ...
    want = torch.zeros_like(kept).scatter_(1, e1.topk(3, largest=False).indices, True)
    assert torch.equal(kept, want)
    assert not torch.equal(kept, kept[:1].expand_as(kept))  # samples really keep different classes
    # ... rescored with the full bank: the unpruned scorer's numbers for those classes
    torch.testing.assert_close(got[kept], full[kept], rtol=1e-6, atol=0)
    assert (got[~kept] == math.inf).all()


def test_keep_one_returns_the_stage1_argmin(tiny, stats):
    scorer, one, tables, z = setup(tiny, stats)
    with torch.no_grad():
        got = PrunedScorer(scorer, 1)(z, **tables)
        e1 = one(z, **tables)
        full = scorer(z, **tables)
    assert torch.equal(got.argmin(1), e1.argmin(1))
    assert torch.equal(torch.isfinite(got).sum(1), torch.ones(B, dtype=torch.long))
    torch.testing.assert_close(got.min(1).values, full.gather(1, e1.argmin(1, keepdim=True))[:, 0], rtol=1e-6, atol=0)


def test_score_rows_is_the_folded_scorer(tiny, stats):
    scorer, one, tables, z = setup(tiny, stats)
    idx = torch.tensor([[5, 0], [1, 1], [2, 4], [3, 0], [0, 5], [4, 2], [2, 3]])  # (B, 2), repeats allowed
    with torch.no_grad():
        full = scorer(z, **tables)
        torch.testing.assert_close(scorer.score_rows(z, tables), full, rtol=1e-6, atol=0)
        torch.testing.assert_close(scorer.score_rows(z, tables, idx), full.gather(1, idx), rtol=1e-6, atol=0)
        torch.testing.assert_close(scorer.score_rows(z, tables, num_noises=1), one(z, **tables), rtol=1e-6, atol=0)
    with pytest.raises(InputError, match="num_noises"):
        scorer.score_rows(z, tables, num_noises=J + 1)
    with pytest.raises(InputError, match="index"):
        scorer.score_rows(z, tables, idx[:2])


def test_staged_scores_calls_and_errors():
    calls = []
    errs = torch.tensor([[3.0, 1.0, 2.0, 0.5]])  # (1, 4) J=1 errors

    def score_fn(z, index, J):
        calls.append((None if index is None else index.tolist(), J))
        return errs.clone() if index is None else 10 * errs.gather(1, index)

    got = staged_scores(score_fn, torch.zeros(1, 2), K=4, J_full=3, keep=2)
    assert calls == [(None, 1), ([[3, 1]], 3)]
    assert got.tolist() == [[math.inf, 10.0, math.inf, 5.0]]
    calls.clear()
    got = staged_scores(score_fn, torch.zeros(1, 2), K=4, J_full=1, keep=2)  # J=1: no stage 2
    assert calls == [(None, 1)] and got.tolist() == [[math.inf, 1.0, math.inf, 0.5]]
    with pytest.raises(ConfigError):
        staged_scores(score_fn, torch.zeros(1, 2), K=4, J_full=3, keep=0)


def test_score_rows_of_a_decoupled_scorer_gathers_per_sample_text_tables(tiny, stats):
    """The decoupled block's per-class attention also serves per-sample class subsets (staged pruning)."""
    from tdsm_edge.config import ScheduleConfig
    from tdsm_edge.models.schedule import DDPMSchedule
    from tdsm_edge.scoring import noise_bank

    model = tiny.model(attention="decoupled")
    scorer = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(3, tiny.cfg.z_dim, 0), tiny.t, stats)
    tables, z = class_tables(model, *tiny.text(6), t=tiny.t), tiny.features(5)
    idx = torch.tensor([[5, 0], [1, 1], [2, 4], [3, 0], [0, 5]])
    with torch.no_grad():
        full = scorer(z, **tables)
        torch.testing.assert_close(scorer.score_rows(z, tables, idx), full.gather(1, idx), rtol=1e-5, atol=0)
