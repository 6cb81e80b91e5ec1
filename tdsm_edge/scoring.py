"""Zero-shot scoring in torch: the published per-noise, per-class loop and a batched equivalent.

For a skeleton feature z, a fixed noise bank ε_1..ε_J and a fixed timestep t, the error of class k is
    e[k] = Σ_j mean_d (model(x_t(z, ε_j), t, text_k) − target(z, ε_j))²
and the prediction is argmin_k e[k]. `target` is the schedule's training target (ε for the default
epsilon prediction), exactly as the published evaluation compares them.

`score_reference` is the literal loop (J × K forward passes over the batch) and defines the
numbers; `score_batched` computes the same B × K × J rows in as few forward calls as memory
allows and must agree with it to 1e-5 relative (tested).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .errors import InputError
from .models.schedule import DDPMSchedule

ClassText = tuple[torch.Tensor, torch.Tensor, "torch.Tensor | None"]  # fc (K, Dc), fl (K, L, Dc), mask (K, L)


def noise_bank(J: int, z_dim: int, seed: int) -> torch.Tensor:
    """The fixed scoring noises: `(J, z_dim) float32` on CPU from a seeded `torch.Generator`.

    Drawn on the CPU generator so the bank is the same on every machine (for a given torch
    version); bundles store the bank itself, so a bundle never depends on re-drawing it.
    """
    if J < 1 or z_dim < 1:
        raise InputError(f"noise bank needs J >= 1 and z_dim >= 1, got J={J}, z_dim={z_dim}")
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(J, z_dim, generator=g, dtype=torch.float32)  # (J, z_dim)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` in eval mode under no_grad, restoring its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def _check(z: torch.Tensor, class_text: ClassText, noises: torch.Tensor) -> tuple[int, int, int]:
    """Validate shapes; return (B, K, J)."""
    fc, fl, mask = class_text
    if z.ndim != 2:
        raise InputError(f"z must be (B, Dz), got shape {tuple(z.shape)}")
    if fc.ndim != 2 or fl.ndim != 3 or fc.shape[0] != fl.shape[0]:
        raise InputError(f"class text must be fc (K, Dc) and fl (K, L, Dc); got {tuple(fc.shape)}, {tuple(fl.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(fl.shape[:2]):
        raise InputError(f"class text mask must be (K, L) = {tuple(fl.shape[:2])}, got {tuple(mask.shape)}")
    if noises.ndim != 2 or noises.shape[1] != z.shape[1]:
        raise InputError(f"noises must be (J, Dz={z.shape[1]}), got {tuple(noises.shape)}")
    return z.shape[0], fc.shape[0], noises.shape[0]


def _row_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-row mean squared error in float32: `(R, Dz)` × 2 → `(R,)`."""
    return (pred.float() - target.float()).pow(2).mean(dim=-1)


def score_reference(
    model: nn.Module, schedule: DDPMSchedule, z: torch.Tensor, class_text: ClassText, noises: torch.Tensor, t: int
) -> torch.Tensor:
    """The published evaluation loop: one forward over the batch per (noise, class).

    Args:
        model: the denoiser (`forward(x, t, fc, fl, mask)`), run in eval mode under no_grad.
        schedule: gives ᾱ_t and the target for its prediction type.
        z: `(B, Dz)` float skeleton features.
        class_text: `(fc (K, Dc), fl (K, L, Dc), mask (K, L) bool or None)`.
        noises: `(J, Dz)` the fixed noise bank.
        t: the fixed timestep.
    Returns:
        `(B, K) float32` errors summed over the J noises (lower = more likely).
    """
    B, K, J = _check(z, class_text, noises)
    fc, fl, mask = (None if x is None else x.to(z.device) for x in class_text)
    noises = noises.to(z.device, z.dtype)
    tt = torch.full((B,), t, dtype=torch.long, device=z.device)  # (B,)
    errors = torch.zeros(B, K, dtype=torch.float32, device=z.device)  # (B, K)
    with eval_mode(model):
        for j in range(J):
            eps = noises[j].expand(B, -1)  # (B, Dz)
            x_t = schedule.add_noise(z, eps, tt)  # (B, Dz)
            target = schedule.target(z, eps, tt)  # (B, Dz)
            for k in range(K):
                fc_k = fc[k].expand(B, -1)  # (B, Dc)
                fl_k = fl[k].expand(B, -1, -1)  # (B, L, Dc)
                mask_k = None if mask is None else mask[k].expand(B, -1)  # (B, L)
                pred = model(x_t, tt, fc_k, fl_k, mask_k)  # (B, Dz)
                errors[:, k] += _row_error(pred, target)
    return errors


def score_batched(
    model: nn.Module,
    schedule: DDPMSchedule,
    z: torch.Tensor,
    class_text: ClassText,
    noises: torch.Tensor,
    t: int,
    chunk_rows: int = 8192,
) -> torch.Tensor:
    """Same result as `score_reference`, with all B × K × J rows in as few forward calls as possible.

    Rows are ordered (b, k, j) and run `chunk_rows` at a time (one call when B·K·J ≤ chunk_rows)
    to bound memory: a chunk holds `chunk_rows × (1 + L) × D` activations, so lower it for the
    paper-size model on small devices. The class text is passed as tables with a per-row class
    index (`TDSMDenoiser(..., text_index=)`), so it is embedded once per chunk.

    Returns:
        `(B, K) float32` errors summed over the J noises.
    """
    if chunk_rows < 1:
        raise InputError(f"chunk_rows must be >= 1, got {chunk_rows}")
    B, K, J = _check(z, class_text, noises)
    fc, fl, mask = (None if x is None else x.to(z.device) for x in class_text)
    noises = noises.to(z.device, z.dtype)
    Dz = z.shape[1]

    eps = noises[None].expand(B, J, Dz)  # (B, J, Dz)
    z_bj = z[:, None].expand(B, J, Dz)  # (B, J, Dz)
    tt_bj = torch.full((B, J), t, dtype=torch.long, device=z.device)  # (B, J)
    x_t = schedule.add_noise(z_bj, eps, tt_bj)  # (B, J, Dz)
    target = schedule.target(z_bj, eps, tt_bj)  # (B, J, Dz)

    R = B * K * J
    rows = torch.arange(R, device=z.device)  # (R,) ordered (b, k, j)
    b_idx = rows // (K * J)  # (R,)
    k_idx = (rows // J) % K  # (R,)
    j_idx = rows % J  # (R,)
    errors = torch.empty(R, dtype=torch.float32, device=z.device)  # (R,)
    with eval_mode(model):
        for start in range(0, R, chunk_rows):
            sl = slice(start, min(start + chunk_rows, R))
            b, k, j = b_idx[sl], k_idx[sl], j_idx[sl]
            tt = torch.full((b.shape[0],), t, dtype=torch.long, device=z.device)  # (r,)
            # class tables + index: each class's text is embedded once per chunk, not once per row
            pred = model(x_t[b, j], tt, fc, fl, mask, text_index=k)  # (r, Dz)
            errors[sl] = _row_error(pred, target[b, j])
    return errors.view(B, K, J).sum(dim=-1)  # (B, K)


def predict(errors: torch.Tensor) -> torch.Tensor:
    """`(B, K)` errors → `(B,) int64` index of the lowest-error class."""
    return errors.argmin(dim=-1)


def topk(errors: torch.Tensor, k: int) -> torch.return_types.topk:
    """The k lowest-error classes, best first: `torch.return_types.topk` with `.values (B, k)`
    (errors) and `.indices (B, k) int64`."""
    if not 1 <= k <= errors.shape[-1]:
        raise InputError(f"k must lie in [1, {errors.shape[-1]}], got {k}")
    return torch.topk(errors, k, dim=-1, largest=False, sorted=True)
