"""The fused kernels' torch implementations against an independent float64 reference that expands
every per-class table to rows (the thing the kernels exist to avoid). The Triton implementations are
compared with these in test_triton_interpret.py (CPU, interpreter) and test_gpu.py (CUDA)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers.fastpath_cases import kernel_cases, run_case
from tdsm_edge.errors import InputError
from tdsm_edge.fastpath import kernels

CASES = kernel_cases()


def _rows(R, S, J, K, s_first=0):
    """Per-row class index (R,) and per-token stream index (S,)."""
    return (torch.arange(R) // J) % K, (torch.arange(S) + s_first).clamp(max=1)


def _ln_mod(x, mod, J, K, s_first=0):
    R, S, C = x.shape
    k, st = _rows(R, S, J, K, s_first)
    tab = mod.double()[k][:, st]  # (R, S, 2, C)
    xd = x.double()
    xh = (xd - xd.mean(-1, keepdim=True)) / torch.sqrt(xd.var(-1, unbiased=False, keepdim=True) + 1e-6)
    return xh * tab[..., 1, :] + tab[..., 0, :]


def reference(case) -> torch.Tensor:
    """float64, tables gathered to every (row, token); in-place kernels → the whole buffer under the view."""
    args = [a() if callable(a) else a for a in case["args"]]
    kw, name = case["kwargs"], case["kernel"]
    if name == "ln_modulate":
        x, mod, J, K = args
        return _ln_mod(x, mod, J, K, kw.get("s_first", 0))
    if name == "residual_ln_modulate_":
        x, y, gate, mod, J, K = args
        full = reference(dict(kernel="gated_residual_", args=(x, y, gate, J, K), kwargs=kw))
        # the LayerNorm reads x as stored: rounded to its dtype
        view = full.to(x.dtype) if x._base is None else full.to(x.dtype)[:, : x.shape[1]]
        return torch.cat((full.flatten(), _ln_mod(view, mod, J, K).flatten()))
    if name == "gated_residual_":
        x, y, gate, J, K = args
        R, S, C = x.shape
        k, st = _rows(R, S, J, K)
        bias = kw.get("bias")
        yd = y.double() + (0 if bias is None else bias.double()[st])
        full = (x if x._base is None else x._base).double().clone()
        view = full if x._base is None else full[:, :S]
        view += gate.double()[k][:, st] * yd
        return full
    if name == "bias_gelu_":
        u, bias = args
        st = _rows(1, u.shape[1], 1, 1)[1]
        return F.gelu(u.double() + bias.double()[st], approximate="tanh")
    y, bias, target, J, K = args
    R, C = y.shape
    b, j = torch.arange(R) // (K * J), torch.arange(R) % J
    return ((y.double() + bias.double()) - target.double()[b, j]).pow(2).mean(-1)


def tolerance(out: torch.Tensor) -> dict:
    # fp16 outputs are rounded once from float32: within ~1 fp16 ulp (2^-10 relative)
    return dict(rtol=2e-3, atol=2e-3) if out.dtype == torch.float16 else dict(rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_torch_kernel_matches_float64_reference(name):
    out = run_case(CASES[name], "torch")
    ref = reference(CASES[name])
    assert out.shape == ref.shape
    first = CASES[name]["args"][0]
    first = first() if callable(first) else first
    assert out.dtype == (torch.float32 if CASES[name]["kernel"] == "row_sq_error" else first.dtype)
    torch.testing.assert_close(out.double(), ref, **tolerance(out))


def test_view_kernels_leave_the_other_tokens_alone():
    """gated_residual_ on the skeleton view x[:, :1] writes token 0 only."""
    case = CASES["res_skeleton_view"]
    before = case["args"][0]()._base
    after = run_case(case, "torch")
    assert torch.equal(after[:, 1:], before[:, 1:])
    assert not torch.equal(after[:, :1], before[:, :1])


def test_tables_select_by_class_and_stream():
    """Guards the index maths: a table that differs only by class / stream must change exactly those rows."""
    J, K, R, S, C = 2, 3, 12, 3, 8
    x = torch.randn(R, S, C)
    mod = torch.zeros(K, 2, 2, C)
    mod[:, :, 1] = 1.0
    mod[2, 1, 0] = 5.0  # shift only class 2, text stream
    h = kernels.ln_modulate(x, mod, J, K, backend="torch")
    base = F.layer_norm(x, (C,), eps=1e-6)
    k = (torch.arange(R) // J) % K
    shifted = torch.zeros(R, S, dtype=torch.bool)
    shifted[k == 2, 1:] = True
    torch.testing.assert_close(h[shifted], base[shifted] + 5.0)
    torch.testing.assert_close(h[~shifted], base[~shifted])


def test_inputs_are_validated(monkeypatch):
    x = torch.randn(12, 3, 8)
    with pytest.raises(InputError, match="grid"):
        kernels.ln_modulate(x, torch.zeros(3, 2, 2, 8), 5, 3)  # 12 rows are not a (B, K=3, J=5) grid
    with pytest.raises(InputError, match="mod must be"):
        kernels.ln_modulate(x, torch.zeros(3, 1, 2, 8), 2, 3)  # 3 tokens need both streams
    with pytest.raises(InputError, match="contiguous last dim"):
        kernels.ln_modulate(x.transpose(1, 2), torch.zeros(3, 2, 2, 3), 2, 3)
    with pytest.raises(InputError, match="target must be"):
        kernels.row_sq_error(torch.randn(12, 8), torch.zeros(8), torch.zeros(2, 3, 8), 2, 3)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(InputError, match="TRITON_INTERPRET"):
        kernels.ln_modulate(x, torch.zeros(3, 2, 2, 8), 2, 3, backend="triton")
    with pytest.raises(InputError, match="not supported"):
        kernels.bias_gelu_(x, torch.zeros(2, 8), backend="cuda")


def test_auto_backend_is_torch_on_cpu():
    assert kernels.resolve_backend(None, torch.zeros(1)) == "torch"
