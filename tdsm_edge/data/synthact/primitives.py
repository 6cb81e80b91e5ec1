"""Motion primitives: smooth joint-angle trajectories added to a pose, keyed by (primitive, part).

Each function receives the pose (see `motion.py` for the DOF conventions), an `ActionContext`
(phase, envelope, amplitude and its own random table) and the side/direction of the class, and
adds its trajectory in place. Angles are written in degrees through `DEG`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .motion import DEG, Draws, Pose, bump, ease, osc, other_side, pulses, side_index, side_sign


@dataclass
class ActionContext:
    """Timing and intensity of one class's action for n samples.

    Attributes:
        p: `(n, T)` phase in [0, 1] inside the action window (clamped outside).
        e: `(n, T)` attack-hold-release envelope, 0 outside the window.
        amp: `(n, 1)` amplitude factor (1 = nominal).
        d: per-sample random table for the primitive's own parameters.
    """

    p: np.ndarray
    e: np.ndarray
    amp: np.ndarray
    d: Draws


def _limb(pose: Pose, key: str, sides: list[int], value: np.ndarray) -> None:
    """Add value `(n, T)` to the limb DOF `key` of the given sides."""
    pose[key][sides] += value


# ---- arms and hands -------------------------------------------------------------------------


def raise_arm(pose: Pose, c: ActionContext, side: str) -> None:
    """Arm(s) lifted forward and up toward overhead, held, lowered."""
    s = side_index(side)
    _limb(pose, "arm_flex", s, np.minimum(c.amp * c.d.u(140, 170), 180) * DEG * c.e)
    _limb(pose, "arm_abd", s, c.d.u(0, 25) * DEG * c.e)


def wave(pose: Pose, c: ActionContext, side: str) -> None:
    """Upper arm out to the side, forearm up, the forearm swaying side to side (elbow oscillation)."""
    s = side_index(side)
    _limb(pose, "arm_abd", s, c.d.u(70, 100) * DEG * c.e)
    _limb(pose, "arm_flex", s, c.d.u(0, 30) * DEG * c.e)
    _limb(pose, "arm_twist", s, 90 * DEG * c.e)  # turns the elbow plane so the forearm points up
    swing = c.amp * c.d.u(20, 35) * osc(c.p, c.d.u(3, 5))
    _limb(pose, "elbow", s, (c.d.u(80, 105) + swing) * DEG * c.e)


def circle_arm(pose: Pose, c: ActionContext, side: str) -> None:
    """Straight arm(s) turning 1-2 full circles about the shoulder, forward or backward."""
    s = side_index(side)
    turns = c.d.integer(1, 2) * c.d.sign()  # whole circles, forward or backward
    _limb(pose, "arm_flex", s, 2 * np.pi * turns * ease(c.p))  # ends back at rest
    _limb(pose, "arm_abd", s, c.amp * c.d.u(10, 25) * DEG * c.e)


def punch(pose: Pose, c: ActionContext, side: str) -> None:
    """Both fists in guard; the side's arm extends forward in 1-3 sharp strikes, shoulders twisting."""
    s, both = side_index(side), side_index("both")
    _limb(pose, "arm_flex", both, c.d.u(45, 65) * DEG * c.e)  # guard: fists in front of the chest
    _limb(pose, "elbow", both, c.d.u(105, 125) * DEG * c.e)
    _limb(pose, "arm_hor", both, 25 * DEG * c.e)
    b = pulses(c.p, c.d.integer(1, 3)) ** 2 * c.e  # sharp strikes
    _limb(pose, "arm_flex", s, c.amp * 35 * DEG * b)
    _limb(pose, "elbow", s, -110 * DEG * b)
    _limb(pose, "arm_hor", s, -15 * DEG * b)
    pose["spine_yaw"] += -side_sign(side) * c.d.u(5, 15) * DEG * b  # the punching shoulder goes forward


def reach(pose: Pose, c: ActionContext, side: str) -> None:
    """Slow forward reach of one arm with a slight forward lean, held."""
    s = side_index(side)
    _limb(pose, "arm_flex", s, c.amp * c.d.u(70, 100) * DEG * c.e)
    _limb(pose, "arm_abd", s, c.d.u(5, 35) * DEG * c.e)
    _limb(pose, "elbow", s, c.d.u(0, 20) * DEG * c.e)
    pose["spine_pitch"] += c.d.u(8, 25) * DEG * c.e


def swing_arm(pose: Pose, c: ActionContext, side: str) -> None:
    """Pendulum swing of one arm forward and back."""
    s = side_index(side)
    _limb(pose, "arm_flex", s, c.amp * c.d.u(35, 60) * DEG * osc(c.p, c.d.u(2, 3.5)) * c.e)
    _limb(pose, "elbow", s, c.d.u(5, 20) * DEG * c.e)


def clap(pose: Pose, c: ActionContext, side: str) -> None:
    """Both arms forward, hands brought together 3-6 times."""
    both = side_index("both")
    _limb(pose, "arm_flex", both, c.d.u(65, 85) * DEG * c.e)
    _limb(pose, "elbow", both, c.d.u(30, 50) * DEG * c.e)
    close = pulses(c.p, c.d.integer(3, 6))  # 0 = hands apart, 1 = hands together
    _limb(pose, "arm_hor", both, (-10 + 27 * close * np.minimum(c.amp, 1.0)) * DEG * c.e)


def touch_head(pose: Pose, c: ActionContext, side: str) -> None:
    """Hand(s) raised to the side of the head and held there, with a small rubbing motion."""
    s = side_index(side)
    _limb(pose, "arm_abd", s, c.d.u(100, 120) * DEG * c.e)
    _limb(pose, "arm_twist", s, 90 * DEG * c.e)
    _limb(pose, "arm_hor", s, c.d.u(10, 35) * DEG * c.e)
    rub = c.d.u(0, 8) * osc(c.p, c.d.u(2, 4))  # small scratching motion
    _limb(pose, "elbow", s, (c.d.u(130, 145) + rub) * DEG * c.e)


def shake_hand(pose: Pose, c: ActionContext, side: str) -> None:
    """Forearm held forward, hand shaken quickly (fast elbow oscillation)."""
    s = side_index(side)
    _limb(pose, "arm_flex", s, c.d.u(15, 35) * DEG * c.e)
    cycles = c.d.u(6, 10)
    _limb(pose, "elbow", s, (c.d.u(70, 90) + c.amp * 14 * osc(c.p, cycles)) * DEG * c.e)
    _limb(pose, "arm_twist", s, 10 * DEG * osc(c.p, cycles, 1.0) * c.e)


# ---- legs ------------------------------------------------------------------------------------


def raise_leg(pose: Pose, c: ActionContext, side: str) -> None:
    """Knee lifted in front of the hip, held, put down."""
    s = side_index(side)
    _limb(pose, "hip_flex", s, c.amp * c.d.u(65, 95) * DEG * c.e)
    _limb(pose, "knee", s, c.d.u(70, 100) * DEG * c.e)
    _limb(pose, "arm_abd", side_index("both"), c.d.u(0, 15) * DEG * c.e)


def kick(pose: Pose, c: ActionContext, side: str) -> None:
    """Knee chambered, then the leg extended forward-up in 1-2 kicks; the torso leans back."""
    s = side_index(side)
    b = pulses(c.p, c.d.integer(1, 2)) ** 2 * c.e  # chamber -> extend -> chamber
    _limb(pose, "hip_flex", s, c.d.u(15, 30) * DEG * c.e + c.amp * c.d.u(45, 65) * DEG * b)
    _limb(pose, "knee", s, c.d.u(50, 70) * DEG * (c.e - b))
    pose["spine_pitch"] += -c.d.u(5, 15) * DEG * b  # lean back to balance
    _limb(pose, "arm_abd", side_index("both"), c.d.u(5, 25) * DEG * c.e)


def swing_leg(pose: Pose, c: ActionContext, side: str) -> None:
    """Pendulum swing of one leg forward and back from the hip."""
    s = side_index(side)
    _limb(pose, "hip_flex", s, c.amp * c.d.u(30, 45) * DEG * osc(c.p, c.d.u(1.5, 3)) * c.e)
    _limb(pose, "knee", s, c.d.u(5, 20) * DEG * c.e)


def circle_leg(pose: Pose, c: ActionContext, side: str) -> None:
    """Foot tracing circles: hip flexion and abduction out of phase."""
    s = side_index(side)
    ph = 2 * np.pi * c.d.u(1.5, 3) * c.p * c.d.sign()
    r = c.amp * c.d.u(22, 32) * DEG
    _limb(pose, "hip_flex", s, r * np.sin(ph) * c.e)
    _limb(pose, "hip_abd", s, r * 0.5 * (1 - np.cos(ph)) * c.e)
    _limb(pose, "knee", s, c.d.u(5, 25) * DEG * c.e)


def stomp(pose: Pose, c: ActionContext, side: str) -> None:
    """Foot lifted a little and stamped down, 2-4 times."""
    s = side_index(side)
    b = pulses(c.p, c.d.integer(2, 4)) * c.e
    _limb(pose, "hip_flex", s, c.amp * c.d.u(35, 55) * DEG * b)
    _limb(pose, "knee", s, c.amp * c.d.u(55, 75) * DEG * b)


def hop(pose: Pose, c: ActionContext, side: str) -> None:
    """Standing on the side's leg (the other foot lifted behind), 3-5 small hops."""
    s, o = side_index(side), side_index(other_side(side))
    _limb(pose, "knee", o, c.d.u(70, 100) * DEG * c.e)  # the free foot is lifted behind
    _limb(pose, "hip_flex", o, c.d.u(5, 30) * DEG * c.e)
    w = -np.cos(2 * np.pi * c.d.integer(3, 5) * c.p)  # -1 crouch .. +1 flight
    pose["lift"] += c.amp * c.d.u(0.05, 0.10) * np.maximum(w, 0) ** 2 * c.e
    _limb(pose, "knee", s, 30 * DEG * np.maximum(-w, 0) * c.e)
    _limb(pose, "hip_flex", s, 15 * DEG * np.maximum(-w, 0) * c.e)
    _limb(pose, "arm_abd", side_index("both"), c.d.u(5, 25) * DEG * c.e)


def shake_leg(pose: Pose, c: ActionContext, side: str) -> None:
    """Leg lifted slightly, shank shaken quickly (fast knee oscillation)."""
    s = side_index(side)
    _limb(pose, "hip_flex", s, c.d.u(15, 35) * DEG * c.e)
    _limb(pose, "knee", s, (c.d.u(25, 45) + c.amp * 15 * osc(c.p, c.d.u(6, 10))) * DEG * c.e)


# ---- head and torso --------------------------------------------------------------------------


def nod(pose: Pose, c: ActionContext, side: str) -> None:
    """Head tipped forward 2-4 times."""
    pitch = c.amp * c.d.u(25, 40) * DEG * pulses(c.p, c.d.integer(2, 4)) * c.e
    pose["neck_pitch"] += pitch
    pose["spine_pitch"] += 0.15 * pitch  # the upper body joins in a little


def shake_head(pose: Pose, c: ActionContext, side: str) -> None:
    """Head turned left and right 2-4 times."""
    yaw = c.amp * c.d.u(35, 55) * DEG * osc(c.p, c.d.u(2, 4)) * c.e
    pose["neck_yaw"] += yaw
    pose["spine_yaw"] += 0.15 * yaw


def turn_head(pose: Pose, c: ActionContext, side: str) -> None:
    """Head (and a little of the chest) turned to one side, held, turned back."""
    sg = side_sign(side)
    pose["neck_yaw"] += sg * c.amp * c.d.u(50, 80) * DEG * c.e
    pose["spine_yaw"] += sg * c.d.u(10, 25) * DEG * c.e  # looking over the shoulder turns the chest too


def circle_head(pose: Pose, c: ActionContext, side: str) -> None:
    """Head rolled around in circles (neck pitch and roll out of phase)."""
    ph = 2 * np.pi * c.d.u(1.5, 3) * c.p * c.d.sign()
    r = c.amp * c.d.u(15, 25) * DEG * c.e
    pose["neck_pitch"] += r * np.sin(ph)
    pose["neck_roll"] += r * np.cos(ph)


def bend_torso(pose: Pose, c: ActionContext, side: str) -> None:
    """Upper body bent forward (arms hanging) or sideways, held, straightened."""
    both = side_index("both")
    if side == "forward":
        pitch = c.amp * c.d.u(45, 80) * DEG * c.e
        pose["spine_pitch"] += pitch
        _limb(pose, "arm_flex", both, 0.8 * pitch)  # the arms keep hanging toward the floor
    else:
        roll = side_sign(side) * c.amp * c.d.u(20, 35) * DEG * c.e
        pose["spine_roll"] += roll
        _limb(pose, "arm_abd", side_index(side), 0.8 * np.abs(roll))  # that arm keeps hanging vertically
        _limb(pose, "arm_abd", side_index(other_side(side)), c.d.u(0, 20) * DEG * c.e)


def turn_torso(pose: Pose, c: ActionContext, side: str) -> None:
    """Upper body twisted to one side over fixed hips, held, turned back."""
    sg = side_sign(side)
    pose["spine_yaw"] += sg * c.amp * c.d.u(35, 60) * DEG * c.e
    pose["neck_yaw"] += sg * c.d.u(0, 20) * DEG * c.e
    _limb(pose, "elbow", side_index("both"), c.d.u(0, 40) * DEG * c.e)


def circle_torso(pose: Pose, c: ActionContext, side: str) -> None:
    """Upper body circling over the hips (spine pitch and roll out of phase)."""
    ph = 2 * np.pi * c.d.u(1.5, 2.5) * c.p * c.d.sign()
    r = c.amp * c.d.u(14, 22) * DEG * c.e
    pose["spine_pitch"] += r * np.sin(ph)
    pose["spine_roll"] += r * np.cos(ph)


# ---- whole body ------------------------------------------------------------------------------


def squat(pose: Pose, c: ActionContext, side: str) -> None:
    """Both knees bent (hips at half the knee angle keep the feet under the body), arms forward."""
    both = side_index("both")
    knee = c.amp * c.d.u(90, 120) * DEG * c.e
    _limb(pose, "knee", both, knee)
    _limb(pose, "hip_flex", both, 0.5 * knee)  # knee = 2 x hip keeps the ankles under the hips
    pose["spine_pitch"] += c.d.u(15, 35) * DEG * c.e
    _limb(pose, "arm_flex", both, c.d.u(40, 85) * DEG * c.e)


def jump(pose: Pose, c: ActionContext, side: str) -> None:
    """1-3 jumps on both feet, each preceded by a crouch; the arms swing up in flight."""
    both = side_index("both")
    w = -np.cos(2 * np.pi * c.d.integer(1, 3) * c.p)  # -1 crouch .. +1 flight
    up, down = np.maximum(w, 0) * c.e, np.maximum(-w, 0) * c.e
    pose["lift"] += c.amp * c.d.u(0.12, 0.28) * up**2
    _limb(pose, "knee", both, c.d.u(40, 60) * DEG * down)
    _limb(pose, "hip_flex", both, c.d.u(20, 30) * DEG * down)
    pose["spine_pitch"] += 15 * DEG * down
    _limb(pose, "arm_flex", both, c.d.u(20, 60) * DEG * up - 20 * DEG * down)


def turn_around(pose: Pose, c: ActionContext, side: str) -> None:
    """Whole body turned by about 180 degrees with small alternating steps."""
    pose["root_yaw"] += c.d.sign() * c.d.u(160, 200) * DEG * ease(c.p)
    w = osc(c.p, c.d.integer(2, 4))  # small alternating steps
    for s, step in ((0, np.maximum(w, 0)), (1, np.maximum(-w, 0))):
        _limb(pose, "hip_flex", [s], 20 * DEG * step * c.e)
        _limb(pose, "knee", [s], 40 * DEG * step * c.e)


def step(pose: Pose, c: ActionContext, side: str) -> None:
    """One step forward, back, left or right: the root moves, the legs lift in turn."""
    dist = c.amp * c.d.u(0.25, 0.45) * ease(c.p)
    first, second = bump(c.p, 0.0, 0.6), bump(c.p, 0.4, 1.0)  # the leading, then the trailing leg
    if side in ("left", "right"):
        pose["root_x"] += side_sign(side) * dist
        lead, trail = side_index(side), side_index(other_side(side))
        _limb(pose, "hip_abd", lead, 20 * DEG * first)
        _limb(pose, "knee", lead, 20 * DEG * first)
        _limb(pose, "hip_abd", trail, 15 * DEG * second)
        _limb(pose, "knee", trail, 25 * DEG * second)
        return
    fwd = side == "forward"
    pose["root_z"] += dist if fwd else -dist
    left_first = c.d.bern(0.5)  # (n, 1): forward/back steps start with either foot

    def legs(lead: np.ndarray, trail: np.ndarray) -> np.ndarray:
        """(2, n, T): `lead` on the leading leg during the first bump, `trail` on the other later."""
        return np.stack(
            [np.where(left_first, lead * first, trail * second), np.where(left_first, trail * second, lead * first)]
        )

    pose["hip_flex"] += legs((35 if fwd else -15) * DEG, (20 if fwd else -5) * DEG)
    pose["knee"] += legs(45 * DEG, 40 * DEG)


PrimitiveFn = Callable[[Pose, ActionContext, str], None]
PRIMITIVE_FUNCS: dict[tuple[str, str], PrimitiveFn] = {
    ("raise", "arm"): raise_arm,
    ("wave", "hand"): wave,
    ("circle", "arm"): circle_arm,
    ("punch", "arm"): punch,
    ("reach", "arm"): reach,
    ("swing", "arm"): swing_arm,
    ("clap", "hand"): clap,
    ("touch head", "hand"): touch_head,
    ("shake", "hand"): shake_hand,
    ("raise", "leg"): raise_leg,
    ("kick", "leg"): kick,
    ("swing", "leg"): swing_leg,
    ("circle", "leg"): circle_leg,
    ("stomp", "leg"): stomp,
    ("jump", "leg"): hop,
    ("shake", "leg"): shake_leg,
    ("bend", "head"): nod,
    ("shake", "head"): shake_head,
    ("turn", "head"): turn_head,
    ("circle", "head"): circle_head,
    ("bend", "torso"): bend_torso,
    ("turn", "torso"): turn_torso,
    ("circle", "torso"): circle_torso,
    ("squat", "body"): squat,
    ("jump", "body"): jump,
    ("turn", "body"): turn_around,
    ("step", "body"): step,
}
