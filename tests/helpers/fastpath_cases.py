"""Seeded inputs for the fast-path kernels, shared by tests/fastpath and the Triton-interpreter worker
(which runs in a subprocess with TRITON_INTERPRET=1 and must build the very same tensors)."""

from __future__ import annotations

import torch

B, K, J, L, D = 2, 3, 2, 4, 40  # D not a power of two: the kernels' column masks matter
R, S = B * K * J, 1 + L


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def fresh(base: torch.Tensor, skeleton: bool = False):
    """For in-place kernels: a maker of fresh copies (the strided skeleton view `[:, :1]` when asked)."""
    return lambda: base.clone()[:, :1] if skeleton else base.clone()


def kernel_cases(device: str = "cpu") -> dict[str, dict]:
    """name → dict(kernel=..., args=(...), kwargs={...}); every tensor built from a fixed seed (an
    in-place kernel's first arg is a maker: call it for a fresh input).

    Covers fp16 and fp32 activations, the joint buffer, strided skeleton / text views (s_first),
    a stream dim of 1 (final layer), bias / no bias, and a width above one column block (1100).
    """
    g = _g(0)
    r = lambda *shape, dt=torch.float32, s=1.0: (s * torch.randn(*shape, generator=g)).to(device, dt)  # noqa: E731
    joint16, joint32 = r(R, S, D, dt=torch.float16, s=2.0) + 0.5, r(R, S, D, s=2.0) - 0.3
    return {
        "ln_joint_fp16": dict(kernel="ln_modulate", args=(joint16, r(K, 2, 2, D), J, K), kwargs={}),
        "ln_joint_fp32": dict(kernel="ln_modulate", args=(joint32, r(K, 2, 2, D), J, K), kwargs={}),
        "ln_skeleton_view": dict(kernel="ln_modulate", args=(joint16[:, :1], r(K, 1, 2, D), J, K), kwargs={}),
        "ln_text_view": dict(kernel="ln_modulate", args=(joint32[:, 1:], r(K, 2, 2, D), J, K), kwargs=dict(s_first=1)),
        "res_joint_fp16": dict(
            kernel="gated_residual_",
            args=(fresh(joint16), r(R, S, D, dt=torch.float16), r(K, 2, D), J, K),
            kwargs=dict(bias=r(2, D)),
        ),
        "res_joint_fp32_nobias": dict(
            kernel="gated_residual_", args=(fresh(joint32), r(R, S, D), r(K, 2, D), J, K), kwargs={}
        ),
        "res_skeleton_view": dict(
            kernel="gated_residual_",
            args=(fresh(joint16, skeleton=True), r(R, 1, D, dt=torch.float16), r(K, 2, D), J, K),
            kwargs=dict(bias=r(1, D)),
        ),
        "resln_joint_fp16": dict(
            kernel="residual_ln_modulate_",
            args=(fresh(joint16), r(R, S, D, dt=torch.float16), r(K, 2, D), r(K, 2, 2, D), J, K),
            kwargs=dict(bias=r(2, D)),
        ),
        "resln_skeleton_view_fp32": dict(
            kernel="residual_ln_modulate_",
            args=(fresh(joint32, skeleton=True), r(R, 1, D), r(K, 2, D), r(K, 1, 2, D), J, K),
            kwargs={},
        ),
        "gelu_joint_fp16": dict(
            kernel="bias_gelu_", args=(fresh(r(R, S, 4 * D, dt=torch.float16, s=3.0)), r(2, 4 * D)), kwargs={}
        ),
        "gelu_wide_fp32": dict(kernel="bias_gelu_", args=(fresh(r(R, 2, 1100, s=4.0)), r(2, 1100)), kwargs={}),
        "err_eps_fp16": dict(
            kernel="row_sq_error",
            args=(r(R, 24, dt=torch.float16), r(24), r(J, 24)[None].expand(B, J, 24), J, K),
            kwargs={},
        ),
        "err_per_bj_fp32": dict(kernel="row_sq_error", args=(r(R, 24), r(24), r(B, J, 24), J, K), kwargs={}),
    }


def run_case(case: dict, backend: str) -> torch.Tensor:
    """Run one case (in-place kernels on a fresh copy of their input); returns the kernel's output, or
    for an in-place kernel on a view the whole buffer under it (so writes outside the view show);
    for residual_ln_modulate_ the updated buffer and the LayerNorm output, flattened and concatenated."""
    from tdsm_edge.fastpath import kernels

    args = [a() if callable(a) else a for a in case["args"]]
    x = args[0]
    out = getattr(kernels, case["kernel"])(*args, **case["kwargs"], backend=backend)
    full = x if x._base is None else x._base
    if case["kernel"] == "residual_ln_modulate_":
        return torch.cat((full.flatten(), out.flatten()))
    return (full if case["kernel"].endswith("_") else out).clone()


# the FastScorer cases the interpreter worker runs: name → (depth, masked, prediction, precision)
SCORER_CASES = {  # (depth, masked, prediction, precision, attention)
    "d2_masked_fp16": (2, True, "epsilon", "fp16", "joint"),
    "d2_masked_fp32": (2, True, "epsilon", "fp32", "joint"),
    "d1_unmasked_fp16": (1, False, "epsilon", "fp16", "joint"),
    "d3_v_fp16": (3, True, "v_prediction", "fp16", "joint"),
    "decoupled_d2_masked_fp32": (2, True, "epsilon", "fp32", "decoupled"),
    "decoupled_d3_masked_fp16": (3, True, "epsilon", "fp16", "decoupled"),
}


def scorer_case(name: str, backend: str | None, B: int = 5, K: int = 4):
    """`(FastScorer scores (B, K), FoldedScorer fp32 scores (B, K))` for one SCORER_CASES entry."""
    from helpers.tiny_denoiser import T_SCORE, TINY, class_text, feature_stats, features, randomized_model
    from tdsm_edge.config import ScheduleConfig
    from tdsm_edge.fastpath.scorer import FastScorer
    from tdsm_edge.models.class_tables import class_tables
    from tdsm_edge.models.folded import FoldedScorer
    from tdsm_edge.models.schedule import DDPMSchedule
    from tdsm_edge.scoring import noise_bank

    depth, masked, prediction, precision, attention = SCORER_CASES[name]
    model = randomized_model(depth=depth, attention=attention)
    schedule = DDPMSchedule(ScheduleConfig(prediction=prediction))
    folded = FoldedScorer(model, schedule, noise_bank(3, TINY.z_dim, 0), T_SCORE, feature_stats()).eval()
    tables = class_tables(model, *class_text(K, masked=masked), t=T_SCORE)
    z = features(B)
    with torch.no_grad():
        ref = folded(z, **tables)
    return FastScorer(folded, precision, backend=backend)(z, tables), ref
