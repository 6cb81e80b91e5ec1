"""Subject skeletons and forward kinematics for the NTU 25-joint layout.

Positions are computed in the body frame (axes: 0 = the subject's right, 1 = up, 2 = forward,
metres, floor at height 0) from the joint angles of a pose (see `motion.py`), by chaining
rotations from the pelvis outward; every bone therefore keeps its length in every frame. Each
rotation is in a coordinate plane and is applied to the bone vectors directly (two coordinates
change), which is much faster than multiplying 3x3 matrices per frame. Left limbs are computed as
mirrored right limbs (lateral axis negated).
"""

from __future__ import annotations

import numpy as np

from .motion import Draws, Pose

RIGHT, UP, FWD = np.eye(3)
DOWN = -UP
REFERENCE_HEIGHT = 1.75  # metres; the bone lengths below are for a subject of this height

# Bone lengths / offsets (metres) of the reference subject, Kinect-v2-like proportions.
_BASE = {
    "hip_w": 0.08,
    "hip_drop": 0.06,
    "spine_low": 0.28,
    "spine_up": 0.22,
    "neck": 0.07,
    "head": 0.13,
    "head_fwd": 0.05,
    "shoulder_w": 0.17,
    "shoulder_drop": 0.03,
    "upper_arm": 0.28,
    "forearm": 0.25,
    "hand": 0.07,
    "hand_tip": 0.06,
    "thumb": 0.05,
    "thigh": 0.42,
    "shank": 0.40,
    "foot": 0.13,
    "foot_drop": 0.04,
    "ankle_h": 0.08,
}
_GROUPS = {  # which proportion factor scales which lengths
    "arm": ("upper_arm", "forearm", "hand", "hand_tip", "thumb"),
    "leg": ("thigh", "shank", "foot", "foot_drop", "ankle_h"),
    "torso": ("spine_low", "spine_up", "neck", "head", "head_fwd", "hip_drop", "shoulder_drop"),
    "width": ("hip_w", "shoulder_w"),
}
# NTU joint indices written by each chain
ARM_JOINTS = ((4, 5, 6, 7, 21, 22), (8, 9, 10, 11, 23, 24))  # left, right: shoulder elbow wrist hand tip thumb
LEG_JOINTS = ((12, 13, 14, 15), (16, 17, 18, 19))  # left, right: hip knee ankle foot
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
            dims[k] = _BASE[k] * factors[g]  # (n, 1)
    return dims


def _plane(a: np.ndarray, b: np.ndarray) -> tuple[int, int, float]:
    """(i, j, sigma) of the rotation taking signed unit axis a toward signed unit axis b."""
    i, j = int(np.argmax(np.abs(a))), int(np.argmax(np.abs(b)))
    return i, j, float(a[i] * b[j])


# The elementary rotations (see motion.py for the angle conventions).
_FLEX = _plane(DOWN, FWD)  # limb forward (elbow: forearm forward; knee with a negative angle)
_ABD = _plane(DOWN, RIGHT)  # limb sideways, away from the body (right side; left is mirrored)
_HOR = _plane(FWD, -RIGHT)  # arm swung horizontally toward the midline
_TWIST = _plane(FWD, RIGHT)  # upper arm about its long axis
_PITCH = _plane(UP, FWD)  # spine / neck bent forward
_ROLL = _plane(UP, RIGHT)  # spine / neck leaning to the right
_YAW = _plane(FWD, RIGHT)  # turning to face the right


Vec = list  # [x, y, z]: three broadcast-compatible float64 arrays `(..., K)` (K vectors)


def trig(angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of `angle (...)`, shaped `(..., 1)` to broadcast over the K vectors of a Vec."""
    return np.cos(angle)[..., None], np.sin(angle)[..., None]


def rotate(v: Vec, cs: tuple[np.ndarray, np.ndarray], plane: tuple[int, int, float]) -> Vec:
    """Rotate vectors v by the angle whose (cos, sin) is `cs`, in a coordinate plane from `_plane`.

    With plane (i, j, sigma): e_i -> cos e_i + sigma sin e_j, e_j -> cos e_j - sigma sin e_i.
    Coordinates are kept as separate arrays, so only two of them are touched (no 3x3 matrices).
    """
    i, j, sigma = plane
    c, s = cs[0], sigma * cs[1]
    out = list(v)
    out[i] = c * v[i] - s * v[j]
    out[j] = s * v[i] + c * v[j]
    return out


def _vecs(items: list) -> Vec:
    """Per-sample constant vectors -> Vec `(n, 1, K)`.

    items: K entries, each a (length `(n, 1)`, direction `(3,)`) pair or a list of such pairs (summed).
    """
    terms = [it if isinstance(it, list) else [it] for it in items]
    return [np.stack([sum(ln * d[a] for ln, d in t) for t in terms], axis=-1) for a in range(3)]


def _cat(*vs: Vec) -> Vec:
    """Concatenate Vecs along the K axis, broadcasting their leading shapes."""
    out = []
    for a in range(3):
        parts = [v[a] for v in vs]
        lead = np.broadcast_shapes(*[p.shape[:-1] for p in parts])
        out.append(np.concatenate([np.broadcast_to(p, lead + p.shape[-1:]) for p in parts], axis=-1))
    return out


def _arms(pose: Pose, dims: dict) -> Vec:
    """Arm joints relative to SpineShoulder in the upper-torso frame: Vec `(2, n, T, 6)`, left mirrored.

    Joint order: shoulder, elbow, wrist, hand, tip, thumb. The upper-arm rotation is
    hor @ abd @ flex @ twist; the forearm adds the elbow flexion.
    """
    fore = _vecs(
        [(dims["forearm"], DOWN), (dims["hand"], DOWN), (dims["hand_tip"], DOWN), (dims["thumb"], _THUMB_DIR)]
    )  # forearm frame, (n, 1, 4)
    v = rotate(fore, trig(pose["elbow"]), _FLEX)  # (2, n, T, 4) in the upper-arm frame
    v = _cat(_vecs([(dims["upper_arm"], DOWN)]), v)  # (2, n, T, 5): upper arm first
    for key, plane in (("arm_twist", _TWIST), ("arm_flex", _FLEX), ("arm_abd", _ABD), ("arm_hor", _HOR)):
        v = rotate(v, trig(pose[key]), plane)
    sh = [dims["shoulder_w"] * RIGHT[a] + dims["shoulder_drop"] * DOWN[a] for a in range(3)]  # (n, 1)
    out = []
    for a in range(3):
        seg = v[a]  # (2, n, T, 5)
        elbow = sh[a] + seg[..., 0]
        wrist = elbow + seg[..., 1]
        hand = wrist + seg[..., 2]
        out.append(
            np.stack(
                [np.broadcast_to(sh[a], elbow.shape), elbow, wrist, hand, hand + seg[..., 3], hand + seg[..., 4]],
                axis=-1,
            )
        )  # (2, n, T, 6)
    out[0] = out[0] * np.array([-1.0, 1.0])[:, None, None, None]  # the left arm is the mirrored right arm
    return out


def _legs(pose: Pose, dims: dict) -> Vec:
    """Leg joints relative to SpineBase in the pelvis frame: Vec `(2, n, T, 4)`, left mirrored.

    Joint order: hip, knee, ankle, foot. The thigh rotation is abd @ flex; the shank adds the
    knee flexion (bending backward).
    """
    shank = _vecs([(dims["shank"], DOWN), [(dims["foot"], FWD), (dims["foot_drop"], DOWN)]])  # (n, 1, 2)
    v = rotate(shank, trig(-pose["knee"]), _FLEX)  # (2, n, T, 2) in the thigh frame
    v = _cat(_vecs([(dims["thigh"], DOWN)]), v)  # (2, n, T, 3): thigh first
    v = rotate(rotate(v, trig(pose["hip_flex"]), _FLEX), trig(pose["hip_abd"]), _ABD)
    hip = [dims["hip_w"] * RIGHT[a] + dims["hip_drop"] * DOWN[a] for a in range(3)]  # (n, 1)
    out = []
    for a in range(3):
        knee = hip[a] + v[a][..., 0]
        ankle = knee + v[a][..., 1]
        out.append(np.stack([np.broadcast_to(hip[a], knee.shape), knee, ankle, ankle + v[a][..., 2]], axis=-1))
    out[0] = out[0] * np.array([-1.0, 1.0])[:, None, None, None]
    return out  # (2, n, T, 4)


def _segment(v: Vec, pitch: tuple, roll: tuple, yaw: tuple) -> Vec:
    """Apply a spine/neck segment rotation yaw @ roll @ pitch (each given as (cos, sin))."""
    return rotate(rotate(rotate(v, pitch, _PITCH), roll, _ROLL), yaw, _YAW)


def forward_kinematics(pose: Pose, dims: dict) -> np.ndarray:
    """Joint positions `(n, T, 25, 3)` float64 in the body frame (right, up, forward), floor at 0.

    The spine bend is shared equally by its two segments (each rotates by the half angles relative
    to the one below). The root height keeps the lower ankle at ankle height above the floor
    (ground contact), plus `pose["lift"]` for jumps; then the root yaw and the root offsets
    (root_x, root_z) are applied.
    """
    n, T = pose["spine_pitch"].shape
    half = [trig(0.5 * pose[k]) for k in ("spine_pitch", "spine_roll", "spine_yaw")]
    head = _segment(
        _vecs([[(dims["head"], UP), (dims["head_fwd"], FWD)]]),
        trig(pose["neck_pitch"]),
        trig(pose["neck_roll"]),
        trig(pose["neck_yaw"]),
    )  # Neck->Head, (n, T, 1)
    arms = _arms(pose, dims)  # (2, n, T, 6)
    upper = _cat(
        _vecs([(dims["spine_up"], UP), (dims["neck"], UP)]), head, [a[0] for a in arms], [a[1] for a in arms]
    )  # (n, T, 15): from SpineShoulder's frame
    upper = _segment(upper, *half)  # now in the lower-spine frame
    W = _segment(_cat(_vecs([(dims["spine_low"], UP)]), upper), *half)  # (n, T, 16) in the body frame
    legs = _legs(pose, dims)  # (2, n, T, 4), the pelvis frame is the body frame
    X = np.zeros((3, n, T, 25))
    for a in range(3):
        w, x = W[a], X[a]
        x[..., 1] = w[..., 0]  # SpineMid
        x[..., 20] = x[..., 1] + w[..., 1]  # SpineShoulder
        x[..., 2] = x[..., 20] + w[..., 2]  # Neck
        x[..., 3] = x[..., 2] + w[..., 3]  # Head
        x[..., list(ARM_JOINTS[0] + ARM_JOINTS[1])] = x[..., 20, None] + w[..., 4:]
        x[..., list(LEG_JOINTS[0])] = legs[a][0]
        x[..., list(LEG_JOINTS[1])] = legs[a][1]
    ankle_y = np.minimum(X[1, ..., 14], X[1, ..., 18])  # (n, T)
    X[1] += (dims["ankle_h"] - ankle_y + pose["lift"])[..., None]
    # whole-body yaw about the vertical through the root, then the root offsets
    x, y, z = rotate(list(X), trig(pose["root_yaw"]), _YAW)
    return np.stack([x + pose["root_x"][..., None], y, z + pose["root_z"][..., None]], axis=-1)
