"""COCO-17 / MediaPipe-33 → NTU-25 adapters: joint by joint, derived and missing joints, axes, input errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.skeleton import NTU25
from tdsm_edge.skeleton.adapters import ADAPTERS, COCO17, MEDIAPIPE33, to_ntu25

J = NTU25.index
# (NTU joint, source index), written out from the COCO / BlazePose keypoint tables, not from the adapter
COCO_DIRECT = [
    ("ShoulderLeft", 5),
    ("ShoulderRight", 6),
    ("ElbowLeft", 7),
    ("ElbowRight", 8),
    ("WristLeft", 9),
    ("WristRight", 10),
    ("HipLeft", 11),
    ("HipRight", 12),
    ("KneeLeft", 13),
    ("KneeRight", 14),
    ("AnkleLeft", 15),
    ("AnkleRight", 16),
]
COCO_ZERO = ["HandLeft", "HandRight", "HandTipLeft", "HandTipRight", "ThumbLeft", "ThumbRight", "FootLeft", "FootRight"]
MP_DIRECT = [
    ("ShoulderLeft", 11),
    ("ShoulderRight", 12),
    ("ElbowLeft", 13),
    ("ElbowRight", 14),
    ("WristLeft", 15),
    ("WristRight", 16),
    ("HipLeft", 23),
    ("HipRight", 24),
    ("KneeLeft", 25),
    ("KneeRight", 26),
    ("AnkleLeft", 27),
    ("AnkleRight", 28),
    ("ThumbLeft", 21),
    ("ThumbRight", 22),
    ("HandTipLeft", 19),
    ("HandTipRight", 20),
    ("FootLeft", 31),
    ("FootRight", 32),
]
NO_SHIFT = dict(axes="ntu", shift=(0.0, 0.0, 0.0))


def _points(S: int, lead=(3,), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (*lead, S, 3))  # (..., S, 3) float64, none exactly 0


def _trunk(p: np.ndarray, face: list[int], hips=(11, 12), shoulders=(5, 6)) -> dict[str, np.ndarray]:
    """The derived trunk joints, computed here from their definitions."""
    base, top = p[..., hips, :].mean(-2), p[..., shoulders, :].mean(-2)
    head = p[..., face, :].mean(-2)
    return {
        "SpineBase": base,
        "SpineShoulder": top,
        "SpineMid": (base + top) / 2,
        "Head": head,
        "Neck": (2 * top + head) / 3,
    }


def test_every_ntu_joint_has_exactly_one_documented_rule():
    assert sorted(ADAPTERS) == ["coco17", "mediapipe33"]
    for a in ADAPTERS.values():
        d = a.describe()
        assert list(d) == list(NTU25.joint_names)
        assert all(d[n].startswith(("direct:", "derived:", "missing (0):")) for n in d)
    assert {n for n, t in COCO17.describe().items() if t.startswith("missing")} == set(COCO_ZERO)
    assert not any(t.startswith("missing") for t in MEDIAPIPE33.describe().values())


def test_coco17_direct_joints_value_by_value():
    p = _points(17)
    out = to_ntu25(p, "coco17", **NO_SHIFT)
    assert out.shape == (3, 25, 3) and out.dtype == np.float32
    for name, k in COCO_DIRECT:
        np.testing.assert_array_equal(out[:, J(name)], p[:, k].astype(np.float32), err_msg=name)


def test_coco17_derived_and_missing_joints():
    p = _points(17, seed=1)
    out = to_ntu25(p, "coco17", **NO_SHIFT)
    for name, want in _trunk(p, face=[0, 1, 2, 3, 4]).items():
        np.testing.assert_allclose(out[:, J(name)], want, rtol=0, atol=1e-6, err_msg=name)
    for name in COCO_ZERO:
        assert not out[:, J(name)].any(), name  # exactly 0: the missing-joint marker


def test_mediapipe33_direct_and_derived_joints_value_by_value():
    p = _points(33, seed=2)
    out = to_ntu25(p, "mediapipe33", **NO_SHIFT)
    for name, k in MP_DIRECT:
        np.testing.assert_array_equal(out[:, J(name)], p[:, k].astype(np.float32), err_msg=name)
    want = _trunk(p, face=[0, 2, 5, 7, 8], hips=(23, 24), shoulders=(11, 12))
    want["HandLeft"], want["HandRight"] = p[:, [15, 17, 19]].mean(1), p[:, [16, 18, 20]].mean(1)
    for name, w in want.items():
        np.testing.assert_allclose(out[:, J(name)], w, rtol=0, atol=1e-6, err_msg=name)


def test_opencv_axes_rotate_into_ntu_axes_without_mirroring():
    # A subject facing a camera, in opencv axes: its left shoulder on the image's right (larger x), head up (y < 0).
    p = np.zeros((17, 3))  # all missing but these:
    p[5], p[6] = (0.2, -0.4, 3.0), (-0.2, -0.4, 3.0)  # left / right shoulder
    p[11], p[12] = (0.1, 0.1, 3.0), (-0.1, 0.1, 3.0)  # left / right hip
    p[0] = (0.0, -0.6, 2.9)  # nose
    out = to_ntu25(p, "coco17")
    np.testing.assert_allclose(out[J("ShoulderLeft")], [-0.2, 0.4, 3.0], rtol=1e-6)  # (-x, -y, z)
    assert out[J("Head"), 1] > out[J("SpineShoulder"), 1] > out[J("SpineBase"), 1]  # y up
    assert out[J("ShoulderRight"), 0] > out[J("ShoulderLeft"), 0]
    # the training data's convention: a synthact subject facing the camera has its right shoulder at larger x
    from tdsm_edge.data.synthact import Nuisance, generate

    x = generate([0], 1, seed=0, frames=4, nuisance=Nuisance.clean())[0][0, 0, 0]  # (V, 3) NTU frame
    assert x[J("ShoulderRight"), 0] > x[J("ShoulderLeft"), 0] and x[J("Head"), 1] > x[J("SpineBase"), 1]


def test_low_confidence_nan_and_zero_keypoints_become_missing():
    p = _points(17, lead=(), seed=3)  # one frame (17, 3)
    conf = np.full(17, 0.9)
    conf[11] = 0.29  # left hip below the default threshold 0.3
    conf[13] = np.nan  # left knee: NaN confidence
    conf[6] = 0.3  # right shoulder exactly at the threshold: kept
    p[0, 1] = np.nan  # nose: a NaN coordinate
    p[15] = 0.0  # left ankle: the estimator's "not found"
    p[9, 2] = np.inf  # left wrist
    out = to_ntu25(p, "coco17", confidence=conf, **NO_SHIFT)
    for name in ["HipLeft", "KneeLeft", "AnkleLeft", "WristLeft", "SpineBase", "SpineMid"]:
        assert not out[J(name)].any(), name
    np.testing.assert_array_equal(out[J("ShoulderRight")], p[6].astype(np.float32))
    np.testing.assert_allclose(out[J("Head")], p[1:5].mean(0), atol=1e-6)  # the tracked face points only
    np.testing.assert_allclose(out[J("SpineShoulder")], p[5:7].mean(0), atol=1e-6)
    assert np.isfinite(out).all()
    conf[:] = 0.0
    conf[[5, 6]] = 1.0
    out = to_ntu25(p, "coco17", confidence=conf, threshold=0.5, **NO_SHIFT)
    assert not out[J("Head")].any() and not out[J("Neck")].any()  # no face point: no head, no neck
    assert out[J("SpineShoulder")].any()


def test_mediapipe_visibility_threshold_and_default_shift():
    p = _points(33, lead=(2,), seed=4)
    p[:, 24] = -p[:, 23]  # hip-centred world landmarks: mid-hip exactly (0, 0, 0)
    vis = np.ones((2, 33))
    vis[1, 15] = 0.4  # frame 1: left wrist below MediaPipe's 0.5
    out = to_ntu25(p, "mediapipe33", confidence=vis)
    np.testing.assert_allclose(out[0, J("SpineBase")], [0.0, 0.0, 3.0], atol=1e-6)  # tracked thanks to the shift
    np.testing.assert_allclose(out[0, J("ShoulderLeft")], p[0, 11] * [-1, -1, 1] + [0, 0, 3], rtol=1e-6)
    assert out[0, J("WristLeft")].any() and out[0, J("HandLeft")].any()
    assert not out[1, J("WristLeft")].any() and not out[1, J("HandLeft")].any()
    assert out[1, J("HandTipLeft")].any()  # the index point itself is still visible
    unshifted = to_ntu25(p, "mediapipe33", confidence=vis, shift=(0, 0, 0))
    assert not unshifted[0, J("SpineBase")].any()  # why the default shift exists


def test_intrinsics_back_project_pixels_and_depth():
    fx, fy, cx, cy = 500.0, 400.0, 320.0, 240.0
    uvd = np.tile([cx, cy, 2.0], (17, 1))
    uvd[5] = (cx + 100, cy - 80, 2.0)  # left shoulder: X = 0.4, Y = -0.4 (opencv)
    uvd[6, 2] = 0.0  # right shoulder: no depth
    out = to_ntu25(uvd, "coco17", intrinsics=(fx, fy, cx, cy))
    np.testing.assert_allclose(out[J("ShoulderLeft")], [-0.4, 0.4, 2.0], rtol=1e-6)
    assert not out[J("ShoulderRight")].any() and not out[J("SpineShoulder")].any()
    ints = to_ntu25(np.round(uvd).astype(np.int32), "coco17", intrinsics=(fx, fy, cx, cy))
    np.testing.assert_array_equal(ints, out)  # integer pixel coordinates are fine


def test_leading_dims_and_the_callers_array_is_untouched():
    p = _points(17, lead=(2, 5), seed=5)  # (M, T, 17, 3)
    p[0, 1, 3] = np.nan
    before = p.copy()
    out = to_ntu25(p, "coco17")
    assert out.shape == (2, 5, 25, 3)
    np.testing.assert_array_equal(out[1, 2], to_ntu25(p[1, 2], "coco17"))  # one frame (17, 3) -> (25, 3)
    np.testing.assert_array_equal(p, before)
    assert to_ntu25(np.zeros((0, 17, 3)), "coco17").shape == (0, 25, 3)
    assert to_ntu25(np.asfortranarray(p[:, ::2]), "coco17").shape == (2, 3, 25, 3)


def test_huge_coordinates_beyond_float32_are_missing_not_inf():
    p = _points(17, lead=(), seed=6)
    p[7] = 1e300  # left elbow: finite in float64, inf in float32
    p[8] = 1e30  # right elbow: fits float32
    out = to_ntu25(p, "coco17", **NO_SHIFT)
    assert np.isfinite(out).all() and not out[J("ElbowLeft")].any()
    np.testing.assert_allclose(out[J("ElbowRight")], 1e30, rtol=1e-6)


@pytest.mark.parametrize(
    "points, match",
    [
        (np.zeros((4, 18, 3)), "takes 17 keypoints"),
        (np.zeros((4, 17, 2)), "depth channel"),
        (np.zeros((4, 17, 4)), "confidence column separately"),
        (np.zeros((17,)), "expected"),
        (np.zeros((4, 17, 3), bool), "dtype bool"),
        (np.zeros((4, 17, 3), complex), "dtype complex"),
        (np.zeros((4, 17, 3), object), "dtype object"),
        (np.full((4, 17, 3), "a"), "dtype <U1"),
        ([[1.0, 2.0, 3.0], [1.0, 2.0]], "cannot be read"),
        (None, "dtype object"),
    ],
)
def test_bad_points_raise_input_error(points, match):
    with pytest.raises(InputError, match=match):
        to_ntu25(points, "coco17")


def test_bad_confidence_and_options():
    p = _points(17)
    with pytest.raises(InputError, match="one confidence score per keypoint"):
        to_ntu25(p, "coco17", confidence=np.ones((3, 16)))
    with pytest.raises(InputError, match="dtype"):
        to_ntu25(p, "coco17", confidence=np.full((3, 17), "x"))
    np.testing.assert_array_equal(to_ntu25(p, "coco17", confidence=np.ones((3, 17), bool)), to_ntu25(p, "coco17"))
    with pytest.raises(ConfigError, match="unknown keypoint source"):
        to_ntu25(p, "openpose25")
    for bad in (np.nan, "0.5", True):
        with pytest.raises(ConfigError, match="threshold"):
            to_ntu25(p, "coco17", threshold=bad)
    with pytest.raises(ConfigError, match="axes"):
        to_ntu25(p, "coco17", axes="y_up")
    with pytest.raises(ConfigError, match="axes='opencv'"):
        to_ntu25(p, "coco17", axes="ntu", intrinsics=(1, 1, 0, 0))
    with pytest.raises(ConfigError, match="focal"):
        to_ntu25(p, "coco17", intrinsics=(0, 1, 0, 0))
    with pytest.raises(ConfigError, match="intrinsics must be 4"):
        to_ntu25(p, "coco17", intrinsics=(1, 1, 0))
    with pytest.raises(ConfigError, match="shift must be 3"):
        to_ntu25(p, "coco17", shift=(0, np.inf, 0))


def test_adapters_never_import_torch():
    code = (
        "import sys; from tdsm_edge.runtime import to_ntu25; import numpy as np; "
        "to_ntu25(np.ones((2, 33, 3)), 'mediapipe33'); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
