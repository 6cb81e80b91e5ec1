"""Pose-level nuisance: personal posture, slow stylistic drift, idle motion, overlapping motions.

Each function adds to a pose in place (see `motion.py` for the DOF conventions), with magnitudes
taken from a `Nuisance`; all randomness comes from one `Draws` table, so a sample's variation
depends only on its own row.
"""

from __future__ import annotations

import numpy as np

from .motion import DEG, LIMB_DOFS, Draws, Pose, bump, phase, smooth_noise
from .nuisance import Nuisance

# (DOF, rest offset range in degrees at style_deg = 7) of a subject's habitual posture
_POSTURE = (
    ("arm_abd", 3, 15),
    ("elbow", 5, 25),
    ("arm_flex", -5, 10),
    ("knee", 0, 8),
    ("hip_abd", 0, 6),
    ("hip_flex", -3, 5),
)
_POSTURE_BODY = (("spine_pitch", -4, 6), ("neck_pitch", -8, 10), ("spine_roll", -3, 3))
_DRIFT_BODY = ("spine_pitch", "spine_roll", "spine_yaw", "neck_pitch", "neck_yaw")
NUM_SECONDARY = 6


def add_style(pose: Pose, d: Draws, u: np.ndarray, nu: Nuisance) -> None:
    """Per-subject posture offsets (per limb) and a slow random drift of every joint angle."""
    k = nu.style_deg / 7.0
    for key, lo, hi in _POSTURE:
        for s in (0, 1):
            pose[key][s] += k * d.u(lo, hi) * DEG
    for key, lo, hi in _POSTURE_BODY:
        pose[key] += k * d.u(lo, hi) * DEG
    drift = 0.4 * nu.style_deg * DEG
    limb = smooth_noise(d, u, channels=2 * len(LIMB_DOFS), knots=5)  # (16, n, T)
    for i, key in enumerate(LIMB_DOFS):
        pose[key] += drift * limb[2 * i : 2 * i + 2]
    body = smooth_noise(d, u, channels=len(_DRIFT_BODY), knots=5)  # (5, n, T)
    for i, key in enumerate(_DRIFT_BODY):
        pose[key] += 0.5 * drift * body[i]


def add_idle(pose: Pose, d: Draws, u: np.ndarray, nu: Nuisance) -> None:
    """Breathing (chest pitch), postural sway of the root, fidgeting of hands and head."""
    k = nu.idle
    pose["spine_pitch"] += k * 1.2 * DEG * np.sin(2 * np.pi * d.u(0.6, 1.4) * u[None] + d.u(0, 2 * np.pi))
    sway = smooth_noise(d, u, channels=2, knots=4)  # (2, n, T)
    pose["root_x"] += k * 0.012 * sway[0]
    pose["root_z"] += k * 0.010 * sway[1]
    fidget = smooth_noise(d, u, channels=5, knots=8)  # (5, n, T)
    pose["neck_yaw"] += k * 4.0 * DEG * fidget[0]
    pose["elbow"] += k * 3.0 * DEG * fidget[1:3]
    pose["arm_flex"] += k * 2.0 * DEG * fidget[3:5]


def add_secondary(pose: Pose, d: Draws, u: np.ndarray, nu: Nuisance) -> None:
    """With probability p_secondary, one small motion of another part overlapping the action.

    Candidates: partial raise of the left / right arm, a glance to one side, a sideways lean, a
    weight shift with a knee bend, both elbows bent. Size: secondary_amp x a nominal primitive.
    """
    n, T = pose["spine_pitch"].shape
    on = d.bern(nu.p_secondary)  # (n, 1)
    which = d.integer(0, NUM_SECONDARY - 1)  # (n, 1)
    dur = d.u(0.2, 0.5)
    b = bump(phase(u, d.u(0.0, 1.0) * (1.0 - dur), dur), 0.0, 1.0) * nu.secondary_amp  # (n, T)
    sign = d.sign()
    w = [(on & (which == i)) * b for i in range(NUM_SECONDARY)]  # (n, T) each
    pose["arm_flex"][0] += 90 * DEG * w[0]
    pose["arm_flex"][1] += 90 * DEG * w[1]
    pose["neck_yaw"] += sign * 60 * DEG * w[2]
    pose["spine_roll"] += sign * 25 * DEG * w[3]
    pose["root_x"] += sign * 0.08 * w[4]
    pose["knee"][(sign[:, 0] > 0).astype(int), np.arange(n)] += 40 * DEG * w[4]
    pose["elbow"] += 100 * DEG * w[5]
