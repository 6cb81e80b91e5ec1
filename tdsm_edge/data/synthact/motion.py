"""Building blocks of the synthact motions: random parameter tables, timing curves and the pose.

Time is normalised: `u` runs from 0 to 1 over the clip whatever the number of frames, so the same
seed gives the same motion sampled more or less densely. An action occupies the window
[u0, u0 + dur]; its phase `p` runs 0 -> 1 inside the window and is clamped outside it.

The pose is a dict of joint-angle trajectories in radians (and root offsets in metres):
limb DOFs are `(2, n, T)` arrays, index 0 = the subject's LEFT limb, 1 = RIGHT; the rest are
`(n, T)`. Angle conventions (positive direction), all in the body's own frame:
- arm_flex: arm raised forward (0 = hanging down, 90 deg = pointing forward, 180 = overhead)
- arm_abd: arm raised sideways, away from the body
- arm_hor: arm swung horizontally toward the body midline (about the vertical axis)
- arm_twist: upper arm rotated about its own axis, turning the elbow's bending plane outward
- elbow: forearm bent forward/up; knee: shank bent backward
- hip_flex: thigh raised forward; hip_abd: thigh moved sideways away from the body
- spine_pitch / neck_pitch: bent forward; spine_roll / neck_roll: leaning to the subject's right;
  spine_yaw / neck_yaw / root_yaw: turning to face the subject's right
- root_x: shift toward the subject's right, root_z: forward, lift: extra height (jumps), metres.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

DEG = np.pi / 180.0
LIMB_DOFS = ("arm_flex", "arm_abd", "arm_hor", "arm_twist", "elbow", "hip_flex", "hip_abd", "knee")
BODY_DOFS = (
    "spine_pitch",
    "spine_roll",
    "spine_yaw",
    "neck_pitch",
    "neck_roll",
    "neck_yaw",
    "root_yaw",
    "root_x",
    "root_z",
    "lift",
)
Pose = dict  # name -> float64 array, (2, n, T) for LIMB_DOFS, (n, T) for BODY_DOFS


class Draws:
    """A table of uniform random numbers handed out one column at a time.

    All values of one sample come from its own row of a single `rng.random((n, width))` call, so
    a sample's parameters depend only on its row index, not on how many samples were drawn.
    """

    def __init__(self, rng: np.random.Generator, n: int, width: int) -> None:
        self._table = rng.random((n, width))  # (n, width) float64 in [0, 1)
        self._col = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        """Next column scaled to [lo, hi): `(n, 1)` float64."""
        assert self._col < self._table.shape[1], "Draws table exhausted; increase its width"
        col = self._table[:, self._col]
        self._col += 1
        return (lo + (hi - lo) * col)[:, None]  # (n, 1)

    def block(self, k: int, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        """Next k columns scaled to [lo, hi): `(n, k)` float64."""
        assert self._col + k <= self._table.shape[1], "Draws table exhausted; increase its width"
        cols = self._table[:, self._col : self._col + k]
        self._col += k
        return lo + (hi - lo) * cols  # (n, k)

    def take(self, rows: np.ndarray) -> Draws:
        """The same table restricted to some rows (samples), continuing at the current column."""
        sub = Draws.__new__(Draws)
        sub._table, sub._col = self._table[rows], self._col
        return sub

    def integer(self, lo: int, hi: int) -> np.ndarray:
        """Next column as integers in [lo, hi] inclusive: `(n, 1)` int64."""
        return np.minimum(np.floor(self.u(lo, hi + 1)).astype(np.int64), hi)

    def bern(self, p: float) -> np.ndarray:
        """Next column as booleans, True with probability p: `(n, 1)` bool."""
        return self.u() < p

    def sign(self) -> np.ndarray:
        """Next column as random signs +-1: `(n, 1)` float64."""
        return np.where(self.u() < 0.5, -1.0, 1.0)


def new_pose(n: int, T: int) -> Pose:
    """A zero pose: every DOF at rest (arms hanging, standing straight) for n samples, T frames."""
    pose = {k: np.zeros((2, n, T)) for k in LIMB_DOFS}
    pose.update({k: np.zeros((n, T)) for k in BODY_DOFS})
    return pose


def concat_poses(poses: list[Pose]) -> Pose:
    """Concatenate poses along the sample axis."""
    return {k: np.concatenate([p[k] for p in poses], axis=-2) for k in poses[0]}


def phase(u: np.ndarray, u0: np.ndarray, dur: np.ndarray) -> np.ndarray:
    """Action phase in [0, 1]: `(n, T)` from clip time u `(T,)`, start u0 and duration dur `(n, 1)`."""
    return np.clip((u[None, :] - u0) / dur, 0.0, 1.0)


def ease(x: np.ndarray) -> np.ndarray:
    """Raised-cosine ramp 0 -> 1 on [0, 1] (clamped), zero slope at both ends."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def envelope(p: np.ndarray, ramp: np.ndarray) -> np.ndarray:
    """Attack-hold-release envelope `(n, T)`: 0 outside the action, 1 in its middle.

    p: phase `(n, T)`; ramp: fraction of the action spent ramping up (and again down), `(n, 1)`.
    """
    return ease(p / ramp) * ease((1.0 - p) / ramp)


def pulses(p: np.ndarray, k: np.ndarray | float) -> np.ndarray:
    """k smooth bumps 0 -> 1 -> 0 over the phase: `(n, T)`."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k * p)


def osc(p: np.ndarray, cycles: np.ndarray | float, offset: np.ndarray | float = 0.0) -> np.ndarray:
    """Sinusoid with `cycles` periods over the phase: `(n, T)`."""
    return np.sin(2.0 * np.pi * cycles * p + offset)


def bump(p: np.ndarray, a: float, b: float) -> np.ndarray:
    """One bump 0 -> 1 -> 0 while the phase goes from a to b, 0 elsewhere: `(n, T)`."""
    return pulses(np.clip((p - a) / (b - a), 0.0, 1.0), 1.0)


@lru_cache(maxsize=64)
def _spline_basis(T: int, knots: int) -> np.ndarray:
    """Cubic B-spline basis `(knots, T)` on uniform knots spanning the clip, unit power at every t."""
    u = np.linspace(0.0, 1.0, T)
    x = u * (knots - 3) + 1.5  # knot coordinates; basis k is centred at k
    dist = np.abs(x[None, :] - np.arange(knots)[:, None])  # (knots, T)
    B = np.where(dist < 1, 2 / 3 - dist**2 + dist**3 / 2, np.where(dist < 2, (2 - dist) ** 3 / 6, 0.0))
    return B / np.sqrt((B**2).sum(axis=0, keepdims=True))


def smooth_noise(d: Draws, u: np.ndarray, channels: int = 1, knots: int = 5) -> np.ndarray:
    """Smooth random curves `(channels, n, T)` with unit variance at every frame.

    A cubic B-spline through `knots` random control values (uniform, unit variance) spread over the
    clip; more knots = faster wiggles (about (knots - 3) / 2 cycles per clip at most).
    """
    coef = d.block(channels * knots, -np.sqrt(3.0), np.sqrt(3.0))  # (n, channels * knots)
    n = coef.shape[0]
    out = coef.reshape(n * channels, knots) @ _spline_basis(u.shape[0], knots)  # (n * channels, T)
    return out.reshape(n, channels, -1).transpose(1, 0, 2)  # (channels, n, T)


def side_index(side: str) -> list[int]:
    """Limb indices of a side: left -> [0], right -> [1], both -> [0, 1]."""
    return {"left": [0], "right": [1], "both": [0, 1]}[side]


def side_sign(side: str) -> float:
    """Direction sign for torso/head/root DOFs: right -> +1, left -> -1."""
    return {"left": -1.0, "right": 1.0}[side]


def other_side(side: str) -> str:
    """The opposite limb side."""
    return {"left": "right", "right": "left"}[side]
