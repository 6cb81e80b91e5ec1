"""Skeleton preprocessing in numpy: raw camera coordinates -> the Shift-GCN input `(C=3, T, V, M=2)`.

Numpy only: this module is shared with the lean runtime, so it must never import torch.

Conventions (the same for training data and for the robot-side runtime):
- A joint whose three coordinates are exactly 0 is *missing* (tracking lost); a body whose joints
  are all missing in a frame is absent in that frame; a frame where every body is absent is invalid.
- Bodies are padded with zeros / truncated to M = 2.
- The origin is the layout's centre joint (NTU: SpineMid) of the first body, at the first frame in
  which it is tracked. Every tracked joint of every body and frame is shifted by it; missing joints
  stay exactly 0.
- The valid frame range [first valid, last valid] is resampled to `frames` frames by linear
  interpolation in time. An output joint is missing (0) when a source frame it draws on with a
  non-zero weight has it missing, so a lost joint never blends with zeros.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .layout import NTU25, SkeletonLayout

NUM_BODIES = 2  # M kept by the Shift-GCN / CTR-GCN NTU pipelines


def preprocess(seq: np.ndarray, frames: int, layout: SkeletonLayout = NTU25, align_view: bool = False) -> np.ndarray:
    """Preprocess one raw sequence.

    Args:
        seq: `(M, T, V, 3)` or `(T, V, 3)` (one body) float camera coordinates; 0 marks missing.
        frames: output length T' (>= 1).
        layout: joint layout; V must match it.
        align_view: rotate about the vertical (y) axis so that HipLeft -> HipRight points along +x
            in the first frame where both hips are tracked.

    Returns:
        `(3, frames, V, 2)` float32, the Shift-GCN input layout (C, T, V, M).

    Raises:
        InputError: wrong ndim, joint count or coordinate size, non-finite values, or no valid frame.
    """
    a = np.asarray(seq)
    if a.ndim == 3:
        a = a[None]  # (1, T, V, 3)
    elif a.ndim != 4:
        raise InputError(
            f"preprocess expects a sequence shaped (M, T, V, 3) or (T, V, 3), got shape "
            f"{a.shape}. For a batch (N, M, T, V, 3) use preprocess_batch."
        )
    return preprocess_batch(a[None], frames, layout, align_view)[0]


def preprocess_batch(
    batch: np.ndarray, frames: int, layout: SkeletonLayout = NTU25, align_view: bool = False
) -> np.ndarray:
    """Vectorised `preprocess` over a batch; equals stacking `preprocess` of each sample.

    Args:
        batch: `(N, M, T, V, 3)` float camera coordinates (any M; padded/truncated to 2).
        frames, layout, align_view: as in `preprocess`.

    Returns:
        `(N, 3, frames, V, 2)` float32.
    """
    x = _validate(batch, frames, layout)  # (N, M=2, T, V, 3), float32 or float64
    N, M, T, V, _ = x.shape
    joint_ok = (x[..., 0] != 0) | (x[..., 1] != 0) | (x[..., 2] != 0)  # (N, M, T, V)
    frame_ok = np.any(joint_ok, axis=(1, 3))  # (N, T)
    empty = np.flatnonzero(~frame_ok.any(axis=1))
    if empty.size:
        raise InputError(
            f"sample(s) {empty[:10].tolist()} have no valid frame: every coordinate is 0. "
            "A skeleton sequence needs at least one frame with a tracked joint; drop "
            "empty recordings before preprocessing."
        )
    first = np.argmax(frame_ok, axis=1)  # (N,)
    last = T - 1 - np.argmax(frame_ok[:, ::-1], axis=1)  # (N,)

    # Linear resampling of [first, last] to `frames` points; exact hits have weight 0 on i1.
    # Centring and rotation are affine, so they are applied after interpolating (fewer big arrays).
    k = np.arange(frames, dtype=np.float64)  # (F,)
    span = (last - first).astype(np.float64)[:, None]  # (N, 1)
    s = first[:, None] + (k[None] * span / (frames - 1) if frames > 1 else 0.0 * span)  # (N, F)
    i0 = np.minimum(np.floor(s).astype(np.int64), last[:, None])  # (N, F)
    i1 = np.minimum(i0 + 1, last[:, None])  # (N, F)
    w = s - i0  # (N, F) in [0, 1)
    n = np.arange(N)[:, None]  # (N, 1)
    a = x[n, :, i0]  # (N, F, M, V, 3)
    out = x[n, :, i1]
    out -= a
    out *= w.astype(x.dtype)[:, :, None, None, None]
    out += a  # a + w (b - a): exactly a where w == 0
    out -= _origins(x, joint_ok, layout.center_joint).astype(x.dtype)[:, None, None, None, :]
    if align_view:
        out = _align_hips(out, _hip_angles(x, joint_ok, layout))
    ok = joint_ok[n, :, i0] & (joint_ok[n, :, i1] | (w == 0)[..., None, None])  # (N, F, M, V)
    np.copyto(out, 0.0, where=~ok[..., None])  # missing stays exactly 0, never blended
    return np.ascontiguousarray(out.transpose(0, 4, 1, 3, 2), dtype=np.float32)  # (N, 3, F, V, M)


def _validate(batch: np.ndarray, frames: int, layout: SkeletonLayout) -> np.ndarray:
    """Check shape/values and pad or truncate bodies to M = 2: `(N, 2, T, V, 3)` float32 or float64.

    float32/float64 input is used as is (no copy when M == 2); other real dtypes become float64.
    """
    a = np.asarray(batch)
    if a.ndim != 5 or a.shape[-1] != 3:
        raise InputError(
            f"expected a batch shaped (N, M, T, V, 3), got shape {a.shape}. Stack sequences "
            "of equal length T along a new first axis; use preprocess() for one sequence."
        )
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"skeleton coordinates must be real numbers, got dtype {a.dtype}.")
    N, M, T, V, _ = a.shape
    if V != layout.num_joints:
        raise InputError(
            f"the input has {V} joints but layout {layout.name!r} has {layout.num_joints}; "
            "pass the layout the data was recorded with, or reorder the joints to it."
        )
    if N == 0 or M == 0 or T == 0:
        raise InputError(f"empty input shape {a.shape}: N, M and T must all be at least 1.")
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 1:
        raise InputError(f"frames must be a positive int, got {frames!r}.")
    x = a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)
    if not np.isfinite(x).all():
        bad = np.unique(np.nonzero(~np.isfinite(x))[0])
        raise InputError(
            f"sample(s) {bad[:10].tolist()} contain NaN or infinite coordinates. Mark "
            "untracked joints with exact zeros instead."
        )
    if M >= NUM_BODIES:
        return x[:, :NUM_BODIES]
    pad = np.zeros((N, NUM_BODIES - M, T, V, 3), dtype=x.dtype)
    return np.concatenate([x, pad], axis=1)


def _first_true(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For mask `(N, M, T)`: (has any, flat m*T+t index of the first True in body-major order)."""
    flat = mask.reshape(mask.shape[0], -1)  # (N, M*T)
    return flat.any(axis=1), np.argmax(flat, axis=1)


def _origins(x: np.ndarray, joint_ok: np.ndarray, center: int) -> np.ndarray:
    """Per-sample origin `(N, 3)` float64: the centre joint of the first body at its first tracked frame.

    If the centre joint is never tracked, the mean of the tracked joints of the first valid
    body-frame is used instead.
    """
    N, M, T, V, _ = x.shape
    n = np.arange(N)
    has_c, idx_c = _first_true(joint_ok[:, :, :, center])
    origin = x[n, idx_c // T, idx_c % T, center].astype(np.float64)  # (N, 3)
    if not has_c.all():
        _, idx_b = _first_true(joint_ok.any(axis=-1))
        jm = joint_ok[n, idx_b // T, idx_b % T]  # (N, V)
        pts = x[n, idx_b // T, idx_b % T].astype(np.float64)  # (N, V, 3)
        mean = (pts * jm[..., None]).sum(1) / np.maximum(jm.sum(1), 1)[:, None]
        origin = np.where(has_c[:, None], origin, mean)
    return origin


def _hip_angles(x: np.ndarray, joint_ok: np.ndarray, layout: SkeletonLayout) -> np.ndarray:
    """Per-sample angle `(N,)` of HipLeft -> HipRight in the x-z plane, at the first frame with both hips."""
    N, M, T, V, _ = x.shape
    hl, hr = layout.index("HipLeft"), layout.index("HipRight")
    has, idx = _first_true(joint_ok[..., hl] & joint_ok[..., hr])
    n = np.arange(N)
    v = x[n, idx // T, idx % T, hr].astype(np.float64) - x[n, idx // T, idx % T, hl]  # (N, 3)
    return np.where(has, np.arctan2(v[:, 2], v[:, 0]), 0.0)


def _align_hips(out: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Rotate centred coordinates `(N, F, M, V, 3)` about y by -ang, so the hip line lies along +x."""
    c = np.cos(ang).astype(out.dtype)[:, None, None, None]  # (N, 1, 1, 1)
    s = np.sin(ang).astype(out.dtype)[:, None, None, None]
    rx = c * out[..., 0] + s * out[..., 2]  # (N, F, M, V)
    rz = -s * out[..., 0] + c * out[..., 2]
    out[..., 0], out[..., 2] = rx, rz
    return out
