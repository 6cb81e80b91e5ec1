"""The scoring benchmark's problem: a random-weight denoiser per preset, 60 random classes, features.

Latency does not depend on what the weights learned, but the correctness check does need scores
that differ between classes: a freshly initialised TDSM denoiser has zero adaLN and output layers
(adaLN-Zero), so every class would score the same. `random_denoiser` therefore draws those layers
with a fixed seed, scaled by fan-in (N(0, 1/fan_in), as tests/helpers/tiny_denoiser.py does with
a flat 0.1 for its 32-wide model: a flat 0.1 over the paper's 768-wide layers gives errors ~10⁴).

Everything is seeded, so every backend and every run sees the same weights, text and features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PRESETS = ("tiny", "small", "paper")
CLASSES = (5, 12, 24, 60)  # K: active classes (the first K of the bundle's 60)
NOISES = (1, 3)  # J: noise-bank sizes (paper J = 3)
BATCHES = (1, 64)  # B: samples per scoring call
MAX_CLASSES = max(CLASSES)
TIMESTEP, NOISE_SEED = 25, 0  # the paper's t; the noise-bank seed
SLOW_SECONDS = 20.0  # a case whose reference loop is estimated above this is marked slow
NOMINAL_GFLOPS = 50.0  # one busy CPU core running the reference loop (measured ~90 uncontended)
RTOL, ATOL = 1e-4, 1e-5  # fp32 against the reference: the same maths, another summation order

# text as the project's configs give each preset: tiny / small as configs/demo.yaml (MiniLM, label +
# description: 2 × 384 channels, 16 tokens, padding masked); paper as configs/ntu60_55_5.yaml
# (OpenCLIP ViT-H-14: 2 × 1024 channels, 35 tokens, no padding mask as the published code)
TEXT = {"tiny": (768, 16, True), "small": (768, 16, True), "paper": (2048, 35, False)}


@dataclass
class Problem:
    """One preset's benchmark problem (torch objects on the CPU)."""

    preset: str
    cfg: Any  # DenoiserConfig
    model: Any  # TDSMDenoiser, eval mode
    schedule: Any  # DDPMSchedule (default ScheduleConfig: T = 50, scaled-linear, epsilon)
    stats: Any  # FeatureStats (Dz,)
    text: Any  # ClassText of MAX_CLASSES random classes, names "class 00".."class 59"
    z: np.ndarray  # (max(BATCHES), Dz) float32 raw features; a call with batch B takes the first B

    def features(self, B: int) -> np.ndarray:
        """The first B raw features `(B, Dz) float32`."""
        return self.z[:B]


def denoiser_config(preset: str):
    """The preset's DenoiserConfig with the text dims of its config (`TEXT`)."""
    from tdsm_edge.config import denoiser_preset

    cond_dim, num_tokens, masked = TEXT[preset]
    return denoiser_preset(preset, cond_dim=cond_dim, num_tokens=num_tokens, mask_text_padding=masked)


def random_denoiser(cfg, seed: int = 0):
    """A TDSMDenoiser with the published init, then its zero-initialised layers (every adaLN output
    layer, the final adaLN and the final linear) drawn N(0, 1/fan_in), biases N(0, 0.1²)."""
    import torch

    from tdsm_edge.models.denoiser import TDSMDenoiser

    torch.manual_seed(seed)
    model = TDSMDenoiser(cfg)
    zero = [b.adaLN_modulation[-1] for b in model.blocks] + [b.adaLN_modulation_c[-1] for b in model.blocks]
    zero += [model.final_layer.adaLN_modulation[-1], model.final_layer.linear]
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for lin in zero:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) / lin.in_features**0.5)
            lin.bias.copy_(0.1 * torch.randn(lin.bias.shape, generator=g))
    return model.eval()


def random_class_text(cfg, K: int = MAX_CLASSES, seed: int = 1):
    """A ClassText of K random classes: global `(K, Dc)`, local `(K, L, Dc)`, and a mask with 4..L
    real tokens per class (padding as short prompts have; ignored when the preset does not mask)."""
    from tdsm_edge.text.prompts import ClassText

    rng = np.random.default_rng(seed)
    L, Dc = cfg.num_tokens, cfg.cond_dim
    fc = rng.standard_normal((K, Dc), dtype=np.float32)  # (K, Dc)
    fl = rng.standard_normal((K, L, Dc), dtype=np.float32)  # (K, L, Dc)
    real = rng.integers(4, L + 1, size=K)  # (K,) real tokens per class
    mask = np.arange(L)[None, :] < real[:, None]  # (K, L) bool
    fl *= mask[..., None]  # padded tokens are zero, as the text encoders give them
    names = tuple(f"class {k:02d}" for k in range(K))
    return ClassText(fc, fl, mask, names, "benchmark:random", ("label", "description"))


def random_features(B: int, z_dim: int, seed: int = 2) -> tuple[np.ndarray, Any]:
    """Raw features `(B, Dz) float32` (offset and scaled, so standardisation matters) and their FeatureStats."""
    from tdsm_edge.data.features import FeatureStats

    rng = np.random.default_rng(seed)
    mean = rng.normal(0.7, 0.2, z_dim).astype(np.float32)  # (Dz,)
    std = rng.uniform(1.0, 2.0, z_dim).astype(np.float32)  # (Dz,)
    z = (mean + std * rng.standard_normal((B, z_dim))).astype(np.float32)  # (B, Dz)
    return z, FeatureStats(mean, std)


def build_problem(preset: str) -> Problem:
    """The seeded problem of one preset (a few seconds for paper: 261M parameters)."""
    from tdsm_edge.config import ScheduleConfig
    from tdsm_edge.models.schedule import DDPMSchedule

    cfg = denoiser_config(preset)
    z, stats = random_features(max(BATCHES), cfg.z_dim)
    return Problem(preset, cfg, random_denoiser(cfg), DDPMSchedule(ScheduleConfig()), stats, random_class_text(cfg), z)


def write_problem_bundle(
    p: Problem, out, J: int, *, reference_weights: bool = True, plan_builder=None, build_command: str | None = None
):
    """The problem's fp32 engine bundle of all MAX_CLASSES classes (J noises, the paper's t, no encoder,
    dynamic batch 1..max(BATCHES)) written to `out`; returns `out`."""
    from export.bundle import BundleRequest, write_bundle
    from tdsm_edge.runtime.iospec import AxisRange

    write_bundle(
        BundleRequest(
            out,
            p.model.cpu(),
            p.schedule,
            p.stats,
            p.text,
            timestep=TIMESTEP,
            num_noises=J,
            noise_seed=NOISE_SEED,
            precision="fp32",
            batch=AxisRange.for_batch(len(p.z), dynamic=True),
            reference_weights=reference_weights,
            plan_builder=plan_builder,
            build_command=build_command,
        )
    )
    return out


def reference_gflop(preset: str, B: int, K: int, J: int) -> float:
    """Estimated GFLOP of the reference loop's J·K forwards over B samples (matmuls only).

    Per (sample, class, noise) row: the text embedders, the timestep MLP, per block the adaLN of both
    streams, the skeleton token's qkv/proj/MLP (12 D²) and the L text tokens' (12 D² each; the last
    block's text needs only k|v, 2 D²), the joint attention, and the final layer.
    """
    cfg = denoiser_config(preset)
    D, L, Dc, Dz, depth = cfg.hidden_size, cfg.num_tokens, cfg.cond_dim, cfg.z_dim, cfg.depth
    embed = L * Dc * D + Dc * D + D * D + 256 * D + D * D + Dz * D  # fl, fc (2 layers), t MLP, x
    block = 2 * 6 * D * D + 12 * D * D + 2 * (1 + L) ** 2 * D  # adaLN × 2 streams, skeleton token, attention
    text = (depth - 1) * L * 12 * D * D + L * 2 * D * D  # text tokens: full blocks, then k|v only
    final = 2 * D * D + D * Dz
    return 2.0 * B * K * J * (embed + depth * block + text + final) / 1e9


def is_slow(preset: str, B: int, K: int, J: int) -> bool:
    """Paper-size cases, and any case whose reference loop is estimated above SLOW_SECONDS on one core."""
    return preset == "paper" or reference_gflop(preset, B, K, J) / NOMINAL_GFLOPS > SLOW_SECONDS


def check_against_reference(errors: np.ndarray, reference: np.ndarray) -> dict:
    """Assert `errors (B, K)` match the reference's; return the deviations for `extra_info`."""
    assert errors.shape == reference.shape and errors.dtype == np.float32, (errors.shape, errors.dtype)
    np.testing.assert_allclose(errors, reference, rtol=RTOL, atol=ATOL)
    best = np.sort(reference, axis=1)  # (B, K)
    tie = best[:, 1] - best[:, 0] <= ATOL + RTOL * np.abs(best[:, 0])  # (B,) too close to call
    agree = errors.argmin(1) == reference.argmin(1)  # (B,)
    assert (agree | tie).all(), f"argmin differs from the reference for samples {np.flatnonzero(~(agree | tie))}"
    return dict(
        max_abs_err=float(np.abs(errors - reference).max()),
        max_rel_err=float((np.abs(errors - reference) / np.abs(reference)).max()),
        argmin_agreement=float(agree.mean()),
    )
