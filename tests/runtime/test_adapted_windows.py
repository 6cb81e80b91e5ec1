"""Pose-estimator keypoints adapted to NTU-25 (skeleton.adapters) run through the recognizer and the stream."""

from __future__ import annotations

import numpy as np
import pytest

from tdsm_edge.runtime import ActionStream, ZeroShotRecognizer, to_ntu25
from tdsm_edge.skeleton import NTU25
from tdsm_edge.skeleton.adapters import COCO17_KEYPOINTS, MEDIAPIPE33_KEYPOINTS

# estimator keypoint part -> the NTU joint it is faked from (face points: Head)
_FROM_NTU = {
    "shoulder": "Shoulder",
    "elbow": "Elbow",
    "wrist": "Wrist",
    "hip": "Hip",
    "knee": "Knee",
    "ankle": "Ankle",
    "thumb": "Thumb",
    "index": "HandTip",
    "pinky": "Hand",
    "heel": "Ankle",
    "foot_index": "Foot",
}


def _ntu_joint(keypoint: str) -> str:
    if keypoint in ("nose", "mouth_left", "mouth_right") or "eye" in keypoint or "ear" in keypoint:
        return "Head"
    side, part = keypoint.split("_", 1)  # "left_foot_index" -> FootLeft
    return _FROM_NTU[part] + side.title()


@pytest.fixture(scope="module")
def rec(runtime_bundle) -> ZeroShotRecognizer:
    return ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)


def _estimator_view(ntu: np.ndarray, names: tuple[str, ...], hip_centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fake estimator output from an NTU window `(T, 25, 3)`: keypoints `(T, S, 3)` in opencv axes and `(T, S)`
    confidences (0 where the NTU joint is missing)."""
    T = len(ntu)
    pts, conf = np.zeros((T, len(names), 3)), np.zeros((T, len(names)))
    for k, n in enumerate(names):
        src = ntu[:, NTU25.index(_ntu_joint(n))]  # (T, 3)
        pts[:, k], conf[:, k] = src, src.any(-1)
    if hip_centred:  # MediaPipe world landmarks: origin at the mid-hip of each frame
        pts -= pts[:, [names.index("left_hip"), names.index("right_hip")]].mean(1, keepdims=True)
    return pts * [-1.0, -1.0, 1.0], conf  # NTU -> opencv axes


def test_adapted_mediapipe_window_predicts_and_ignores_the_shift(rec, runtime_bundle):
    raw = runtime_bundle.windows(per_class=1, seed=5)[:, 0]  # (N, T, 25, 3) first body
    for ntu in raw[:3]:
        mp, vis = _estimator_view(ntu, MEDIAPIPE33_KEYPOINTS, hip_centred=True)
        window = to_ntu25(mp, "mediapipe33", confidence=vis)  # (T, 25, 3)
        assert window.shape == ntu.shape and window.dtype == np.float32
        tracked = ntu.any(-1)  # (T, 25)
        for j in ("ElbowLeft", "KneeRight", "ThumbLeft"):  # direct joints, up to the hip centring
            i = NTU25.index(j)
            ok = tracked[:, i] & tracked[:, 12] & tracked[:, 16]  # the joint and both hips
            np.testing.assert_allclose(
                window[ok, i] - window[ok, 0], ntu[ok, i] - ntu[ok][:, [12, 16]].mean(1), atol=1e-5
            )  # relative to SpineBase = mid-hip
        pred = rec.predict(window)
        assert pred.label in rec.classes and np.isfinite(pred.errors).all() and pred.margin >= 0
        moved = rec.predict(to_ntu25(mp, "mediapipe33", confidence=vis, shift=(0.7, -1.2, 4.5)))
        np.testing.assert_allclose(moved.errors, pred.errors, rtol=1e-4, atol=0)


def test_adapted_coco_frames_stream_and_batch(rec, runtime_bundle):
    raw = runtime_bundle.windows(per_class=1, seed=6)[:, 0]  # (N, T, 25, 3)
    coco = [_estimator_view(ntu, COCO17_KEYPOINTS, hip_centred=False) for ntu in raw[:2]]
    windows = [to_ntu25(p, "coco17", confidence=c) for p, c in coco]  # 8 joints always missing
    preds = rec.predict_batch(windows)
    for w, p in zip(windows, preds):
        assert not w[:, [NTU25.index("HandLeft"), NTU25.index("FootRight")]].any()
        assert p.label in rec.classes and np.isfinite(p.errors).all()
        np.testing.assert_allclose(rec.predict(w).errors, p.errors, rtol=1e-5, atol=0)
    stream = ActionStream(rec, stride=4)
    p, c = coco[0]
    c[3] = 0.0  # one frame with nothing confident
    out = [stream.push(to_ntu25(p[t], "coco17", confidence=c[t])) for t in range(len(p))]  # (17, 3) -> (25, 3)
    assert stream.stats.skipped_by_reason["all_zero"] == 1 and stream.stats.valid == len(p) - 1
    assert out[-1] is not None and out[-1].label in rec.classes
