"""The fast path on CUDA (marked `gpu`; skipped where no GPU is visible): Triton kernels against the
torch fallbacks, FastScorer against FoldedScorer fp32, and CUDA-graph capture / replay."""

from __future__ import annotations

import pytest
import torch

from helpers.fastpath_cases import kernel_cases, run_case
from tdsm_edge.config import DenoiserConfig, ScheduleConfig
from tdsm_edge.fastpath.scorer import FastScorer
from tdsm_edge.models.class_tables import ClassTables, class_tables
from tdsm_edge.models.denoiser import TDSMDenoiser
from tdsm_edge.models.folded import FoldedScorer
from tdsm_edge.models.schedule import DDPMSchedule
from tdsm_edge.scoring import noise_bank

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CASES = sorted(kernel_cases())


@pytest.mark.parametrize("name", CASES)
def test_triton_kernels_on_cuda_match_torch(name):
    pytest.importorskip("triton")
    case = kernel_cases("cuda")[name]
    got, want = run_case(case, "triton"), run_case(case, "torch")
    assert got.is_cuda and got.dtype == want.dtype and got.shape == want.shape
    tol = dict(rtol=2e-3, atol=2e-3) if got.dtype == torch.float16 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, want, **tol)
    torch.testing.assert_close(got.cpu(), run_case(kernel_cases()[name], "torch"), **tol)  # and the CPU result


def _problem(tiny, stats, depth=2, attention="joint"):
    model = tiny.model(depth=depth, attention=attention)
    for block in model.blocks if attention == "decoupled" else ():  # non-zero adaLN: every table matters
        torch.nn.init.normal_(block.adaLN_modulation[1].weight, std=0.1)
    folded = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(3, tiny.cfg.z_dim, 0), tiny.t, stats).eval()
    return model, folded


@pytest.mark.parametrize("attention", ["joint", "decoupled"])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_graph_replay_equals_eager_and_the_fp32_reference(tiny, stats, precision, attention):
    model, folded = _problem(tiny, stats, attention=attention)
    tables = class_tables(model, *tiny.text(6, seed=3), t=tiny.t)
    z = tiny.features(300, seed=4)
    with torch.no_grad():
        ref = folded(z, **tables)  # CPU fp32
    graph = FastScorer(folded, precision, device="cuda")
    eager = FastScorer(folded, precision, device="cuda", cuda_graphs=False)
    g1, g2, e = graph(z.cuda(), tables), graph(z.cuda(), tables), eager(z.cuda(), tables)
    assert graph.graphs.shapes == [(300, 6, True)]
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)  # replays are deterministic
    torch.testing.assert_close(g1, e, rtol=1e-4, atol=0)
    torch.testing.assert_close(g1.cpu(), ref, rtol=1e-4 if precision == "fp32" else 3e-3, atol=0)
    assert (g1.argmin(1).cpu() == ref.argmin(1)).float().mean() >= 0.995


def test_graphs_follow_class_set_changes_and_shapes(tiny, stats):
    model, folded = _problem(tiny, stats)
    fc, fl, mask = tiny.text(8, seed=5)
    full = ClassTables.from_dict(class_tables(model, fc, fl, mask, tiny.t))
    set_a, set_b = full.select([0, 1, 2, 3]), full.select([7, 6, 5, 4])  # same K: same static buffers
    unmasked = ClassTables.from_dict(class_tables(model, fc, fl, None, tiny.t)).select([4, 5, 6, 7])
    graph = FastScorer(folded, "fp16", device="cuda")
    eager = FastScorer(folded, "fp16", device="cuda", cuda_graphs=False)
    z = tiny.features(5).cuda()
    for tables in (set_a, set_b, set_a, unmasked, set_b):
        torch.testing.assert_close(graph(z, tables), eager(z, tables), rtol=1e-4, atol=0)
    torch.testing.assert_close(graph(z[:3], set_b), eager(z[:3], set_b), rtol=1e-4, atol=0)
    assert graph.graphs.shapes == [(3, 4, True), (5, 4, False), (5, 4, True)]
    torch.testing.assert_close(graph(z, set_a).flip(1), graph(z, full.select([3, 2, 1, 0])), rtol=1e-3, atol=0)


def test_triton_and_torch_backends_agree_on_cuda(tiny, stats):
    pytest.importorskip("triton")
    model, folded = _problem(tiny, stats, depth=3)
    tables = class_tables(model, *tiny.text(5), t=tiny.t)
    z = tiny.features(40).cuda()
    tri = FastScorer(folded, "fp16", device="cuda", backend="triton", cuda_graphs=False)(z, tables)
    tor = FastScorer(folded, "fp16", device="cuda", backend="torch", cuda_graphs=False)(z, tables)
    torch.testing.assert_close(tri, tor, rtol=2e-3, atol=0)


def test_head_dim_64_model_keeps_top1_on_cuda():
    """hd = 64 and L = 35 as in the paper preset (SDPA's fused kernels run), 24 classes, 2000 features."""
    torch.manual_seed(0)
    cfg = DenoiserConfig(hidden_size=256, depth=4, num_heads=4, z_dim=256, cond_dim=64, num_tokens=35)
    model = TDSMDenoiser(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("adaLN_modulation" in name or "final_layer.linear" in name) and p.ndim == 2:
                p.normal_(0.0, 2.0 / cfg.hidden_size**0.5)
    model = model.cuda()
    g = torch.Generator().manual_seed(1)
    K = 24
    mask = torch.arange(35)[None] < torch.randint(8, 36, (K, 1), generator=g)
    text = torch.randn(K, 64, generator=g).cuda(), torch.randn(K, 35, 64, generator=g).cuda(), mask.cuda()
    folded = FoldedScorer(model, DDPMSchedule(ScheduleConfig()), noise_bank(3, 256, 0), 25).cuda().eval()
    tables = class_tables(model, *text, t=25)
    fast = FastScorer(folded, "fp16")
    assert fast.device.type == "cuda" and fast.graphs is not None
    z = torch.randn(2000, 256, generator=g).cuda()
    with torch.no_grad():
        ref = torch.cat([folded(c, **tables) for c in z.split(500)])
    got = torch.cat([fast(c, tables) for c in z.split(500)])
    assert (got.argmin(1) == ref.argmin(1)).float().mean() >= 0.995
    torch.testing.assert_close(got, ref, rtol=1e-2, atol=0)
