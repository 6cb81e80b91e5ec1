"""Subject skeletons and forward kinematics for the NTU 25-joint layout.

Positions are computed in the body frame (axes: 0 = the subject's right, 1 = up, 2 = forward,
metres, floor at height 0) from the joint angles of a pose (see `motion.py`), by chaining rotation
matrices from the pelvis outward; every bone therefore keeps its length in every frame. Left limbs
are computed as mirrored right limbs (lateral axis negated).
"""
from __future__ import annotations

import numpy as np

from .motion import Draws, Pose

RIGHT, UP, FWD = np.eye(3)
DOWN = -UP
REFERENCE_HEIGHT = 1.75  # metres; the bone lengths below are for a subject of this height

# Bone lengths / offsets (metres) of the reference subject, Kinect-v2-like proportions.
_BASE = {
    "hip_w": 0.08, "hip_drop": 0.06, "spine_low": 0.28, "spine_up": 0.22, "neck": 0.07,
    "head": 0.13, "head_fwd": 0.05, "shoulder_w": 0.17, "shoulder_drop": 0.03,
    "upper_arm": 0.28, "forearm": 0.25, "hand": 0.07, "hand_tip": 0.06, "thumb": 0.05,
    "thigh": 0.42, "shank": 0.40, "foot": 0.13, "foot_drop": 0.04, "ankle_h": 0.08,
}
_GROUPS = {  # which proportion factor scales which lengths
    "arm": ("upper_arm", "forearm", "hand", "hand_tip", "thumb"),
    "leg": ("thigh", "shank", "foot", "foot_drop", "ankle_h"),
    "torso": ("spine_low", "spine_up", "neck", "head", "head_fwd", "hip_drop", "shoulder_drop"),
    "width": ("hip_w", "shoulder_w"),
}
# NTU joint indices written by each chain
ARM_JOINTS = ((4, 5, 6, 7, 21, 22), (8, 9, 10, 11, 23, 24))  # left, right: shoulder elbow wrist hand tip thumb
LEG_JOINTS = ((12, 13, 14, 15), (16, 17, 18, 19))          # left, right: hip knee ankle foot
_THUMB_DIR = np.array([0.0, -0.35, 0.94]) / np.linalg.norm([0.0, -0.35, 0.94])


def draw_subjects(d: Draws, height_range: tuple[float, float], proportion: float) -> dict:
    """Random subjects: bone lengths `(n, 1)` per name, scaled by height and limb proportions.

    proportion: half-width of the uniform relative jitter of arm, leg, torso and width factors.
    """
    scale = d.u(*height_range) / REFERENCE_HEIGHT
    factors = {g: scale * d.u(1.0 - proportion, 1.0 + proportion) for g in _GROUPS}
    dims = {}
    for g, names in _GROUPS.items():
        for k in names:
            dims[k] = _BASE[k] * factors[g]           # (n, 1)
    return dims


def _plane(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """(i, j, sigma) of the rotation taking signed unit axis a toward signed unit axis b."""
    i, j = int(np.argmax(np.abs(a))), int(np.argmax(np.abs(b)))
    return i, j, float(a[i] * b[j])


# The elementary rotations (see motion.py for the angle conventions).
_FLEX = _plane(DOWN, FWD)       # limb forward (elbow: forearm forward; knee with a negative angle)
_ABD = _plane(DOWN, RIGHT)      # limb sideways, away from the body (right side; left is mirrored)
_HOR = _plane(FWD, -RIGHT)      # arm swung horizontally toward the midline
_TWIST = _plane(FWD, RIGHT)     # upper arm about its long axis
_PITCH = _plane(UP, FWD)        # spine / neck bent forward
_ROLL = _plane(UP, RIGHT)       # spine / neck leaning to the right
_YAW = _plane(FWD, RIGHT)       # turning to face the right


def rotate(V: np.ndarray, angle: np.ndarray, plane: tuple[int, int, float]) -> np.ndarray:
    """Rotate vectors V `(..., K, 3)` by `angle (...)` in a coordinate plane (from `_plane`).

    With plane (i, j, sigma): e_i -> cos e_i + sigma sin e_j, e_j -> cos e_j - sigma sin e_i.
    Only two coordinates change, so this is a handful of elementwise operations (no matrices).
    """
    i, j, sigma = plane
    c, s = np.cos(angle)[..., None], sigma * np.sin(angle)[..., None]  # (..., 1)
    vi, vj = V[..., i], V[..., j]
    out = np.array(np.broadcast_to(V, np.broadcast_shapes(V.shape, angle.shape + V.shape[-2:])))
    out[..., i] = c * vi - s * vj
    out[..., j] = s * vi + c * vj
    return out


def _vec(length: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Per-sample vector `(n, 1, 3)` = length `(n, 1)` x constant direction `(3,)`."""
    return length[..., None] * direction


def _arms(pose: Pose, dims: dict) -> np.ndarray:
    """Arm joints relative to SpineShoulder in the upper-torso frame: `(2, n, T, 6, 3)`, mirrored left.

    The upper-arm rotation is hor @ abd @ flex @ twist; the forearm adds the elbow flexion.
    """
    # forearm-frame vectors: forearm, hand, tip (all along the forearm) and the thumb offset
    fore = np.stack([_vec(dims[k], DOWN) for k in ("forearm", "hand", "hand_tip")]
                    + [_vec(dims["thumb"], _THUMB_DIR)], axis=-2)  # (n, 1, 4, 3)
    V = rotate(fore, pose["elbow"], _FLEX)            # (2, n, T, 4, 3) in the upper-arm frame
    V = np.concatenate([np.broadcast_to(_vec(dims["upper_arm"], DOWN)[:, :, None], V.shape[:-2] + (1, 3)), V],
                       axis=-2)                       # (2, n, T, 5, 3): upper arm first
    for key, plane in (("arm_twist", _TWIST), ("arm_flex", _FLEX), ("arm_abd", _ABD), ("arm_hor", _HOR)):
        V = rotate(V, pose[key], plane)
    shoulder = _vec(dims["shoulder_w"], RIGHT) + _vec(dims["shoulder_drop"], DOWN)  # (n, 1, 3)
    elbow = shoulder + V[..., 0, :]
    wrist = elbow + V[..., 1, :]
    hand = wrist + V[..., 2, :]
    tip = hand + V[..., 3, :]
    thumb = hand + V[..., 4, :]
    out = np.stack([np.broadcast_to(shoulder, elbow.shape), elbow, wrist, hand, tip, thumb], axis=-2)
    out[0, ..., 0] *= -1.0                            # the left arm is the mirrored right arm
    return out                                        # (2, n, T, 6, 3)


def _legs(pose: Pose, dims: dict) -> np.ndarray:
    """Leg joints relative to SpineBase in the pelvis frame: `(2, n, T, 4, 3)`, mirrored left.

    The thigh rotation is abd @ flex; the shank adds the knee flexion (bending backward).
    """
    shank = np.stack([_vec(dims["shank"], DOWN),
                      _vec(dims["foot"], FWD) + _vec(dims["foot_drop"], DOWN)], axis=-2)  # (n, 1, 2, 3)
    V = rotate(shank, -pose["knee"], _FLEX)           # (2, n, T, 2, 3) in the thigh frame
    V = np.concatenate([np.broadcast_to(_vec(dims["thigh"], DOWN)[:, :, None], V.shape[:-2] + (1, 3)), V],
                       axis=-2)                       # (2, n, T, 3, 3): thigh first
    V = rotate(rotate(V, pose["hip_flex"], _FLEX), pose["hip_abd"], _ABD)
    hip = _vec(dims["hip_w"], RIGHT) + _vec(dims["hip_drop"], DOWN)  # (n, 1, 3)
    knee = hip + V[..., 0, :]
    ankle = knee + V[..., 1, :]
    foot = ankle + V[..., 2, :]
    out = np.stack([np.broadcast_to(hip, knee.shape), knee, ankle, foot], axis=-2)
    out[0, ..., 0] *= -1.0
    return out                                        # (2, n, T, 4, 3)


def _segment(V: np.ndarray, pitch: np.ndarray, roll: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Apply a spine/neck segment rotation yaw @ roll @ pitch to vectors `(n, T, K, 3)`."""
    return rotate(rotate(rotate(V, pitch, _PITCH), roll, _ROLL), yaw, _YAW)


def forward_kinematics(pose: Pose, dims: dict) -> np.ndarray:
    """Joint positions `(n, T, 25, 3)` float64 in the body frame (right, up, forward), floor at 0.

    The spine bend is shared equally by its two segments (each rotates by the half angles relative
    to the one below). The root height keeps the lower ankle at ankle height above the floor
    (ground contact), plus `pose["lift"]` for jumps; then the root yaw and the root offsets
    (root_x, root_z) are applied.
    """
    n, T = pose["spine_pitch"].shape
    half = [0.5 * pose[k] for k in ("spine_pitch", "spine_roll", "spine_yaw")]
    head = _segment(np.broadcast_to((_vec(dims["head"], UP) + _vec(dims["head_fwd"], FWD))[:, :, None],
                                    (n, 1, 1, 3)), pose["neck_pitch"], pose["neck_roll"], pose["neck_yaw"])
    arms = _arms(pose, dims)                          # (2, n, T, 6, 3)
    upper = np.concatenate([                          # vectors in the upper-torso frame, from SpineShoulder
        np.broadcast_to(np.stack([_vec(dims["spine_up"], UP), _vec(dims["neck"], UP)], axis=-2),
                        (n, T, 2, 3)),                # 0: SpineMid->SpineShoulder, 1: ->Neck
        head,                                         # 2: Neck->Head
        arms[0], arms[1]], axis=-2)                   # 3..14: left arm, right arm
    upper = _segment(upper, *half)                    # now in the lower-spine frame
    lower = np.concatenate([np.broadcast_to(_vec(dims["spine_low"], UP)[:, :, None], (n, T, 1, 3)), upper],
                           axis=-2)
    W = _segment(lower, *half)                        # (n, T, 16, 3) in the body frame
    X = np.zeros((n, T, 25, 3))
    X[:, :, 1] = W[:, :, 0]                           # SpineMid
    X[:, :, 20] = X[:, :, 1] + W[:, :, 1]             # SpineShoulder
    X[:, :, 2] = X[:, :, 20] + W[:, :, 2]             # Neck
    X[:, :, 3] = X[:, :, 2] + W[:, :, 3]              # Head
    X[:, :, list(ARM_JOINTS[0] + ARM_JOINTS[1])] = X[:, :, 20, None] + W[:, :, 4:]
    legs = _legs(pose, dims)                          # (2, n, T, 4, 3), the pelvis frame is the body frame
    X[:, :, list(LEG_JOINTS[0])] = legs[0]
    X[:, :, list(LEG_JOINTS[1])] = legs[1]
    ankle_y = np.minimum(X[:, :, 14, 1], X[:, :, 18, 1])  # (n, T)
    X[..., 1] += (dims["ankle_h"] - ankle_y + pose["lift"])[..., None]
    # whole-body yaw about the vertical through the root, then the root offsets
    X = rotate(X, pose["root_yaw"], _YAW)
    X[..., 0] += pose["root_x"][..., None]
    X[..., 2] += pose["root_z"][..., None]
    return X
