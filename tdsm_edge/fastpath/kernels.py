"""The fast path's fused per-token kernels: Triton on CUDA, the same maths in plain torch elsewhere.

Four chains that would otherwise be 3–6 elementwise launches each (and materialise the per-class
tables as `(B, K, J, S, D)` broadcasts):

    ln_modulate       LayerNorm (no affine, eps 1e-6) + adaLN modulate   x̂·(1+scale) + shift
    gated_residual_   x += gate · (y + bias)            (the linear's bias is added here, not in the GEMM)
    residual_ln_modulate_   the two above in one pass (a residual add is always followed by a LayerNorm)
    bias_gelu_        u = GELU_tanh(u + bias)           (the MLP's fc1 bias and activation)
    row_sq_error      mean_d (y + bias − target)²  → (rows,) float32   (the final error reduction)

Layout (shared by all four): activations are 3-D views `(R, S, C)`, R = B·K·J rows ordered
(b, k, j), S tokens per row (token 0 = the skeleton token, 1..L = text tokens). Any row / token
strides are accepted (e.g. `x[:, :1]`, the skeleton token of a joint buffer); the last dim must
be contiguous. Per-class tables are `(K, streams, ..., C)`: the kernel picks row
`k = (r // J) % K` and stream `min(s + s_first, 1)` itself (`s_first` = the token index of the
view's first token in the joint sequence), so nothing is expanded to R rows.

Precision: float32 arithmetic inside, inputs read in their own dtype (fp16 activations, fp32 or
fp16 tables), one rounding on store. `backend`: None picks Triton for CUDA tensors when Triton is
installed and torch otherwise; "triton" on CPU tensors needs `TRITON_INTERPRET=1` set before
Triton is first imported (tests do this in a subprocess).
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from tdsm_edge.errors import InputError, MissingDependencyError, installed

LN_EPS = 1e-6  # the denoiser's LayerNorm eps (published); tdsm_edge.models.class_tables.LN_EPS
_GELU_C = 0.7978845608028654  # √(2/π)
BACKENDS = ("torch", "triton")


@functools.cache
def triton_available() -> bool:
    """Whether the `triton` package is importable (it is not imported here)."""
    return installed("triton")


def _triton():
    """The Triton kernel module, imported on first use."""
    try:
        from tdsm_edge.fastpath import triton_kernels
    except ImportError as e:
        raise MissingDependencyError(
            "the fast path's Triton kernels need the 'triton' package (it ships with the CUDA builds of "
            "PyTorch); install it with: pip install triton, or pass backend='torch'"
        ) from e
    return triton_kernels


def resolve_backend(backend: str | None, x: torch.Tensor) -> str:
    """ "triton" or "torch" for a kernel on `x` (see the module docstring for the rule)."""
    if backend is None:
        return "triton" if x.is_cuda and triton_available() else "torch"
    if backend not in BACKENDS:
        raise InputError(f"kernel backend {backend!r} is not supported; use one of {BACKENDS} or None (auto)")
    if backend == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise InputError(
            "Triton kernels run on CUDA tensors; to run them on CPU tensors (slowly, for tests) "
            "set TRITON_INTERPRET=1 before triton is imported, or use backend='torch'"
        )
    return backend


def _check_grid(name: str, t: torch.Tensor, ndim: int) -> None:
    if t.ndim != ndim or t.stride(-1) != 1:
        raise InputError(
            f"{name} must be a {ndim}-D view with a contiguous last dim, got shape "
            f"{tuple(t.shape)} strides {t.stride()}"
        )


def _streams(S: int, s_first: int) -> int:
    """How many streams a view of S tokens starting at token `s_first` touches (1 or 2)."""
    return 2 if S + s_first > 1 else 1


def _check_table(name: str, tab: torch.Tensor, lead: tuple[int, ...], S: int, s_first: int, C: int) -> None:
    """tab must be (*lead, streams ≥ needed, ..., C) with a contiguous last dim."""
    need = _streams(S, s_first)
    n = len(lead)
    if tab.shape[:n] != lead or tab.shape[n] < need or tab.shape[-1] != C or tab.stride(-1) != 1:
        raise InputError(
            f"{name} must be ({', '.join(map(str, lead + (need,)))}, ..., {C}) with a contiguous "
            f"last dim (streams: skeleton, text), got shape {tuple(tab.shape)} strides {tab.stride()}"
        )


def _check_rows(R: int, J: int, K: int) -> None:
    if J < 1 or K < 1 or R % (J * K):
        raise InputError(f"{R} rows are not a (B, K={K}, J={J}) grid")


def _blocks(C: int, n_rows: int, full_row: bool) -> dict:
    """Launch meta-parameters: ~4096 elements per program (full_row keeps a whole row in one
    block, for the LayerNorm); 8 warps at that size so each thread holds 16 values per tensor."""
    bc = triton_next_pow2(C) if full_row else min(triton_next_pow2(C), 1024)
    br = max(1, min(64, 4096 // bc, triton_next_pow2(n_rows)))
    return dict(BLOCK_R=br, BLOCK_C=bc, num_warps=8 if br * bc >= 4096 else 4)


def triton_next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _check_residual(
    x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, bias: torch.Tensor | None, J: int, K: int, s_first: int
) -> tuple[int, int, int]:
    """The checks of a gated residual `x += gate·(y + bias)`; returns x's (R, S, C)."""
    _check_grid("x", x, 3)
    _check_grid("y", y, 3)
    R, S, C = x.shape
    if y.shape != x.shape:
        raise InputError(f"y must match x {tuple(x.shape)}, got {tuple(y.shape)}")
    _check_rows(R, J, K)
    _check_table("gate", gate, (K,), S, s_first, C)
    if bias is not None:
        _check_table("bias", bias, (), S, s_first, C)
    return R, S, C


def _check_mod(mod: torch.Tensor, K: int, S: int, s_first: int, C: int) -> None:
    _check_table("mod", mod, (K,), S, s_first, C)
    if mod.ndim != 4 or mod.shape[2] != 2:
        raise InputError(f"mod must be (K, streams, 2, C) (shift, 1+scale), got {tuple(mod.shape)}")


def _output(out: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """`out`, or a new tensor shaped and typed like x; checked as a row grid."""
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device) if out is None else out
    _check_grid("out", out, 3)
    return out


def _stream_index(S: int, s_first: int, device: torch.device) -> torch.Tensor:
    return (torch.arange(S, device=device) + s_first).clamp(max=1)  # (S,) 0 skeleton, 1 text


# ---------------------------------------------------------------- LayerNorm + adaLN modulate
def ln_modulate(
    x: torch.Tensor,
    mod: torch.Tensor,
    J: int,
    K: int,
    *,
    s_first: int = 0,
    eps: float = LN_EPS,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """`LayerNorm(x)·mod[k, stream, 1] + mod[k, stream, 0]`, per token.

    Args:
        x: `(R, S, C)` activations (fp16 or fp32), rows (b, k, j).
        mod: `(K, streams, 2, C)`: (shift, 1 + scale) per class and stream (fp32 or fp16).
        J, K: the noise and class counts of the row grid.
        s_first: joint-sequence index of x's token 0 (0 for the joint buffer or the skeleton token).
        out: optional `(R, S, C)` destination; default a new contiguous tensor of x's dtype.
    Returns:
        `out`, LayerNorm in float32, rounded once to out's dtype.
    """
    _check_grid("x", x, 3)
    R, S, C = x.shape
    _check_rows(R, J, K)
    _check_mod(mod, K, S, s_first, C)
    out = _output(out, x)
    if resolve_backend(backend, x) == "torch":
        st = _stream_index(S, s_first, x.device)
        m = mod[:, st].float()  # (K, S, 2, C): small, per class and token, never per row
        h = F.layer_norm(x.float(), (C,), eps=eps).view(-1, K, J, S, C)  # (B, K, J, S, C)
        h = h * m[None, :, None, :, 1] + m[None, :, None, :, 0]
        out.copy_(h.view(R, S, C))
        return out
    meta = _blocks(C, R * S, full_row=True)
    _triton().ln_modulate_kernel[(triton_cdiv(R * S, meta["BLOCK_R"]),)](
        x,
        mod,
        out,
        R * S,
        S,
        C,
        s_first,
        J,
        K,
        x.stride(0),
        x.stride(1),
        out.stride(0),
        out.stride(1),
        mod.stride(0),
        mod.stride(1),
        mod.stride(2),
        eps,
        **meta,
    )
    return out


# ---------------------------------------------------------------- gated residual
def gated_residual_(
    x: torch.Tensor,
    y: torch.Tensor,
    gate: torch.Tensor,
    J: int,
    K: int,
    *,
    bias: torch.Tensor | None = None,
    s_first: int = 0,
    backend: str | None = None,
) -> torch.Tensor:
    """In place: `x += gate[k, stream] · (y + bias[stream])`.

    Args:
        x: `(R, S, C)` residual stream (modified); y: `(R, S, C)` the branch output without its bias.
        gate: `(K, streams, C)`; bias: `(streams, C)` or None.
    Returns:
        x.
    """
    R, S, C = _check_residual(x, y, gate, bias, J, K, s_first)
    if resolve_backend(backend, x) == "torch":
        st = _stream_index(S, s_first, x.device)
        yf = y.float() if bias is None else y.float() + bias[st].float()  # (R, S, C)
        g = gate[:, st].float()[None, :, None]  # (1, K, 1, S, C)
        x.copy_((x.float().view(-1, K, J, S, C) + g * yf.view(-1, K, J, S, C)).view(R, S, C))
        return x
    meta = _blocks(C, R * S, full_row=False)
    b = bias if bias is not None else gate  # any pointer; HAS_BIAS=False never reads it
    _triton().gated_residual_kernel[(triton_cdiv(R * S, meta["BLOCK_R"]), triton_cdiv(C, meta["BLOCK_C"]))](
        x,
        y,
        gate,
        b,
        R * S,
        S,
        C,
        s_first,
        J,
        K,
        x.stride(0),
        x.stride(1),
        y.stride(0),
        y.stride(1),
        gate.stride(0),
        gate.stride(1),
        b.stride(0) if bias is not None else 0,
        HAS_BIAS=bias is not None,
        **meta,
    )
    return x


# ---------------------------------------------------------------- gated residual, then LayerNorm + modulate
def residual_ln_modulate_(
    x: torch.Tensor,
    y: torch.Tensor,
    gate: torch.Tensor,
    mod: torch.Tensor,
    J: int,
    K: int,
    *,
    bias: torch.Tensor | None = None,
    s_first: int = 0,
    eps: float = LN_EPS,
    out: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """`gated_residual_` then `ln_modulate` in one pass over x (each residual add is followed by the
    next sub-layer's LayerNorm in a DiT block, so this is the scorer's residual kernel).

    Args:
        x: `(R, S, C)` residual stream (modified in place); y: `(R, S, C)` branch output without bias.
        gate: `(K, streams, C)`; mod: `(K, streams, 2, C)` (shift, 1+scale); bias: `(streams, C)` or None.
        out: optional `(R, S, C)` destination of the modulated LayerNorm; default a new tensor.
    Returns:
        `out` (x is updated; the LayerNorm reads it as stored, in x's dtype).
    """
    R, S, C = _check_residual(x, y, gate, bias, J, K, s_first)
    _check_mod(mod, K, S, s_first, C)
    out = _output(out, x)
    if resolve_backend(backend, x) == "torch":
        gated_residual_(x, y, gate, J, K, bias=bias, s_first=s_first, backend="torch")
        return ln_modulate(x, mod, J, K, s_first=s_first, eps=eps, out=out, backend="torch")
    meta = _blocks(C, R * S, full_row=True)
    b = bias if bias is not None else gate
    _triton().residual_ln_modulate_kernel[(triton_cdiv(R * S, meta["BLOCK_R"]),)](
        x,
        y,
        gate,
        b,
        mod,
        out,
        R * S,
        S,
        C,
        s_first,
        J,
        K,
        x.stride(0),
        x.stride(1),
        y.stride(0),
        y.stride(1),
        gate.stride(0),
        gate.stride(1),
        b.stride(0) if bias is not None else 0,
        out.stride(0),
        out.stride(1),
        mod.stride(0),
        mod.stride(1),
        mod.stride(2),
        eps,
        HAS_BIAS=bias is not None,
        **meta,
    )
    return out


# ---------------------------------------------------------------- bias + GELU
def bias_gelu_(u: torch.Tensor, bias: torch.Tensor, *, s_first: int = 0, backend: str | None = None) -> torch.Tensor:
    """In place: `u = GELU_tanh(u + bias[stream])` (the denoiser's MLP uses the tanh approximation).

    Args:
        u: `(R, S, C)` fc1 output without its bias; bias: `(streams, C)`.
    Returns:
        u.
    """
    _check_grid("u", u, 3)
    R, S, C = u.shape
    _check_table("bias", bias, (), S, s_first, C)
    if resolve_backend(backend, u) == "torch":
        st = _stream_index(S, s_first, u.device)
        u.copy_(F.gelu(u.float() + bias[st].float(), approximate="tanh"))
        return u
    meta = _blocks(C, R * S, full_row=False)
    _triton().bias_gelu_kernel[(triton_cdiv(R * S, meta["BLOCK_R"]), triton_cdiv(C, meta["BLOCK_C"]))](
        u, bias, R * S, S, C, s_first, u.stride(0), u.stride(1), bias.stride(0), **meta
    )
    return u


# ---------------------------------------------------------------- error reduction
def row_sq_error(
    y: torch.Tensor, bias: torch.Tensor, target: torch.Tensor, J: int, K: int, *, backend: str | None = None
) -> torch.Tensor:
    """Per-row `mean_c (y + bias − target[b, j])²` in float32.

    Args:
        y: `(R, C)` final-linear output without its bias (fp16 or fp32), rows (b, k, j).
        bias: `(C,)`; target: `(B, J, C)` float32, any strides (an expanded constant is fine).
    Returns:
        `(R,) float32`.
    """
    _check_grid("y", y, 2)
    R, C = y.shape
    _check_rows(R, J, K)
    B = R // (J * K)
    if tuple(target.shape) != (B, J, C) or target.stride(-1) != 1 or tuple(bias.shape) != (C,):
        raise InputError(
            f"target must be (B={B}, J={J}, C={C}) and bias ({C},), got {tuple(target.shape)}, {tuple(bias.shape)}"
        )
    if resolve_backend(backend, y) == "torch":
        pred = (y.float() + bias.float()).view(B, K, J, C)
        return (pred - target.float()[:, None]).pow(2).mean(dim=-1).view(R)
    out = torch.empty(R, dtype=torch.float32, device=y.device)
    meta = _blocks(C, R, full_row=True)
    _triton().row_sq_error_kernel[(triton_cdiv(R, meta["BLOCK_R"]),)](
        y, bias, target, out, R, C, J, K, y.stride(0), target.stride(0), target.stride(1), **meta
    )
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)
