"""The knobs of synthact's nuisance variation, and the camera/sensor effects they drive.

`Nuisance` is the single place where the difficulty of the dataset is set: subject variety, tempo,
amplitude, viewpoint, stylistic and idle motion, overlapping secondary motions, and the sensor's
faults (jitter, lost joints, lost frames, occluded limbs, an extra person in view).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ...errors import ConfigError
from .motion import Draws

# Joint groups lost together when a limb is occluded (NTU 0-based indices).
OCCLUSION_GROUPS = (
    (4, 5, 6, 7, 21, 22),  # left arm
    (8, 9, 10, 11, 23, 24),  # right arm
    (12, 13, 14, 15),  # left leg
    (16, 17, 18, 19),  # right leg
    (7, 11, 21, 22, 23, 24),  # both hands
    (14, 15, 18, 19),  # both feet
)
# Per-joint jitter multiplier: Kinect hands and feet are noisier than the trunk.
_JITTER_SCALE = np.ones(25)
_JITTER_SCALE[[7, 11, 21, 22, 23, 24]] = 2.0
_JITTER_SCALE[[6, 10, 15, 19]] = 1.5


@dataclass(frozen=True)
class Nuisance:
    """Amount of nuisance variation in synthact (the default targets a learnable, not trivial task).

    To make the task harder, raise jitter_m, style_deg, idle, p_secondary / secondary_amp,
    p_occlusion and yaw_deg, or widen amplitude_range; `scaled(k)` does all of that at once.
    """

    height_range: tuple[float, float] = (1.50, 1.95)  # subject height, metres
    proportion: float = 0.07  # +- relative jitter of arm / leg / torso / width lengths
    duration_range: tuple[float, float] = (0.45, 0.85)  # action length, fraction of the clip (tempo)
    start_jitter: float = 1.0  # 1: start anywhere that fits; 0: action centred in the clip
    amplitude_range: tuple[float, float] = (0.75, 1.15)  # factor on the primitive's amplitude
    yaw_deg: float = 45.0  # body orientation uniform in +-yaw_deg about the vertical
    lateral_m: float = 0.5  # position uniform in +-lateral_m across the view
    depth_range: tuple[float, float] = (2.5, 3.5)  # distance from the camera, metres
    floor_range: tuple[float, float] = (-1.05, -0.75)  # floor height in camera coordinates (sensor height)
    jitter_m: float = 0.006  # std of per-joint, per-frame sensor noise (hands x2, feet x1.5)
    style_deg: float = 7.0  # per-subject posture offsets and slow drift, degrees
    idle: float = 1.0  # scale of breathing, sway and fidgeting
    p_secondary: float = 0.35  # probability of a small overlapping motion of another part
    secondary_amp: float = 0.35  # its size relative to a full primitive
    p_missing: float = 0.5  # probability that 1-3 joints are lost (exact zeros) ...
    missing_frac: float = 0.08  # ... for up to this fraction of the clip
    p_dropout: float = 0.1  # probability that the whole body is lost for 1-3 frames
    p_occlusion: float = 0.15  # probability that a joint group is lost for a stretch ...
    occlusion_frac: tuple[float, float] = (0.1, 0.3)  # ... of this fraction of the clip
    p_second_body: float = 0.2  # probability of a second, idle person in view

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            if f.name.startswith("p_") and not 0.0 <= v <= 1.0:
                raise ConfigError(f"Nuisance.{f.name}={v} is not a probability; use a value in [0, 1].")
            if isinstance(v, tuple) and (len(v) != 2 or v[0] > v[1]):
                raise ConfigError(f"Nuisance.{f.name}={v} must be a (low, high) pair with low <= high.")
            if f.name not in ("floor_range",) and any(x < 0 for x in vals):
                raise ConfigError(f"Nuisance.{f.name}={v} must not be negative.")
        if not (0 < self.duration_range[0] <= self.duration_range[1] <= 1.0):
            raise ConfigError(
                f"Nuisance.duration_range={self.duration_range} must lie in (0, 1]: it is a fraction of the clip."
            )

    @classmethod
    def clean(cls) -> Nuisance:
        """No nuisance: a nominal subject facing the camera, centred action, no noise or faults."""
        return cls(
            height_range=(1.75, 1.75),
            proportion=0.0,
            duration_range=(0.7, 0.7),
            start_jitter=0.0,
            amplitude_range=(1.0, 1.0),
            yaw_deg=0.0,
            lateral_m=0.0,
            depth_range=(3.0, 3.0),
            floor_range=(-0.9, -0.9),
            jitter_m=0.0,
            style_deg=0.0,
            idle=0.0,
            p_secondary=0.0,
            secondary_amp=0.0,
            p_missing=0.0,
            p_dropout=0.0,
            p_occlusion=0.0,
            p_second_body=0.0,
        )

    def scaled(self, k: float) -> Nuisance:
        """A copy with every noise magnitude and fault probability multiplied by k (k=0: none)."""
        lo, hi = self.amplitude_range
        mid = 0.5 * (lo + hi)
        return replace(
            self,
            proportion=self.proportion * k,
            yaw_deg=min(180.0, self.yaw_deg * k),
            amplitude_range=(max(0.1, mid - (mid - lo) * k), mid + (hi - mid) * k),
            jitter_m=self.jitter_m * k,
            style_deg=self.style_deg * k,
            idle=self.idle * k,
            secondary_amp=self.secondary_amp * k,
            **{f.name: min(1.0, getattr(self, f.name) * k) for f in fields(self) if f.name.startswith("p_")},
        )


def place(X: np.ndarray, yaw: np.ndarray, x0: np.ndarray, depth: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Body-frame joints -> Kinect camera coordinates.

    X: `(n, T, V, 3)` (right, up, forward) metres, floor at 0, facing the camera at yaw 0.
    yaw, x0, depth, floor: `(n, 1)` orientation (rad, + = turned to its right), lateral position,
    distance and floor height. Returns `(n, T, V, 3)`: x toward the subject's right when it faces
    the camera (the camera's left), y up, z away from the camera.
    """
    c, s = np.cos(yaw)[..., None], np.sin(yaw)[..., None]  # (n, 1, 1)
    r, u, f = X[..., 0], X[..., 1], X[..., 2]
    return np.stack([c * r + s * f + x0[..., None], u + floor[..., None], depth[..., None] - (c * f - s * r)], axis=-1)


def _stretch(d: Draws, T: int, frac_lo: float, frac_hi: float) -> np.ndarray:
    """Random frame windows `(n, T)` bool, each lasting frac_lo..frac_hi of the clip (>= 1 frame)."""
    length = np.maximum(1, np.round(d.u(frac_lo, frac_hi) * T)).astype(np.int64)  # (n, 1)
    start = np.floor(d.u() * np.maximum(T - length + 1, 1)).astype(np.int64)  # (n, 1)
    t = np.arange(T)[None, :]
    return (t >= start) & (t < start + length)


def sensor_faults(d: Draws, n: int, T: int, nu: Nuisance) -> np.ndarray:
    """Lost-joint mask `(n, T, V=25)` bool for body 0: lost joints, lost frames, occluded groups."""
    lost = np.zeros((n, T, 25), dtype=bool)
    # a few single joints lost for a few frames
    event = d.bern(nu.p_missing)  # (n, 1)
    window = _stretch(d, T, 0.0, nu.missing_frac) & event  # (n, T)
    count = d.integer(1, 3)
    for k in range(3):
        joint = d.integer(0, 24)[:, 0]  # (n,)
        hit = window & (count > k)  # (n, T)
        lost[np.arange(n)[:, None], np.arange(T)[None, :], joint[:, None]] |= hit
    # the whole body lost for 1-3 frames
    drop = _stretch(d, T, 1.0 / T, 3.0 / T) & d.bern(nu.p_dropout)
    lost |= drop[..., None]
    # a limb group occluded for a stretch
    group = d.integer(0, len(OCCLUSION_GROUPS) - 1)[:, 0]  # (n,)
    occl = _stretch(d, T, *nu.occlusion_frac) & d.bern(nu.p_occlusion)  # (n, T)
    gmask = np.zeros((len(OCCLUSION_GROUPS), 25), dtype=bool)
    for g, joints in enumerate(OCCLUSION_GROUPS):
        gmask[g, list(joints)] = True
    lost |= occl[..., None] & gmask[group][:, None, :]
    return lost


def add_jitter(X: np.ndarray, noise: np.ndarray, jitter_m: float) -> np.ndarray:
    """X `(n, T, V, 3)` plus sensor noise: standard normals `noise` (same shape) x jitter_m x joint scale."""
    return X + jitter_m * _JITTER_SCALE[:, None] * noise
