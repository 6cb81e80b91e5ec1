"""Triplet diffusion loss against a hand computation, and the negative sampler."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tdsm_edge.config import DenoiserConfig, LossConfig, ScheduleConfig
from tdsm_edge.models.denoiser import TDSMDenoiser
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.training.loss import sample_negatives, triplet_diffusion_loss

B, DZ, DC, L = 4, 6, 5, 3


class StandIn(nn.Module):
    """pred = A·x + U·fc + V·(masked mean of fl) + t/100: small, deterministic, text-dependent."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.A = nn.Parameter(torch.randn(DZ, DZ, generator=g) * 0.5)
        self.U = nn.Parameter(torch.randn(DC, DZ, generator=g) * 0.5)
        self.V = nn.Parameter(torch.randn(DC, DZ, generator=g) * 0.5)

    def forward(self, x, t, fc, fl, mask=None):
        w = torch.ones(fl.shape[:2]) if mask is None else mask.float()  # (N, L)
        pooled = (fl * w[..., None]).sum(1) / w.sum(1, keepdim=True)
        return x @ self.A + fc @ self.U + pooled @ self.V + t[:, None].float() / 100


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z, eps = torch.randn(B, DZ, generator=g), torch.randn(B, DZ, generator=g)
    t = torch.tensor([3, 25, 0, 49])
    pos = (torch.randn(B, DC, generator=g), torch.randn(B, L, DC, generator=g), None)
    mask = torch.tensor([[True, True, False]] * B)
    neg = (torch.randn(B, DC, generator=g), torch.randn(B, L, DC, generator=g), mask)
    return z, eps, t, pos, neg


def hand_loss(model, schedule, z, pos, neg, t, eps, cfg, pos_label, neg_label):
    """Sample by sample, with python floats."""
    terms_d, terms_t = [], []
    for i in range(B):
        a, s = schedule.alpha_bar(int(t[i])) ** 0.5, (1 - schedule.alpha_bar(int(t[i]))) ** 0.5
        x_t = (a * z[i] + s * eps[i])[None]
        target = eps[i]
        with torch.no_grad():
            pp = model(x_t, t[i : i + 1], pos[0][i : i + 1], pos[1][i : i + 1], None)[0]
            pn = model(x_t, t[i : i + 1], neg[0][i : i + 1], neg[1][i : i + 1], neg[2][i : i + 1])[0]
        e_pos = sum((float(pp[d]) - float(target[d])) ** 2 for d in range(DZ)) / DZ
        e_neg = sum((float(pn[d]) - float(target[d])) ** 2 for d in range(DZ)) / DZ
        terms_d.append(e_pos)
        terms_t.append(max(0.0, e_pos - e_neg + cfg.margin) * (1.0 if pos_label[i] != neg_label[i] else 0.0))
    diffusion, triplet = sum(terms_d) / B, sum(terms_t) / B
    return cfg.w_diffusion * diffusion + cfg.w_triplet * triplet, diffusion, triplet


def test_equals_hand_computation_with_weights_and_mask():
    model, schedule = StandIn(), DDPMSchedule(ScheduleConfig())
    z, eps, t, pos, neg = batch()
    cfg = LossConfig(w_diffusion=0.7, w_triplet=1.3, margin=2.0)
    pos_label = torch.tensor([0, 1, 2, 3])
    neg_label = torch.tensor([5, 1, 7, 3])  # samples 1 and 3: negative == positive
    out = triplet_diffusion_loss(model, schedule, z, pos, neg, t, eps, cfg, pos_label=pos_label, neg_label=neg_label)
    loss, diffusion, triplet = hand_loss(model, schedule, z, pos, neg, t, eps, cfg, pos_label, neg_label)
    assert out["loss"].item() == pytest.approx(loss, rel=1e-5)
    assert out["diffusion"].item() == pytest.approx(diffusion, rel=1e-5)
    assert out["triplet"].item() == pytest.approx(triplet, rel=1e-5)
    assert out["e_pos"].shape == (B,) and not out["e_pos"].requires_grad
    # large margin: every unmasked term is active, so masking really removed two terms
    expected = ((out["e_pos"] - out["e_neg"] + 2.0).clamp(min=0) * torch.tensor([1.0, 0, 1, 0])).mean()
    assert out["triplet"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert (out["e_pos"] - out["e_neg"] + 2.0)[[1, 3]].min() > 0  # they would have counted
    out["loss"].backward()
    assert model.A.grad is not None and model.U.grad.any()


def test_all_negatives_equal_positive_gives_zero_triplet():
    model, schedule = StandIn(), DDPMSchedule(ScheduleConfig())
    z, eps, t, pos, neg = batch(1)
    labels = torch.tensor([2, 2, 4, 4])
    out = triplet_diffusion_loss(
        model, schedule, z, pos, neg, t, eps, LossConfig(), pos_label=labels, neg_label=labels.clone()
    )
    assert out["triplet"].item() == 0.0
    assert out["loss"].item() == pytest.approx(out["diffusion"].item())


def test_v_prediction_uses_the_velocity_target():
    model, schedule = StandIn(), DDPMSchedule(ScheduleConfig(prediction="v_prediction"))
    z, eps, t, pos, neg = batch(2)
    labels = torch.arange(B)
    out = triplet_diffusion_loss(
        model, schedule, z, pos, neg, t, eps, LossConfig(), pos_label=labels, neg_label=labels + 1
    )
    x_t = schedule.add_noise(z, eps, t)
    with torch.no_grad():
        pred = model(x_t, t, pos[0], pos[1], None)
    expected = (pred - schedule.velocity(z, eps, t)).pow(2).mean()
    assert out["diffusion"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_zero_initialised_denoiser_gives_closed_form():
    # adaLN-Zero: the fresh denoiser outputs exactly 0, so e_pos = e_neg = mean(ε²) per sample
    torch.manual_seed(0)
    model = TDSMDenoiser(DenoiserConfig(hidden_size=16, depth=1, num_heads=2, z_dim=DZ, cond_dim=DC, num_tokens=L))
    z, eps, t, pos, neg = batch(3)
    labels = torch.tensor([0, 1, 2, 3])
    out = triplet_diffusion_loss(
        model,
        DDPMSchedule(ScheduleConfig()),
        z,
        pos,
        neg,
        t,
        eps,
        LossConfig(margin=0.5),
        pos_label=labels,
        neg_label=torch.tensor([1, 1, 0, 0]),
    )
    assert out["diffusion"].item() == pytest.approx(eps.pow(2).mean().item(), rel=1e-6)
    assert out["triplet"].item() == pytest.approx(0.5 * 3 / 4, rel=1e-6)  # 3 of 4 unmasked, each = margin
    out["loss"].backward()
    assert model.final_layer.linear.weight.grad.any()


def test_sample_negatives_uniform_over_seen_and_seeded():
    seen = torch.tensor([0, 2, 3, 7, 9])
    pos = torch.zeros(5000, dtype=torch.long)
    a = sample_negatives(pos, seen, torch.Generator().manual_seed(4))
    b = sample_negatives(pos, seen.tolist(), torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.dtype == torch.int64 and a.shape == (5000,)
    counts = torch.bincount(a, minlength=10)
    assert set(torch.nonzero(counts).flatten().tolist()) == {0, 2, 3, 7, 9}
    assert counts[seen].min() > 900 and counts[seen].max() < 1100  # 1000 expected each
    assert (a == pos).any()  # equal draws are kept, then masked


def test_class_tables_equal_per_sample_rows():
    """Passing class tables + indices gives the same loss and gradients as per-sample text rows."""
    from tdsm_edge.config import DenoiserConfig, LossConfig, ScheduleConfig
    from tdsm_edge.models.denoiser import TDSMDenoiser
    from tdsm_edge.models.schedule import DDPMSchedule
    from tdsm_edge.training.loss import triplet_diffusion_loss

    torch.manual_seed(0)
    cfg = DenoiserConfig(hidden_size=16, depth=2, num_heads=2, z_dim=8, cond_dim=6, num_tokens=3)
    model = TDSMDenoiser(cfg)
    for p in model.parameters():  # leave the zero init so every parameter matters
        torch.nn.init.normal_(p, std=0.2)
    sched = DDPMSchedule(ScheduleConfig())
    K, B = 4, 7
    fc, fl = torch.randn(K, 6), torch.randn(K, 3, 6)
    mask = torch.tensor([[True, True, False]] * K)
    pos, neg = torch.randint(0, K, (B,)), torch.randint(0, K, (B,))
    z, eps, t = torch.randn(B, 8), torch.randn(B, 8), torch.randint(0, 50, (B,))
    a = triplet_diffusion_loss(
        model,
        sched,
        z,
        (fc[pos], fl[pos], mask[pos]),
        (fc[neg], fl[neg], mask[neg]),
        t,
        eps,
        LossConfig(),
        pos_label=pos,
        neg_label=neg,
    )
    a["loss"].backward()
    ga = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    b = triplet_diffusion_loss(
        model, sched, z, (fc, fl, mask, pos), (fc, fl, mask, neg), t, eps, LossConfig(), pos_label=pos, neg_label=neg
    )
    b["loss"].backward()
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-6, atol=1e-7)
    for n, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(ga[n], p.grad, rtol=1e-5, atol=1e-7, msg=n)
