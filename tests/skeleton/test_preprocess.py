"""Numpy preprocessing: shapes, centring, exact resampling, missing joints, batch == per sample."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tdsm_edge.errors import InputError
from tdsm_edge.skeleton import NTU25
from tdsm_edge.skeleton.preprocess import preprocess, preprocess_batch

V = 25


def _ramp(T: int, M: int = 1, seed: int = 0) -> np.ndarray:
    """(M, T, V, 3) coordinates linear in time: x(t) = a + b t, never exactly 0."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(1.0, 2.0, (M, 1, V, 3))
    b = rng.uniform(0.1, 0.2, (M, 1, V, 3))
    return a + b * np.arange(T)[None, :, None, None]


def test_shapes_single_body_is_padded():
    out = preprocess(_ramp(10)[0], 16)  # (T, V, 3)
    assert out.shape == (3, 16, V, 2) and out.dtype == np.float32
    assert np.all(out[..., 1] == 0)
    three = preprocess(_ramp(10, M=3), 8)  # extra bodies are dropped
    assert three.shape == (3, 8, V, 2)


def test_centred_on_spine_mid_of_first_body_first_frame():
    x = _ramp(12, M=2)
    out = preprocess(x, 12)
    origin = x[0, 0, NTU25.center_joint]
    assert np.allclose(out[:, 0, NTU25.center_joint, 0], 0.0)
    np.testing.assert_allclose(out[:, :, :, 1].transpose(1, 2, 0), x[1] - origin, rtol=0, atol=1e-5)


def test_resampling_is_exact_linear_interpolation_of_the_valid_range():
    T, F = 11, 6
    x = _ramp(T)
    x[:, :2] = 0.0  # invalid leading frames
    x[:, 9:] = 0.0  # invalid trailing frames: valid range is 2..8
    out = preprocess(x, F)  # (3, F, V, 2)
    s = 2 + np.arange(F) * (8 - 2) / (F - 1)  # source times
    rng = np.random.default_rng(0)
    a = rng.uniform(1.0, 2.0, (1, 1, V, 3))
    b = rng.uniform(0.1, 0.2, (1, 1, V, 3))
    want = a[0, 0] + b[0, 0] * s[:, None, None]  # (F, V, 3)
    want = want - (a[0, 0, NTU25.center_joint] + b[0, 0, NTU25.center_joint] * 2)
    np.testing.assert_allclose(out[..., 0].transpose(1, 2, 0), want, atol=1e-5)


def test_upsampling_hits_source_frames_exactly():
    x = _ramp(4)
    out = preprocess(x, 7)  # source times 0, .5, 1, ..., 3
    centred = x[0] - x[0, 0, NTU25.center_joint]
    np.testing.assert_allclose(out[:, ::2, :, 0].transpose(1, 2, 0), centred, atol=1e-5)
    np.testing.assert_allclose(out[:, 1, :, 0].T, 0.5 * (centred[0] + centred[1]), atol=1e-5)


def test_missing_joints_stay_zero_and_never_blend():
    x = _ramp(5)
    x[0, 2, 7] = 0.0  # HandLeft lost in frame 2
    out = preprocess(x, 9)  # source times 0, .5, 1, ..., 4
    hand = np.any(out[:, :, 7, 0] != 0, axis=0)  # (9,)
    # frames drawing on source frame 2 with non-zero weight: s = 1.5, 2, 2.5
    assert hand.tolist() == [True, True, True, False, False, False, True, True, True]
    assert np.all(np.any(out[:, :, 6, 0] != 0, axis=0))


def test_origin_falls_back_when_the_centre_joint_starts_missing():
    x = _ramp(6)
    x[0, :2, NTU25.center_joint] = 0.0
    out = preprocess(x, 6)
    assert np.allclose(out[:, 2, NTU25.center_joint, 0], 0.0)  # first frame where SpineMid is tracked


def test_batch_equals_stacked_single_samples():
    rng = np.random.default_rng(3)
    batch = np.stack([_ramp(20, M=2, seed=i) for i in range(5)])  # (5, 2, 20, V, 3)
    batch[0, :, :4] = 0.0  # different valid ranges per sample
    batch[1, :, 15:] = 0.0
    batch[2, 1] = 0.0  # single body
    batch[3, 0, 7, [3, 9]] = 0.0  # missing joints
    batch[4] += rng.normal(0, 0.1, batch[4].shape)
    for align in (False, True):
        got = preprocess_batch(batch, 13, align_view=align)
        want = np.stack([preprocess(s, 13, align_view=align) for s in batch])
        np.testing.assert_array_equal(got, want)


def test_align_view_makes_the_hip_line_parallel_to_x():
    x = _ramp(8)
    hl, hr = NTU25.index("HipLeft"), NTU25.index("HipRight")
    ang = 0.7
    rot = np.array([[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]])
    a = preprocess(x, 8, align_view=True)
    b = preprocess(x @ rot.T, 8, align_view=True)  # the same motion seen from another angle
    np.testing.assert_allclose(a, b, atol=1e-5)
    hip = a[:, 0, hr, 0] - a[:, 0, hl, 0]
    assert hip[0] > 0 and abs(hip[2]) < 1e-6


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((4, V)), "shaped"),
        (np.ones((1, 4, 17, 3)), "17 joints"),
        (np.full((1, 4, V, 3), np.nan), "NaN"),
        (np.zeros((1, 4, V, 3)), "no valid frame"),
        (np.ones((1, 4, V, 2)), "shaped"),
    ],
)
def test_input_errors_say_what_is_wrong(bad, match):
    with pytest.raises(InputError, match=match):
        preprocess(bad, 8)


def test_frames_must_be_positive_and_batch_5d():
    with pytest.raises(InputError, match="frames"):
        preprocess(_ramp(4), 0)
    with pytest.raises(InputError, match="batch"):
        preprocess_batch(_ramp(4), 8)


def test_preprocess_never_imports_torch():
    code = (
        "import sys, numpy as np; import tdsm_edge.skeleton.preprocess as p; "
        "p.preprocess(np.ones((4, 25, 3)), 8); assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
