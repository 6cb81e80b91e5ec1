"""Pose-estimator keypoints → the NTU-25 layout the bundles take (numpy only; shared with the lean runtime).

    from tdsm_edge.runtime import to_ntu25
    window = to_ntu25(kps, "coco17", confidence=scores)             # (T, 17, 3) -> (T, 25, 3) float32
    window = to_ntu25(world, "mediapipe33", confidence=visibility)  # (T, 33, 3) -> (T, 25, 3) float32
    pred = rec.predict(window)

Conventions
- Output: `(..., 25, 3)` float32 in NTU-25 order (`NTU25.joint_names`), in Kinect v2 camera space
  (metres): x toward the subject's right when it faces the camera (the camera's left), y up, z away
  from the camera, as in NTU `.skeleton` files and synthact. A joint at exactly (0, 0, 0) is missing.
- Input axes, `axes="opencv"` (default): x right in the image, y down, z away from the camera: pixel
  coordinates, MediaPipe world landmarks, the camera frame of most 3-D lifters. They are turned into
  NTU axes by (x, y, z) -> (-x, -y, z), a 180° rotation about the optical axis: y then points up and,
  because it is a rotation and not a mirror, the subject's left hand stays on the subject's left
  (flipping y alone would mirror the body). `axes="ntu"`: already in NTU axes, used as given.
- Missing source keypoints (never an error: estimators emit these for lost points): confidence below
  `threshold` or NaN, any NaN/Inf coordinate, all three coordinates exactly 0, and with `intrinsics`
  a depth <= 0. Output coordinates beyond float32's range are missing too.
- `shift` (NTU axes, metres) is added to every tracked output joint. Hip-centred input (MediaPipe
  world landmarks, root-relative 3-D lifts) puts the mid-hip (NTU SpineBase) at (0, 0, 0), which
  would read as missing; a shift keeps it tracked. Preprocessing recentres every window on SpineMid,
  so the shift does not change predictions.

Per joint (direct = that keypoint; derived = mean, "all" its sources tracked unless noted; 0 = always missing):

| NTU-25 joint   | coco17                                  | mediapipe33                                   |
|----------------|-----------------------------------------|-----------------------------------------------|
| SpineBase      | derived: mean(left_hip, right_hip)      | derived: mean(left_hip, right_hip)            |
| SpineMid       | derived: mean(SpineBase, SpineShoulder) | derived: mean(SpineBase, SpineShoulder)       |
| Neck           | derived: (2 SpineShoulder + Head) / 3   | derived: (2 SpineShoulder + Head) / 3         |
| Head           | derived: mean of the TRACKED ones of    | derived: mean of the TRACKED ones of nose,    |
|                | nose, eyes, ears (missing if none)      | left_eye, right_eye, ears (missing if none)   |
| Shoulder/Elbow/Wrist L/R | direct                        | direct                                        |
| HandLeft/Right | 0 (COCO has no hand keypoint)           | derived: mean(wrist, pinky, index)            |
| HandTipL/R     | 0 (no finger keypoints)                 | direct: index (BlazePose: its first knuckle)  |
| ThumbL/R       | 0 (no finger keypoints)                 | direct: thumb                                 |
| Hip/Knee/Ankle L/R | direct                              | direct                                        |
| FootLeft/Right | 0 (no foot keypoint)                    | direct: foot_index (the toe tip)              |
| SpineShoulder  | derived: mean(left_shoulder, right_shoulder) | derived: mean(left_shoulder, right_shoulder) |

Neck sits a third of the way from SpineShoulder to Head (Kinect proportions: 7 cm of 20 cm).
`ADAPTERS[name].describe()` gives this table as data. Left/right are the subject's own in all three
keypoint sets. Missing joints are what the training data has for lost tracking, so the encoder has
seen them; inventing a hand from the wrist would not be more honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError
from .layout import NTU25

AXES = ("opencv", "ntu")
_TO_NTU = {"opencv": np.array([-1.0, -1.0, 1.0]), "ntu": np.array([1.0, 1.0, 1.0])}
_NTU = "ntu:"  # prefix of a source that names an NTU joint made earlier in the table


@dataclass(frozen=True)
class Joint:
    """How one NTU-25 joint is made. No sources: always missing (exact zeros)."""

    sources: tuple[str, ...] = ()  # source keypoint names, or "ntu:<Joint>" for a joint made earlier
    weights: tuple[float, ...] | None = None  # None = equal weights
    need: str = "all"  # "all": missing unless every source is tracked; "any": mean of the tracked
    note: str = ""  # why (for missing and approximate joints)

    @property
    def kind(self) -> str:
        """ "direct", "derived" or "missing"."""
        if not self.sources:
            return "missing"
        return "direct" if len(self.sources) == 1 and not self.sources[0].startswith(_NTU) else "derived"


def _lr(fmt: str, left: Joint, right: Joint) -> dict[str, Joint]:
    return {fmt.format("Left"): left, fmt.format("Right"): right}


def _keys(fmt: str, ntu: str) -> dict[str, Joint]:
    """Direct left/right pair: NTU `<ntu>Left` <- `left_<fmt>`."""
    return _lr(ntu + "{}", Joint((f"left_{fmt}",)), Joint((f"right_{fmt}",)))


_TRUNK = {  # the same for both sources; evaluation order matters (ntu: sources come first)
    "SpineBase": Joint(("left_hip", "right_hip")),
    "SpineShoulder": Joint(("left_shoulder", "right_shoulder")),
    "SpineMid": Joint(("ntu:SpineBase", "ntu:SpineShoulder"), note="midpoint of the spine's ends"),
    "Head": Joint(
        ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
        need="any",
        note="mean of the tracked face points; shifts a few cm forward when the ears are lost",
    ),
    "Neck": Joint(
        ("ntu:SpineShoulder", "ntu:Head"),
        (2.0, 1.0),
        note="a third of the way from SpineShoulder to Head (Kinect v2 proportions)",
    ),
}
_LIMBS = {
    **_keys("shoulder", "Shoulder"),
    **_keys("elbow", "Elbow"),
    **_keys("wrist", "Wrist"),
    **_keys("hip", "Hip"),
    **_keys("knee", "Knee"),
    **_keys("ankle", "Ankle"),
}


def _absent(why: str) -> dict[str, Joint]:
    return {
        n: Joint(note=why)
        for n in (
            "HandLeft",
            "HandRight",
            "HandTipLeft",
            "HandTipRight",
            "ThumbLeft",
            "ThumbRight",
            "FootLeft",
            "FootRight",
        )
    }


COCO17_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
MEDIAPIPE33_KEYPOINTS = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)

_KNUCKLE = "BlazePose's index point is its first knuckle, a few cm short of the Kinect hand tip"
_TOE = "the toe tip; Kinect's foot joint is a little behind it"
_MEDIAPIPE_EXTREMITIES = {
    **_lr(
        "Hand{}",
        Joint(("left_wrist", "left_pinky", "left_index"), note="palm centre"),
        Joint(("right_wrist", "right_pinky", "right_index"), note="palm centre"),
    ),
    **_lr("HandTip{}", Joint(("left_index",), note=_KNUCKLE), Joint(("right_index",), note=_KNUCKLE)),
    **_keys("thumb", "Thumb"),
    **_lr("Foot{}", Joint(("left_foot_index",), note=_TOE), Joint(("right_foot_index",), note=_TOE)),
}


@dataclass(frozen=True)
class PoseAdapter:
    """One estimator's keypoint set mapped to NTU-25 (see the module docstring for the conventions)."""

    name: str  # registry key, e.g. "coco17"
    keypoints: tuple[str, ...]  # the estimator's S keypoint names, in its output order
    joints: dict[str, Joint]  # NTU joint name -> rule; a joint's "ntu:" sources come before it
    threshold: float  # default confidence cut-off (a keypoint below it is missing)
    shift: tuple[float, float, float]  # default shift (NTU axes, metres) added to tracked joints
    confidence_name: str  # what the estimator calls its per-keypoint confidence

    def __post_init__(self) -> None:
        assert sorted(self.joints) == sorted(NTU25.joint_names), f"{self.name}: must define every NTU-25 joint"
        made: set[str] = set()
        for name, rule in self.joints.items():
            for s in rule.sources:
                assert (s[len(_NTU) :] in made) if s.startswith(_NTU) else (s in self.keypoints), (self.name, name, s)
            made.add(name)

    def describe(self) -> dict[str, str]:
        """NTU joint name -> how it is made, e.g. {"SpineBase": "derived: mean(left_hip, right_hip)", ...}."""
        out = {}
        for name in NTU25.joint_names:
            r = self.joints[name]
            if r.kind == "missing":
                text = f"missing (0): {r.note}"
            else:
                src = ", ".join(s.removeprefix(_NTU) for s in r.sources)
                w = "" if r.weights is None else f" weights {r.weights}"
                how = "mean of the tracked among " if r.need == "any" else "mean"
                text = f"direct: {src}" if r.kind == "direct" else f"derived: {how}({src}){w}"
                text += f"; {r.note}" if r.note else ""
            out[name] = text
        return out

    def __call__(
        self,
        points,
        confidence=None,
        threshold: float | None = None,
        axes: str = "opencv",
        shift: Sequence[float] | None = None,
        intrinsics: Sequence[float] | None = None,
    ) -> np.ndarray:
        """Map keypoints to NTU-25.

        Args:
            points: `(..., S, 3)` real (float or int) keypoints, S = len(self.keypoints); any leading
                dims, e.g. `(S, 3)` one frame, `(T, S, 3)` a window, `(M, T, S, 3)` several bodies.
                Without intrinsics: 3-D coordinates in `axes`. With intrinsics: `(u, v, depth)` = pixel
                column, pixel row, depth in metres along the optical axis.
            confidence: optional `(..., S)` real or bool scores (MediaPipe: visibility), same leading dims.
            threshold: a keypoint with confidence < threshold is missing (default: `self.threshold`).
            axes: "opencv" (x right, y down, z away; default) or "ntu" (x subject's right, y up, z away).
            shift: `(3,)` metres added to every tracked output joint (default: `self.shift`).
            intrinsics: `(fx, fy, cx, cy)` in pixels: back-project `(u, v, depth)` to metres
                (X = (u - cx) depth / fx, Y = (v - cy) depth / fy, Z = depth); needs axes="opencv".
        Returns:
            `(..., 25, 3)` float32 NTU-25 Kinect camera coordinates; missing joints exactly 0.
        Raises:
            InputError: points/confidence not arrays of real numbers, wrong shape or keypoint count.
            ConfigError: a bad threshold, axes, shift or intrinsics.
        """
        p, ok = self._read(points, confidence, self.threshold if threshold is None else threshold)
        if axes not in AXES:
            raise ConfigError(
                f"axes must be one of {AXES} (opencv: x right, y down, z away from the camera; ntu: "
                f"x toward the subject's right, y up), got {axes!r}"
            )
        shift = _vector("shift", self.shift if shift is None else shift, 3)
        with np.errstate(over="ignore", invalid="ignore"):
            if intrinsics is not None:
                if axes != "opencv":
                    raise ConfigError(
                        "intrinsics back-project pixel coordinates, which are in opencv axes; "
                        f"use axes='opencv' with them (got axes={axes!r})"
                    )
                fx, fy, cx, cy = _vector("intrinsics", intrinsics, 4)
                if fx <= 0 or fy <= 0:
                    raise ConfigError(f"intrinsics (fx, fy, cx, cy) need positive focal lengths, got {intrinsics!r}")
                d = p[..., 2]
                ok &= d > 0
                p = np.stack([(p[..., 0] - cx) * d / fx, (p[..., 1] - cy) * d / fy, d], axis=-1)
            p = p * _TO_NTU[axes]  # (..., S, 3)
            p[~ok] = 0.0  # lost points never leak into derived joints
            out, out_ok = self._apply(p, ok)  # (..., 25, 3), (..., 25)
            out = (out + shift).astype(np.float32)
            out_ok &= np.isfinite(out).all(-1)
        out[~out_ok] = 0.0
        return out

    def _read(self, points, confidence, threshold) -> tuple[np.ndarray, np.ndarray]:
        """`(..., S, 3)` float64 points and the `(..., S)` bool mask of tracked keypoints."""
        S = len(self.keypoints)
        want = f"(..., {S}, 3) real {self.name} keypoints, e.g. (T, {S}, 3)"
        a = _real_array(points, "points", want)
        if a.ndim < 2 or a.shape[-2:] != (S, 3):
            hint = ""
            if a.ndim >= 2 and a.shape[-2] == S and a.shape[-1] in (2, 4, 5):
                hint = (
                    " 2-D keypoints need a depth channel (u, v, depth) and intrinsics=(fx, fy, cx, cy)"
                    if a.shape[-1] == 2
                    else f" Pass the {self.confidence_name} column separately: "
                    f"points[..., :3], confidence=points[..., 3]."
                )
            elif a.ndim >= 2 and a.shape[-2] != S:
                hint = f" The {self.name} adapter takes {S} keypoints per frame; see ADAPTERS for the others."
            raise InputError(f"points has shape {a.shape}, expected {want}.{hint}")
        p = a.astype(np.float64)
        ok = np.isfinite(p).all(-1) & (p != 0).any(-1)  # (..., S)
        if (
            not isinstance(threshold, (int, float, np.integer, np.floating))
            or isinstance(threshold, bool)
            or not np.isfinite(threshold)
        ):
            raise ConfigError(
                f"threshold must be a finite number (a keypoint whose {self.confidence_name} is below "
                f"it is missing), got {threshold!r}"
            )
        if confidence is not None:
            c = _real_array(confidence, "confidence", f"{a.shape[:-1]} {self.confidence_name} scores", allow_bool=True)
            if c.shape != a.shape[:-1]:
                raise InputError(
                    f"confidence has shape {c.shape} but points {a.shape} need one "
                    f"{self.confidence_name} score per keypoint: shape {a.shape[:-1]}"
                )
            ok &= c.astype(np.float64) >= threshold  # NaN compares False: missing
        return p, ok

    def _apply(self, p: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Source `(..., S, 3)` (lost points zeroed) and mask `(..., S)` -> NTU `(..., 25, 3)` and mask `(..., 25)`."""
        lead = p.shape[:-2]
        out = np.zeros(lead + (NTU25.num_joints, 3))  # (..., 25, 3)
        out_ok = np.zeros(lead + (NTU25.num_joints,), bool)  # (..., 25)
        slot = {n: (p, ok, i) for i, n in enumerate(self.keypoints)}
        for name, rule in self.joints.items():
            j = NTU25.index(name)
            slot[_NTU + name] = (out, out_ok, j)
            if not rule.sources:
                continue
            pts = np.stack([slot[s][0][..., slot[s][2], :] for s in rule.sources], axis=-2)  # (..., n, 3)
            oks = np.stack([slot[s][1][..., slot[s][2]] for s in rule.sources], axis=-1)  # (..., n)
            w = np.ones(len(rule.sources)) if rule.weights is None else np.asarray(rule.weights, np.float64)
            if rule.need == "all":
                good, ww = oks.all(-1), np.broadcast_to(w, oks.shape)
            else:
                ww = oks * w  # (..., n) weights of the tracked sources only
                good = ww.sum(-1) > 0
            val = (pts * ww[..., None]).sum(-2) / np.maximum(ww.sum(-1), 1e-12)[..., None]  # (..., 3)
            out[..., j, :] = np.where(good[..., None], val, 0.0)
            out_ok[..., j] = good
        return out, out_ok


def _real_array(x, what: str, want: str, allow_bool: bool = False) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} cannot be read as an array ({e}); pass a numpy array shaped {want}") from e
    kinds = "fiub" if allow_bool else "fiu"
    if a.dtype.kind not in kinds:
        raise InputError(
            f"{what} has dtype {a.dtype}, expected real numbers{' or bools' if allow_bool else ''} "
            f"({want}); convert with np.asarray({what}, np.float32) if they really are numbers"
        )
    return a


def _vector(what: str, v, n: int) -> np.ndarray:
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be {n} finite numbers, got {v!r}") from e
    if a.shape != (n,) or not np.isfinite(a).all():
        raise ConfigError(f"{what} must be {n} finite numbers, got {v!r}")
    return a


COCO17 = PoseAdapter(
    "coco17",
    COCO17_KEYPOINTS,
    {**_TRUNK, **_LIMBS, **_absent("COCO-17 has no hand, finger or foot keypoint")},
    threshold=0.3,
    shift=(0.0, 0.0, 0.0),
    confidence_name="confidence",
)
MEDIAPIPE33 = PoseAdapter(
    "mediapipe33",
    MEDIAPIPE33_KEYPOINTS,
    {**_TRUNK, **_LIMBS, **_MEDIAPIPE_EXTREMITIES},
    threshold=0.5,
    shift=(0.0, 0.0, 3.0),
    confidence_name="visibility",
)

ADAPTERS: dict[str, PoseAdapter] = {a.name: a for a in (COCO17, MEDIAPIPE33)}


def to_ntu25(points, source: str, confidence=None, **kwargs) -> np.ndarray:
    """Map a pose estimator's keypoints `(..., S, 3)` to NTU-25 `(..., 25, 3)` float32.

    Args:
        points: the estimator's keypoints (see `PoseAdapter.__call__`).
        source: a key of ADAPTERS: "coco17" (S = 17) or "mediapipe33" (S = 33, world landmarks).
        confidence: optional `(..., S)` per-keypoint scores (MediaPipe: visibility).
        **kwargs: threshold, axes, shift, intrinsics (see `PoseAdapter.__call__`).
    Raises:
        ConfigError: an unknown source or a bad option. InputError: a bad points/confidence array.
    """
    if not isinstance(source, str) or source not in ADAPTERS:
        raise ConfigError(
            f"unknown keypoint source {source!r}; adapters exist for {sorted(ADAPTERS)}. For another "
            "estimator, map its keypoints to NTU-25 yourself (joint order: NTU25.joint_names)"
        )
    return ADAPTERS[source](points, confidence, **kwargs)


__all__ = ["ADAPTERS", "COCO17", "MEDIAPIPE33", "Joint", "PoseAdapter", "to_ntu25"]
