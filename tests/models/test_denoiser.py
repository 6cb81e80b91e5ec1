"""TDSM denoiser: published names and sizes, init, attention maths, padding mask."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tdsm_edge.config import DenoiserConfig, denoiser_preset
from tdsm_edge.errors import InputError
from tdsm_edge.models.denoiser import (
    TDSMDenoiser,
    build_denoiser,
    denoiser_param_count,
    published_state_dict_keys,
    timestep_sinusoid,
)

CFG = DenoiserConfig(hidden_size=32, depth=2, num_heads=4, z_dim=12, cond_dim=20, num_tokens=6)


def randomized(cfg: DenoiserConfig = CFG, seed: int = 0) -> TDSMDenoiser:
    """A model whose zero-initialised layers are made non-zero, so every path matters."""
    torch.manual_seed(seed)
    m = TDSMDenoiser(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def inputs(cfg: DenoiserConfig = CFG, N: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, cfg.z_dim, generator=g)
    t = torch.randint(0, 50, (N,), generator=g)
    fc = torch.randn(N, cfg.cond_dim, generator=g)
    fl = torch.randn(N, cfg.num_tokens, cfg.cond_dim, generator=g)
    mask = torch.ones(N, cfg.num_tokens, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, 2:] = False
    return x, t, fc, fl, mask


def test_state_dict_keys_match_published_dit():
    m = TDSMDenoiser(CFG)
    assert sorted(m.state_dict()) == sorted(published_state_dict_keys(CFG.depth))


def test_paper_size_and_shapes():
    cfg = denoiser_preset("paper", cond_dim=2048, num_tokens=35)
    with torch.device("meta"):
        m = TDSMDenoiser(cfg)
    counts = denoiser_param_count(m)
    assert counts["total"] == 261_208_576  # ≈ 261.2M, as measured for the published model
    assert counts["adaLN"] == 86_226_432  # ≈ 86.2M
    sd = m.state_dict()
    assert sd["fl_pos_embed"].shape == (1, 35, 768)
    assert sd["blocks.0.attn.qkv_c.weight"].shape == (2304, 768)
    assert sd["blocks.11.adaLN_modulation_c.1.weight"].shape == (6 * 768, 768)
    assert sd["blocks.3.mlp_c.fc1.weight"].shape == (3072, 768)
    assert sd["final_layer.adaLN_modulation.1.weight"].shape == (1536, 768)
    assert sd["final_layer.linear.weight"].shape == (256, 768)
    assert sd["fc_embedder.0.weight"].shape == (768, 2048)
    assert sd["t_embedder.mlp.0.weight"].shape == (768, 256)


def test_published_init():
    torch.manual_seed(0)
    m = TDSMDenoiser(denoiser_preset("tiny"))
    for b in m.blocks:
        for lin in (b.adaLN_modulation[1], b.adaLN_modulation_c[1]):
            assert not lin.weight.any() and not lin.bias.any()
        assert not b.attn.qkv.bias.any() and not b.mlp_c.fc2.bias.any()
        # xavier uniform bound for a (3D, D) weight
        bound = math.sqrt(6 / (4 * 128))
        assert b.attn.qkv.weight.abs().max() <= bound and b.attn.qkv.weight.std() > bound / 3
    assert not m.final_layer.linear.weight.any() and not m.final_layer.adaLN_modulation[1].weight.any()
    assert abs(m.fl_pos_embed.std().item() - 0.02) < 0.002
    assert abs(m.t_embedder.mlp[0].weight.std().item() - 0.02) < 0.002
    x, t, fc, fl, mask = inputs(m.cfg)
    assert not m(x, t, fc, fl, mask).any()  # adaLN-Zero: the output starts at exactly 0


def test_timestep_sinusoid_layout():
    emb = timestep_sinusoid(torch.tensor([0, 25]))
    assert emb.shape == (2, 256) and emb.dtype == torch.float32
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))
    freq3 = math.exp(-math.log(10_000) * 3 / 128)
    assert emb[1, 3].item() == pytest.approx(math.cos(25 * freq3), abs=1e-5)
    assert emb[1, 128 + 3].item() == pytest.approx(math.sin(25 * freq3), abs=1e-5)


def test_joint_attention_equals_sdpa():
    m = randomized()
    attn = m.blocks[0].attn
    g = torch.Generator().manual_seed(2)
    x, cond = torch.randn(3, 1, 32, generator=g), torch.randn(3, 6, 32, generator=g)
    out_x, out_c = attn(x, cond)

    H, hd = attn.num_heads, attn.head_dim
    tokens_qkv = torch.cat([attn.qkv(x), attn.qkv_c(cond)], dim=1)  # (3, 7, 96)
    q, k, v = tokens_qkv.reshape(3, 7, 3, H, hd).permute(2, 0, 3, 1, 4)
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(3, 7, 32)
    torch.testing.assert_close(out_x, attn.proj(ref[:, :1]), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_c, attn.proj_c(ref[:, 1:]), rtol=1e-5, atol=1e-6)


def test_forward_shapes_and_batch_independence():
    m = randomized()
    x, t, fc, fl, mask = inputs()
    with torch.no_grad():
        out = m(x, t, fc, fl, mask)
        assert out.shape == x.shape and torch.isfinite(out).all()
        assert m(x[:, None], t, fc, fl, mask).shape == (3, 1, CFG.z_dim)
        torch.testing.assert_close(m(x[:, None], t, fc, fl, mask)[:, 0], out)
        for i in range(3):
            one = m(x[i : i + 1], t[i : i + 1], fc[i : i + 1], fl[i : i + 1], mask[i : i + 1])
            torch.testing.assert_close(one, out[i : i + 1], rtol=1e-5, atol=1e-6)


def test_padding_mask_excludes_padded_tokens():
    m = randomized()
    x, t, fc, fl, mask = inputs()
    fl2 = fl.clone()
    fl2[~mask] = 100.0 * torch.randn(int((~mask).sum()), CFG.cond_dim)  # change only the padded tokens
    with torch.no_grad():
        a, b = m(x, t, fc, fl, mask), m(x, t, fc, fl2, mask)
        assert torch.isfinite(b).all()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        # an all-valid mask is the same as no mask
        full = torch.ones_like(mask)
        torch.testing.assert_close(m(x, t, fc, fl, full), m(x, t, fc, fl, None))
        # without the mask the padded tokens do change the result (the published behaviour)
        assert (m(x, t, fc, fl, None) - m(x, t, fc, fl2, None)).abs().max() > 1e-3


def test_mask_ignored_when_disabled():
    from dataclasses import replace

    cfg = replace(CFG, mask_text_padding=False)
    m = randomized(cfg)
    x, t, fc, fl, mask = inputs(cfg)
    with torch.no_grad():
        torch.testing.assert_close(m(x, t, fc, fl, mask), m(x, t, fc, fl, None), rtol=0, atol=0)


def test_gradients_reach_every_parameter_but_the_last_text_outputs():
    m = randomized().train()
    x, t, fc, fl, mask = inputs()
    m(x, t, fc, fl, mask).pow(2).mean().backward()
    missing = {n for n, p in m.named_parameters() if p.grad is None or not p.grad.any()}
    # the last block's text-stream outputs never reach the skeleton token (the edge path drops them)
    last = CFG.depth - 1
    assert missing == {
        f"blocks.{last}.{n}.{w}" for n in ("attn.proj_c", "mlp_c.fc1", "mlp_c.fc2") for w in ("weight", "bias")
    }


def test_factory_and_input_errors():
    m = build_denoiser("tiny", z_dim=8, cond_dim=10, num_tokens=4)
    assert m.cfg.preset == "tiny" and m.cfg.hidden_size == 128 and m.cfg.z_dim == 8
    assert build_denoiser(CFG, depth=1).cfg.depth == 1
    x, t, fc, fl, mask = inputs()
    with pytest.raises(InputError, match="num_tokens"):
        randomized()(x, t, fc, fl[:, :5], mask[:, :5])


def test_last_block_skip_is_exact():
    """Skipping the last block's text-stream work leaves the output unchanged."""
    import torch

    from tdsm_edge.config import DenoiserConfig
    from tdsm_edge.models.denoiser import TDSMDenoiser

    torch.manual_seed(0)
    m = TDSMDenoiser(DenoiserConfig(hidden_size=16, depth=3, num_heads=2, z_dim=8, cond_dim=6, num_tokens=4)).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    x, t = torch.randn(5, 8), torch.randint(0, 50, (5,))
    fc, fl = torch.randn(5, 6), torch.randn(5, 4, 6)
    mask = torch.tensor([[True, True, True, False]] * 5)
    with torch.no_grad():
        out = m(x, t, fc, fl, mask)
        h = m.x_embedder(x[:, None])
        cond = m.fl_embedder(fl) + m.fl_pos_embed
        c = m.condition(t, fc)
        bias = m.key_bias(mask)
        for block in m.blocks:  # every block with its full text stream
            h, cond = block(h, cond, c, bias, text_out=True)
        ref = m.final_layer(h, c)[:, 0]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_class_table_gradients_are_bitwise_reproducible_with_threads():
    """Training with class tables (`text_index`) gives the same gradients every time on a multi-threaded
    CPU: the gather's backward must not accumulate with atomic adds (advanced indexing did, so two
    runs of `make demo` trained different models)."""
    cfg = DenoiserConfig(hidden_size=64, depth=2, num_heads=4, z_dim=32, cond_dim=96, num_tokens=8)
    m = randomized(cfg).train()
    g = torch.Generator().manual_seed(5)
    N, K = 512, 12
    x, t = torch.randn(N, cfg.z_dim, generator=g), torch.randint(0, 50, (N,), generator=g)
    fc, fl = torch.randn(K, cfg.cond_dim, generator=g), torch.randn(K, cfg.num_tokens, cfg.cond_dim, generator=g)
    index = torch.randint(0, K, (N,), generator=g)

    def grads() -> dict:
        m.zero_grad()
        m(x, t, fc, fl, None, text_index=index).pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    threads = torch.get_num_threads()
    torch.set_num_threads(max(2, threads))
    try:
        first = grads()
        for _ in range(5):
            again = grads()
            assert [n for n in first if not torch.equal(first[n], again[n])] == []
    finally:
        torch.set_num_threads(threads)
