"""The triplet diffusion loss of TDSM and its negative sampler.

One batch: draw t and ε once; predict with the true class text (positive) and a random other seen
class text (negative) from the SAME noised input x_t; then
    L = w_d · mean(e_pos) + w_t · mean( max(0, e_pos − e_neg + margin) · [neg ≠ pos] )
where e = per-sample mean squared error between the prediction and the schedule's target.
As in the published code the triplet mean runs over the whole batch (masked terms count as 0),
and the positive and negative passes run as one forward over a 2B batch.

With a `teacher` (distillation, `python -m tdsm_edge.distill`; not in the paper) the loss adds
    w_s · mean over both passes of mean_d (prediction − teacher's prediction on the same x_t, t, text)²
so a decoupled student learns what its TDSM teacher predicts, positives and negatives alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..config import LossConfig
from ..errors import InputError
from ..models.schedule import DDPMSchedule

TextBatch = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # fc (B, Dc), fl (B, L, Dc), mask (B, L)
# or class tables + per-sample class index: fc (K, Dc), fl (K, L, Dc), mask (K, L), index (B,)


def _cat_masks(
    pos: torch.Tensor | None, neg: torch.Tensor | None, B: int, L: int, device: torch.device
) -> torch.Tensor | None:
    """Concatenate two (B, L) masks; a missing one counts as all-valid; both missing → None."""
    if pos is None and neg is None:
        return None
    full = torch.ones(B, L, dtype=torch.bool, device=device)
    return torch.cat([full if pos is None else pos.bool(), full if neg is None else neg.bool()], dim=0)  # (2B, L)


def triplet_diffusion_loss(
    model: nn.Module,
    schedule: DDPMSchedule,
    z: torch.Tensor,
    pos_text: TextBatch,
    neg_text: TextBatch,
    t: torch.Tensor,
    eps: torch.Tensor,
    cfg: LossConfig,
    *,
    pos_label: torch.Tensor,
    neg_label: torch.Tensor,
    teacher: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Triplet diffusion loss for one batch.

    Args:
        model: denoiser `forward(x (N, Dz), t (N,), fc (N, Dc), fl (N, L, Dc), mask (N, L) | None)`.
        schedule: noising and targets (`add_noise`, `target`).
        z: `(B, Dz)` float clean skeleton features.
        pos_text / neg_text: `(fc (B, Dc), fl (B, L, Dc), mask (B, L) bool or None)` per sample.
        t: `(B,)` int64 timesteps, shared by both passes.
        eps: `(B, Dz)` noise, shared by both passes.
        cfg: weights w_d, w_t and the margin.
        pos_label / neg_label: `(B,)` int class indices; the triplet term is zero where equal.
        teacher: a denoiser run on the same inputs (no gradient); adds the `distill` term.
    Returns:
        dict of tensors: `loss` (scalar, = w_d·diffusion + w_t·triplet [+ w_s·distill], differentiable),
        `diffusion`, `triplet` and `distill` (unweighted scalar terms; distill is 0 without a teacher),
        `e_pos` and `e_neg` (`(B,)` per-sample errors, detached, for logging).
    """
    B, Dz = z.shape
    if eps.shape != z.shape or t.shape != (B,):
        raise InputError(
            f"eps must match z {tuple(z.shape)} and t must be ({B},); got {tuple(eps.shape)}, {tuple(t.shape)}"
        )
    if pos_label.shape != (B,) or neg_label.shape != (B,):
        raise InputError(
            f"pos_label and neg_label must be ({B},); got {tuple(pos_label.shape)}, {tuple(neg_label.shape)}"
        )
    if len(pos_text) == 4:
        if pos_text[3].shape != (B,) or neg_text[3].shape != (B,):
            raise InputError(f"class-table text needs a ({B},) class index for the positive and the negative")
        return _loss_from_tables(model, schedule, z, pos_text, neg_text, t, eps, cfg, pos_label, neg_label, teacher)
    fc_p, fl_p, m_p = pos_text
    fc_n, fl_n, m_n = neg_text
    if fc_p.shape != fc_n.shape or fl_p.shape != fl_n.shape or fc_p.shape[0] != B:
        raise InputError(
            f"positive and negative text must both be fc ({B}, Dc), fl ({B}, L, Dc); got "
            f"{tuple(fc_p.shape)}/{tuple(fc_n.shape)} and {tuple(fl_p.shape)}/{tuple(fl_n.shape)}"
        )

    x_t = schedule.add_noise(z, eps, t)  # (B, Dz)
    target = schedule.target(z, eps, t)  # (B, Dz)
    args = (
        torch.cat([x_t, x_t], dim=0),  # (2B, Dz)
        torch.cat([t, t], dim=0),  # (2B,)
        torch.cat([fc_p, fc_n], dim=0),  # (2B, Dc)
        torch.cat([fl_p, fl_n], dim=0),  # (2B, L, Dc)
        _cat_masks(m_p, m_n, B, fl_p.shape[1], z.device),  # (2B, L) or None
    )
    return _terms(model(*args), target, pos_label, neg_label, cfg, _teacher_pred(teacher, args, {}))


def _teacher_pred(teacher: nn.Module | None, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The teacher's prediction on the student's inputs `(2B, Dz)`, without gradient; None without a teacher."""
    if teacher is None:
        return None
    with torch.no_grad():
        return teacher(*args, **kwargs)


def _loss_from_tables(model, schedule, z, pos_text, neg_text, t, eps, cfg, pos_label, neg_label, teacher=None):
    """Same loss with class tables: each class's text is embedded once per step (see TDSMDenoiser)."""
    fc, fl, mask, i_pos = pos_text
    i_neg = neg_text[3]
    if neg_text[0] is not fc or neg_text[1] is not fl:
        raise InputError("with class tables, the positive and negative text must share the same tables")
    x_t = schedule.add_noise(z, eps, t)  # (B, Dz)
    target = schedule.target(z, eps, t)  # (B, Dz)
    args = (torch.cat([x_t, x_t], dim=0), torch.cat([t, t], dim=0), fc, fl, mask)
    kwargs = dict(text_index=torch.cat([i_pos, i_neg], dim=0))
    pred = model(*args, **kwargs)  # (2B, Dz)
    return _terms(pred, target, pos_label, neg_label, cfg, _teacher_pred(teacher, args, kwargs))


def _terms(
    pred: torch.Tensor,
    target: torch.Tensor,
    pos_label: torch.Tensor,
    neg_label: torch.Tensor,
    cfg: LossConfig,
    teacher_pred: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms from the stacked (positive; negative) predictions `(2B, Dz)` and the target `(B, Dz)`
    (and the teacher's predictions `(2B, Dz)` on the same inputs, when distilling)."""
    B = target.shape[0]
    err = (pred.float() - torch.cat([target, target], dim=0).float()).pow(2).mean(dim=-1)  # (2B,)
    e_pos, e_neg = err[:B], err[B:]  # (B,), (B,)

    differs = (pos_label.to(target.device) != neg_label.to(target.device)).float()  # (B,)
    diffusion = e_pos.mean()  # == F.mse_loss(pred_pos, target): every sample has Dz elements
    triplet = (torch.clamp(e_pos - e_neg + cfg.margin, min=0.0) * differs).mean()
    loss = cfg.w_diffusion * diffusion + cfg.w_triplet * triplet
    distill = torch.zeros((), device=pred.device)
    if teacher_pred is not None:
        distill = (pred.float() - teacher_pred.float()).pow(2).mean()  # both passes, every dimension
        loss = loss + cfg.w_distill * distill
    return {
        "loss": loss,
        "diffusion": diffusion,
        "triplet": triplet,
        "distill": distill,
        "e_pos": e_pos.detach(),
        "e_neg": e_neg.detach(),
    }


def sample_negatives(
    pos_labels: torch.Tensor, seen_classes: torch.Tensor | Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """Negative class per sample, uniform over the seen classes (with replacement).

    As published, a draw may equal the positive; the loss masks those terms instead of redrawing.

    Args:
        pos_labels: `(B,)` int class indices (used for B and the output device).
        seen_classes: `(S,)` global indices of the seen classes.
        generator: CPU generator for reproducible draws.
    Returns:
        `(B,) int64` on `pos_labels.device`.
    """
    seen = torch.as_tensor(seen_classes, dtype=torch.long).cpu().reshape(-1)  # (S,)
    if seen.numel() == 0:
        raise InputError("sample_negatives needs at least one seen class")
    idx = torch.randint(0, seen.numel(), (pos_labels.shape[0],), generator=generator)  # (B,)
    return seen[idx].to(pos_labels.device)
