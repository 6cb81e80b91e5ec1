"""CUDA checks (marked `gpu`; skipped where no GPU is visible): the same models, losses, scorers and
training loop on the GPU as on the CPU. Run on the GPU verification machine; CI has no GPU."""

import numpy as np
import pytest
import torch

from tdsm_edge.config import DenoiserConfig, EncoderConfig, LossConfig, ScheduleConfig, config_from_dict
from tdsm_edge.models.denoiser import TDSMDenoiser
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.models.shift_gcn import ShiftGCN
from tdsm_edge.scoring import noise_bank, score_batched, score_reference

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _model(seed=0):
    torch.manual_seed(seed)
    m = TDSMDenoiser(DenoiserConfig(hidden_size=64, depth=2, num_heads=4, z_dim=32, cond_dim=48, num_tokens=6))
    for p in m.parameters():  # leave the zero init so every layer matters
        torch.nn.init.normal_(p, std=0.1)
    return m.eval()


def _text(K=7, L=6, Dc=48, seed=1):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(K, L, dtype=torch.bool)
    mask[:, 4:] = False
    return torch.randn(K, Dc, generator=g), torch.randn(K, L, Dc, generator=g), mask


def test_scoring_on_cuda_matches_cpu_reference():
    m, sched = _model(), DDPMSchedule(ScheduleConfig())
    z = torch.randn(9, 32, generator=torch.Generator().manual_seed(2))
    text, noises = _text(), noise_bank(3, 32, 0)
    ref = score_reference(m, sched, z, text, noises, 25)
    gpu = score_batched(m.cuda(), sched, z.cuda(), tuple(x.cuda() for x in text), noises.cuda(), 25)
    torch.testing.assert_close(gpu.cpu(), ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(gpu.argmin(1).cpu(), ref.argmin(1))


def test_loss_and_gradients_on_cuda_match_cpu():
    from tdsm_edge.training.loss import triplet_diffusion_loss

    sched = DDPMSchedule(ScheduleConfig())
    fc, fl, mask = _text()
    B = 16
    g = torch.Generator().manual_seed(3)
    z, eps = torch.randn(B, 32, generator=g), torch.randn(B, 32, generator=g)
    t, pos, neg = (
        torch.randint(0, 50, (B,), generator=g),
        torch.randint(0, 7, (B,), generator=g),
        torch.randint(0, 7, (B,), generator=g),
    )
    grads = []
    for dev in ("cpu", "cuda"):
        m = _model().train().to(dev)
        d = lambda x, dev=dev: x.to(dev)  # noqa: E731
        tables = d(fc), d(fl), d(mask)  # one set of class tables shared by positive and negative
        out = triplet_diffusion_loss(
            m,
            sched,
            d(z),
            (*tables, d(pos)),
            (*tables, d(neg)),
            d(t),
            d(eps),
            LossConfig(),
            pos_label=d(pos),
            neg_label=d(neg),
        )
        out["loss"].backward()
        grads.append((out["loss"].item(), {n: p.grad.cpu() for n, p in m.named_parameters() if p.grad is not None}))
    assert abs(grads[0][0] - grads[1][0]) < 1e-4 * max(1.0, abs(grads[0][0]))
    for n, gc in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][n], gc, rtol=1e-3, atol=1e-5, msg=n)


def test_shift_gcn_on_cuda_matches_cpu():
    torch.manual_seed(0)
    net = ShiftGCN(EncoderConfig(channels=(16, 32, 64), strides=(2, 2, 1)), num_classes=5).eval()
    x = torch.randn(4, 3, 32, 25, 2)
    with torch.no_grad():
        cpu = net.features(x)
        gpu = net.cuda().features(x.cuda()).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)


def test_denoiser_training_runs_on_cuda(tmp_path):
    from tdsm_edge.models.folders import load_denoiser
    from tdsm_edge.training.denoiser_trainer import train_denoiser

    class Text:
        global_, local, mask = (x.numpy() for x in _text(K=6, L=6, Dc=48))

    cfg = config_from_dict(
        {
            "encoder": {"feature_dim": 32},
            "text": {"num_tokens": 6},
            "denoiser": {"hidden_size": 64, "depth": 2, "num_heads": 4, "z_dim": 32, "cond_dim": 48, "num_tokens": 6},
            "train": {"iterations": 150, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5, "device": "cuda"},
        }
    )
    g = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 16)
    z = (g.normal(size=(6, 32))[y] * 2 + 0.1 * g.normal(size=(len(y), 32))).astype(np.float32)
    model, hist = train_denoiser(z, y, Text(), np.arange(4), cfg, tmp_path, device="cuda", progress=False)
    assert next(model.parameters()).is_cuda
    assert np.mean(hist["loss"][-3:]) < 0.8 * np.mean(hist["loss"][:3])
    loaded, *_ = load_denoiser(tmp_path, device="cuda")
    assert next(loaded.parameters()).is_cuda


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_learns_on_cuda(tmp_path, amp):
    from tdsm_edge.training.denoiser_trainer import train_denoiser

    class Text:
        global_, local, mask = (x.numpy() for x in _text(K=6, L=6, Dc=48))

    cfg = config_from_dict(
        {
            "encoder": {"feature_dim": 32},
            "text": {"num_tokens": 6},
            "denoiser": {"hidden_size": 64, "depth": 2, "num_heads": 4, "z_dim": 32, "cond_dim": 48, "num_tokens": 6},
            "train": {
                "iterations": 150,
                "batch_size": 32,
                "lr": 3e-3,
                "warmup_steps": 5,
                "device": "cuda",
                "amp": amp,
                "checkpoint_every": 50,
            },
        }
    )
    g = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 16)
    z = (g.normal(size=(6, 32))[y] * 2 + 0.1 * g.normal(size=(len(y), 32))).astype(np.float32)
    model, hist = train_denoiser(z, y, Text(), np.arange(4), cfg, tmp_path, device="cuda", progress=False)
    assert all(np.isfinite(hist["loss"]))
    assert np.mean(hist["loss"][-3:]) < 0.8 * np.mean(hist["loss"][:3])
    assert next(model.parameters()).dtype == torch.float32  # autocast keeps fp32 master weights
    import json

    states = [json.loads(p.read_text()) for p in tmp_path.glob("checkpoints/step_*/train_state.json")]
    assert states and all(("grad_scaler" in st) == (amp == "fp16") for st in states)
