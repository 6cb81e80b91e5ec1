"""Published TDSM checkpoints: an independent reference of the published DiT forward (written from
DESIGN.md, "Published code"), saved the way accelerate's `save_state` saves it, loaded through
`load_published_checkpoint` / the conversion CLI, and compared with our denoiser."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from tdsm_edge.errors import CheckpointError, ConfigError
from tdsm_edge.models.published import build_parser, infer_published_config, load_published_checkpoint, main

# small published-shaped DiT: hidden 64, depth 2, heads 4, cond 48, 35 local tokens, Dz 32
D, DEPTH, HEADS, DC, L, DZ = 64, 2, 4, 48, 35, 32


# ---------------------------------------------------------------- the reference (published layout)
def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Linear-SiLU-Linear; keys `.0.*`, `.2.*`."""
    return nn.Sequential(nn.Linear(d_in, d_out), nn.SiLU(), nn.Linear(d_out, d_out))


def _ada(d: int, chunks: int) -> nn.Sequential:
    """adaLN: SiLU then Linear(D -> chunks*D); keys `.1.*`."""
    return nn.Sequential(nn.SiLU(), nn.Linear(d, chunks * d))


class RefDiT(nn.Module):
    """Parameters named as the published `DiT`; the maths lives in `ref_forward`."""

    def __init__(self, d: int = D, depth: int = DEPTH, cond: int = DC, tokens: int = L, dz: int = DZ) -> None:
        super().__init__()
        self.x_embedder = nn.Linear(dz, d)
        self.t_embedder = nn.Module()
        self.t_embedder.mlp = _mlp(256, d)
        self.fc_embedder = _mlp(cond, d)
        self.fl_embedder = nn.Linear(cond, d)
        self.fl_pos_embed = nn.Parameter(0.5 * torch.randn(1, tokens, d))
        self.blocks = nn.ModuleList()
        for _ in range(depth):
            blk = nn.Module()
            blk.attn = nn.Module()
            for name, width in (("qkv", 3 * d), ("proj", d), ("qkv_c", 3 * d), ("proj_c", d)):
                setattr(blk.attn, name, nn.Linear(d, width))
            for name in ("mlp", "mlp_c"):
                mlp = nn.Module()
                mlp.fc1, mlp.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
                setattr(blk, name, mlp)
            blk.adaLN_modulation, blk.adaLN_modulation_c = _ada(d, 6), _ada(d, 6)
            self.blocks.append(blk)
        self.final_layer = nn.Module()
        self.final_layer.linear = nn.Linear(d, dz)
        self.final_layer.adaLN_modulation = _ada(d, 2)


def _ln(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # no affine


def _mod(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


def _sinusoid(t: torch.Tensor, size: int = 256, max_period: float = 10_000.0) -> torch.Tensor:
    half = size // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)  # (128,)
    ang = t.float()[:, None] * freqs[None]  # (B, 128)
    return torch.cat([ang.cos(), ang.sin()], dim=1)  # (B, 256): [cos | sin]


def _joint_attention(
    attn: nn.Module, heads: int, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Skeleton tokens x (B, N, D) first, text tokens y (B, M, D) after; one softmax over N+M keys."""
    B, N, Dm = x.shape
    hd = Dm // heads
    qkv = torch.cat([attn.qkv(x).view(B, N, 3, heads, hd), attn.qkv_c(y).view(B, y.shape[1], 3, heads, hd)], dim=1)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (B, N+M, H, hd)
    w = torch.einsum("bqhd,bkhd->bhqk", q * hd**-0.5, k).softmax(dim=-1)  # (B, H, N+M, N+M)
    o = torch.einsum("bhqk,bkhd->bqhd", w, v).reshape(B, -1, Dm)  # (B, N+M, D)
    return attn.proj(o[:, :N]), attn.proj_c(o[:, N:])


@torch.no_grad()
def ref_forward(
    ref: RefDiT, x: torch.Tensor, t: torch.Tensor, fc: torch.Tensor, fl: torch.Tensor, heads: int = HEADS
) -> torch.Tensor:
    """The published forward: x (B, 1, Dz), t (B,), fc (B, Dc), fl (B, L, Dc) -> (B, 1, Dz). Every block
    runs both streams in full (no last-block shortcut)."""
    h = ref.x_embedder(x)  # (B, 1, D)
    y = ref.fl_embedder(fl) + ref.fl_pos_embed  # (B, L, D)
    c = ref.t_embedder.mlp(_sinusoid(t)) + ref.fc_embedder(fc)  # (B, D)
    for blk in ref.blocks:
        s1, a1, g1, s2, a2, g2 = blk.adaLN_modulation(c).chunk(6, dim=1)
        s1c, a1c, g1c, s2c, a2c, g2c = blk.adaLN_modulation_c(c).chunk(6, dim=1)
        ah, ay = _joint_attention(blk.attn, heads, _mod(_ln(h), s1, a1), _mod(_ln(y), s1c, a1c))
        h = h + g1[:, None] * ah
        y = y + g1c[:, None] * ay
        gelu = lambda z: F.gelu(z, approximate="tanh")  # noqa: E731
        h = h + g2[:, None] * blk.mlp.fc2(gelu(blk.mlp.fc1(_mod(_ln(h), s2, a2))))
        y = y + g2c[:, None] * blk.mlp_c.fc2(gelu(blk.mlp_c.fc1(_mod(_ln(y), s2c, a2c))))
    shift, scale = ref.final_layer.adaLN_modulation(c).chunk(2, dim=1)
    return ref.final_layer.linear(_mod(_ln(h), shift, scale))  # (B, 1, Dz)


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ref() -> RefDiT:
    torch.manual_seed(0)
    m = RefDiT().eval()  # default torch init: every weight and bias random, nothing zero
    assert all(p.abs().max() > 0 for p in m.parameters())
    return m


def batch(n: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, DZ, generator=g),
        torch.randint(0, 50, (n,), generator=g),
        torch.randn(n, DC, generator=g),
        torch.randn(n, L, DC, generator=g),
    )


def accelerate_folder(path, state: dict, fmt: str = "safetensors"):
    """What `Accelerator.save_state(path)` leaves for one prepared model, optimizer and scheduler."""
    path.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in state.items()}
    if fmt == "safetensors":
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, path / "pytorch_model.bin")
    torch.save({"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}, path / "optimizer.bin")
    torch.save({"last_epoch": 3}, path / "scheduler.bin")
    torch.save({"step": 3, "random_state": 7}, path / "random_states_0.pkl")
    return path


class _Wrap(nn.Module):
    """Stands in for DDP (`module`) / torch.compile (`_orig_mod`): only the state-dict prefix matters
    (real DDP and torch.compile wrappers give exactly these prefixes)."""

    def __init__(self, attr: str, inner: nn.Module) -> None:
        super().__init__()
        setattr(self, attr, inner)


def assert_matches(model, ref: RefDiT, mask: bool = False) -> None:
    x, t, fc, fl = batch()
    want = ref_forward(ref, x[:, None], t, fc, fl)[:, 0]  # (B, Dz)
    pad = torch.ones(len(x), L, dtype=torch.bool)
    pad[:, 20:] = False
    with torch.no_grad():
        got = model(x, t, fc, fl, pad if mask else None)
        got_t_float = model(x[:, None], torch.full((len(x),), 25.0), fc, fl)[:, 0]  # published test: float t
    assert want.abs().max() > 1e-2  # a real signal, not adaLN-Zero
    assert (got - want).abs().max().item() <= 1e-5
    want25 = ref_forward(ref, x[:, None], torch.full((len(x),), 25), fc, fl)[:, 0]
    assert (got_t_float - want25).abs().max().item() <= 1e-5


# ---------------------------------------------------------------- loading
def test_accelerate_folder_loads_and_matches_reference(ref, tmp_path):
    folder = accelerate_folder(tmp_path / "best", ref.state_dict())
    model, cfg = load_published_checkpoint(folder, num_heads=HEADS)
    assert (cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.mlp_ratio) == (D, DEPTH, HEADS, 4.0)
    assert (cfg.z_dim, cfg.cond_dim, cfg.num_tokens, cfg.mask_text_padding) == (DZ, DC, L, False)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert_matches(model, ref)
    assert_matches(model, ref, mask=True)  # published behaviour: a padding mask changes nothing


@pytest.mark.parametrize(
    "wrap, fmt",
    [(None, "pickle"), ("module", "safetensors"), ("_orig_mod", "pickle"), ("_orig_mod.module", "safetensors")],
)  # compile(DDP(model)), as accelerate
def test_pickle_and_wrapper_prefixes(ref, tmp_path, wrap, fmt):
    outer: nn.Module = ref
    for attr in reversed(wrap.split(".") if wrap else []):
        outer = _Wrap(attr, outer)
    state = outer.state_dict()
    assert wrap is None or all(k.startswith(wrap + ".") for k in state)
    folder = accelerate_folder(tmp_path / "ck", state, fmt)
    file = folder / ("model.safetensors" if fmt == "safetensors" else "pytorch_model.bin")
    for path in (folder, file):
        model, _ = load_published_checkpoint(path, num_heads=HEADS)
        assert_matches(model, ref)


class NotATensor:
    """A pickled object that `torch.load(weights_only=True)` must refuse to build."""


def test_pickle_with_objects_is_refused(tmp_path):
    tmp_path.joinpath("ck").mkdir()
    torch.save({"x_embedder.weight": torch.zeros(2, 2), "hook": NotATensor()}, tmp_path / "ck" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_published_checkpoint(tmp_path / "ck")


def test_renamed_key_lists_missing_and_unexpected(ref, tmp_path):
    state = dict(ref.state_dict())
    state["blocks.1.attn.qkv_txt.weight"] = state.pop("blocks.1.attn.qkv_c.weight")
    del state["final_layer.linear.bias"]
    with pytest.raises(CheckpointError) as e:
        load_published_checkpoint(accelerate_folder(tmp_path / "ck", state), num_heads=HEADS)
    msg = str(e.value)
    assert "2 missing" in msg and "blocks.1.attn.qkv_c.weight" in msg and "final_layer.linear.bias" in msg
    assert "1 unexpected" in msg and "blocks.1.attn.qkv_txt.weight" in msg


def test_wrong_shape_is_reported(ref, tmp_path):
    state = dict(ref.state_dict())
    state["blocks.1.adaLN_modulation_c.1.weight"] = torch.randn(5 * D, D)
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatches.*blocks\.1\.adaLN_modulation_c\.1\.weight: "
        r"checkpoint \(320, 64\) vs model \(384, 64\)",
    ):
        load_published_checkpoint(accelerate_folder(tmp_path / "ck", state), num_heads=HEADS)


def test_bad_heads_and_missing_files(ref, tmp_path):
    folder = accelerate_folder(tmp_path / "run" / "checkpoint-50000", ref.state_dict())
    with pytest.raises(ConfigError, match="not divisible by 12 heads"):
        load_published_checkpoint(folder)  # default: the paper's 12 heads; 64 % 12 != 0
    with pytest.raises(CheckpointError, match="checkpoint-50000"):
        load_published_checkpoint(tmp_path / "run")  # the work_dir, not the save_state folder
    with pytest.raises(CheckpointError, match="does not exist"):
        load_published_checkpoint(tmp_path / "nowhere")


def test_paper_shapes_infer_the_paper_config():
    with torch.device("meta"):
        state = RefDiT(d=768, depth=12, cond=2048, tokens=35, dz=256).state_dict()
    cfg = infer_published_config(state)
    assert (cfg.preset, cfg.hidden_size, cfg.depth, cfg.num_heads, cfg.mlp_ratio) == ("paper", 768, 12, 12, 4.0)
    assert (cfg.z_dim, cfg.cond_dim, cfg.num_tokens, cfg.mask_text_padding) == (256, 2048, 35, False)


# ---------------------------------------------------------------- conversion CLI
def test_cli_conversion_round_trip_feeds_raw_features(ref, tmp_path, caplog):
    from tdsm_edge.models.folders import load_denoiser
    from tdsm_edge.scoring import noise_bank
    from tdsm_edge.training.evaluation import tdsm_errors

    ck = accelerate_folder(tmp_path / "best", _Wrap("module", ref).state_dict())
    out = tmp_path / "runs" / "pub" / "ru5" / "seed1" / "denoiser"
    assert main(["--checkpoint", str(ck), "--out", str(out), "--heads", str(HEADS), "--log-level", "ERROR"]) == 0
    model, schedule, stats, cfg = load_denoiser(out)
    assert cfg.denoiser.mask_text_padding is False and cfg.train.standardize_features is False
    assert cfg.text.num_tokens == L and cfg.encoder.feature_dim == DZ
    np.testing.assert_array_equal(stats.mean, np.zeros(DZ, np.float32))
    np.testing.assert_array_equal(stats.std, np.ones(DZ, np.float32))
    assert (out / "published_source.json").is_file()
    assert_matches(model, ref)

    # evaluation's scoring path (stats.apply + fixed noise bank + t) on RAW features equals the published test loop
    g = torch.Generator().manual_seed(3)
    z, K, J, t = 3.0 * torch.randn(4, DZ, generator=g) + 1.0, 3, 3, 25
    text = SimpleNamespace(
        global_=torch.randn(K, DC, generator=g).numpy(),
        local=torch.randn(K, L, DC, generator=g).numpy(),
        mask=np.ones((K, L), bool),
    )
    np.testing.assert_array_equal(stats.apply(z.numpy()), z.numpy())
    got = tdsm_errors(model, schedule, stats, z.numpy(), text, J, t, noise_seed=0)  # (4, K)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 50, dtype=torch.float64) ** 2
    ab = torch.cumprod(1 - betas, 0)[t].float()
    want = torch.zeros(len(z), K)
    for eps in noise_bank(J, DZ, 0):
        x_t = ab.sqrt() * z + (1 - ab).sqrt() * eps  # (4, Dz)
        for k in range(K):
            fc = torch.from_numpy(text.global_[k]).expand(len(z), DC)
            fl = torch.from_numpy(text.local[k]).expand(len(z), L, DC)
            pred = ref_forward(ref, x_t[:, None], torch.full((len(z),), t), fc, fl)[:, 0]
            want[:, k] += ((pred - eps) ** 2).mean(dim=1)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-6)

    # an existing folder is not replaced without --overwrite
    assert main(["--checkpoint", str(ck), "--out", str(out), "--heads", str(HEADS), "--log-level", "ERROR"]) == 2
    assert "--overwrite" in caplog.text
    assert (
        main(["--checkpoint", str(ck), "--out", str(out), "--heads", str(HEADS), "--overwrite", "--log-level", "ERROR"])
        == 0
    )


def test_cli_config_must_fit_the_checkpoint(ref, tmp_path, caplog):
    from tdsm_edge.config import DenoiserConfig, EncoderConfig, RunConfig, TextConfig, save_config
    from tdsm_edge.models.folders import load_denoiser

    ck = accelerate_folder(tmp_path / "best", ref.state_dict())
    save_config(RunConfig(name="mine"), tmp_path / "bad.yaml")  # 16 text tokens, Dz 256
    args = ["--checkpoint", str(ck), "--heads", str(HEADS), "--log-level", "ERROR"]
    assert main(args + ["--out", str(tmp_path / "a"), "--config", str(tmp_path / "bad.yaml")]) == 2
    assert f"text.num_tokens: {L}" in caplog.text and f"encoder.feature_dim: {DZ}" in caplog.text
    good = RunConfig(
        name="mine",
        text=TextConfig(num_tokens=L),
        encoder=EncoderConfig(feature_dim=DZ),
        denoiser=DenoiserConfig(num_tokens=L, z_dim=DZ),
    )
    save_config(good, tmp_path / "good.yaml")
    assert main(args + ["--out", str(tmp_path / "b"), "--config", str(tmp_path / "good.yaml")]) == 0
    _, _, _, cfg = load_denoiser(tmp_path / "b")
    assert cfg.name == "mine" and cfg.denoiser.hidden_size == D and not cfg.train.standardize_features


def test_cli_help_shows_defaults():
    text = " ".join(build_parser().format_help().split())  # undo line wrapping
    assert "--checkpoint" in text and "(default: 12)" in text and "(default: none)" in text
