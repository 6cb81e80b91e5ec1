"""ActionStream on the tiny bundle: window schedule, equality with predict(), EMA smoothing, bad frames, reset, soak."""

from __future__ import annotations

import logging
import tracemalloc

import numpy as np
import pytest

from tdsm_edge.errors import ConfigError
from tdsm_edge.runtime import ActionStream, Prediction, ZeroShotRecognizer


@pytest.fixture(scope="module")
def rec(runtime_bundle) -> ZeroShotRecognizer:
    return ZeroShotRecognizer.load(runtime_bundle.dir, threads=1)


@pytest.fixture(scope="module")
def frames(runtime_bundle) -> np.ndarray:
    """One long synthact stream `(2, T_total, V, 3)` float32: the bundle-class clips back to back."""
    raw = runtime_bundle.windows(per_class=2, seed=11)  # (N, 2, T, V, 3)
    N, M, T, V, _ = raw.shape
    return np.ascontiguousarray(raw.transpose(1, 0, 2, 3, 4).reshape(M, N * T, V, 3), np.float32)


def _push_all(stream: ActionStream, frames) -> dict[int, Prediction]:
    """Push frames in order; {number of frames pushed so far: prediction} for each window that completed."""
    out = {}
    for t, f in enumerate(frames, start=1):
        p = stream.push(f)
        if p is not None:
            out[t] = p
    return out


@pytest.mark.parametrize("window, stride", [(None, 8), (20, 5)])
def test_windows_complete_on_schedule_and_equal_predict(rec, runtime_bundle, frames, window, stride):
    stream = ActionStream(rec, window=window, stride=stride)
    W = runtime_bundle.frames if window is None else window
    assert stream.window == W
    n = W + 3 * stride + stride // 2
    preds = _push_all(stream, frames[:, :n].transpose(1, 0, 2, 3))  # (M, V, 3) frames
    assert list(preds) == [W + i * stride for i in range(4)]
    for t, p in preds.items():
        ref = rec.predict(frames[:, t - W : t])  # the same frames as one (M, W, V, 3) window
        np.testing.assert_allclose(p.errors, ref.errors, rtol=1e-6, atol=0)
        assert (p.label, p.index) == (ref.label, ref.index) and p.classes == tuple(rec.classes)
        assert p.margin == pytest.approx(ref.margin, rel=1e-5, abs=1e-7) and p.latency_ms > 0
    s = stream.stats
    assert (s.pushed, s.valid, s.skipped, s.windows_scored, s.windows_low_valid) == (n, n, 0, 4, 0)


def test_one_body_frames_equal_a_one_body_window(rec, runtime_bundle, frames):
    W = runtime_bundle.frames
    stream = ActionStream(rec, stride=4)
    preds = _push_all(stream, frames[0, : W + 4])  # (V, 3) frames
    assert list(preds) == [W, W + 4]
    for t, p in preds.items():
        np.testing.assert_allclose(p.errors, rec.predict(frames[0, t - W : t]).errors, rtol=1e-6, atol=0)


def test_smoothing_is_an_ema_of_the_score_vectors(rec, runtime_bundle, frames):
    W, stride, a = runtime_bundle.frames, 4, 0.6
    n = W + 5 * stride
    preds = _push_all(ActionStream(rec, stride=stride, smoothing=a), frames[:, :n].transpose(1, 0, 2, 3))
    assert len(preds) == 6
    raw = [rec.predict(frames[:, t - W : t]).errors.astype(np.float64) for t in preds]
    ema = raw[0]
    for i, p in enumerate(preds.values()):
        if i:
            ema = a * ema + (1 - a) * raw[i]
        np.testing.assert_allclose(p.errors, ema, rtol=1e-5, atol=1e-7)
        assert p.index == int(np.argmin(p.errors)) and p.label == rec.classes[p.index]
        s = np.sort(p.errors)
        assert p.margin == pytest.approx(float(s[1] - s[0]), rel=1e-5, abs=1e-7)
    # smoothing really changes something: a later smoothed vector differs from its raw scores
    assert not np.allclose(list(preds.values())[-1].errors, raw[-1], rtol=1e-4, atol=0)


def test_bad_frames_are_counted_logged_and_stored_as_missing(rec, runtime_bundle, frames, caplog):
    W = runtime_bundle.frames
    good = frames[:, :W].transpose(1, 0, 2, 3).copy()  # (W, M, V, 3)
    nan = good[3].copy()
    nan[0, 2, 1] = np.nan
    bad = {
        3: nan,
        5: np.zeros_like(good[5]),
        7: good[7][:, :-1],
        9: good[9].astype(np.int32),
        11: "not a frame",
        12: [[1.0, 2.0], [3.0]],
        13: np.full_like(good[13], np.inf),
    }
    stream = ActionStream(rec, stride=4, log_every=3)
    with caplog.at_level(logging.WARNING, logger="tdsm_edge.runtime.stream"):
        preds = _push_all(stream, [bad.get(i, good[i]) for i in range(W)])
    assert list(preds) == [W]  # bad frames still advance time: the window completes on schedule
    s = stream.stats
    assert s.skipped_by_reason == {"not_array": 1, "dtype": 2, "shape": 1, "nonfinite": 2, "all_zero": 1}
    assert (s.pushed, s.valid, s.skipped, s.windows_scored) == (W, W - 7, 7, 1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3  # skips 1, 3 and 6 of 7 (log_every=3)
    expect = frames[:, :W].copy()  # the bad frames as missing (all zeros)
    expect[:, sorted(bad)] = 0
    np.testing.assert_allclose(preds[W].errors, rec.predict(expect).errors, rtol=1e-6, atol=0)


def test_windows_with_too_few_valid_frames_are_not_scored(rec, runtime_bundle, frames):
    W = runtime_bundle.frames
    stream = ActionStream(rec, stride=W, min_valid=0.5)
    zero = np.zeros_like(frames[:, 0])
    seq = [frames[:, t] if t < W // 2 - 1 else zero for t in range(W)]  # W/2 - 1 valid frames < half
    assert _push_all(stream, seq) == {}
    assert stream.stats.windows_low_valid == 1 and stream.stats.windows_scored == 0
    # the next window: W/2 valid frames (the newest ones) is exactly enough
    assert list(_push_all(stream, [zero] * (W // 2) + [frames[:, t] for t in range(W // 2)])) == [W]


def test_reset_clears_frames_smoothing_and_stats(rec, runtime_bundle, frames):
    W = runtime_bundle.frames
    seq = frames[:, : W + 8].transpose(1, 0, 2, 3)
    stream = ActionStream(rec, stride=8, smoothing=0.5)
    first = _push_all(stream, seq)
    stream.push(np.full_like(seq[0], np.nan))
    stream.reset()
    s = stream.stats
    assert (s.pushed, s.valid, s.skipped, s.windows_scored) == (0, 0, 0, 0)
    assert all(stream.push(f) is None for f in seq[: W - 1])  # the buffer starts empty again
    again = _push_all(stream, seq[W - 1 :])
    assert [t + W - 1 for t in again] == list(first)
    for a, b in zip(first.values(), again.values()):  # the same smoothed scores: the EMA restarted too
        np.testing.assert_allclose(a.errors, b.errors, rtol=1e-6, atol=0)


def test_bad_arguments_are_config_errors(rec):
    for kw, match in [
        ({"window": 0}, "window"),
        ({"stride": 0}, "stride"),
        ({"stride": 2.5}, "stride"),
        ({"smoothing": 1.0}, "smoothing"),
        ({"min_valid": 0.0}, "min_valid"),
    ]:
        with pytest.raises(ConfigError, match=match):
            ActionStream(rec, **kw)


def test_soak_10k_frames_with_bad_frames_memory_stable(rec, runtime_bundle, frames):
    """10,000 frames, ~5% NaN / all-zero: every complete window scored, no memory growth after warm-up."""
    W, stride, n = runtime_bundle.frames, 8, 10_000
    rng = np.random.default_rng(0)
    kinds = rng.choice(3, size=n, p=[0.95, 0.025, 0.025])  # 0 good, 1 NaN, 2 zeros
    T = frames.shape[1]
    nan = np.full_like(frames[:, 0], np.nan)
    zero = np.zeros_like(frames[:, 0])
    stream = ActionStream(rec, stride=stride, smoothing=0.3)
    scored, base = 0, None
    tracemalloc.start()
    try:
        for t in range(n):
            f = frames[:, t % T] if kinds[t] == 0 else (nan if kinds[t] == 1 else zero)
            scored += stream.push(f) is not None
            if t == 1999:
                base = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    s = stream.stats
    expected = 1 + (n - W) // stride
    assert scored == s.windows_scored == expected and s.windows_low_valid == 0
    blank = ~frames.any(axis=(0, 2, 3))[np.arange(n) % T] & (kinds == 0)  # the clips' own empty frames
    assert s.pushed == n and s.valid == int(((kinds == 0) & ~blank).sum())
    assert s.skipped_by_reason["nonfinite"] == int((kinds == 1).sum())
    assert s.skipped_by_reason["all_zero"] == int((kinds == 2).sum() + blank.sum())
    assert s.skipped == s.skipped_by_reason["nonfinite"] + s.skipped_by_reason["all_zero"]
    assert peak - base < 5 * 2**20, f"traced memory grew by {(peak - base) / 2**20:.1f} MiB over 8,000 frames"
