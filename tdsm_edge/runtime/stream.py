"""Streaming recognition: push pose frames one at a time, get a Prediction each time a window completes.

    stream = ActionStream(rec, window=64, stride=8, smoothing=0.5)
    for frame in pose_estimator:                 # (V, 3) or (M, V, 3) float camera coordinates, e.g. at 30 Hz
        pred = stream.push(frame)                # Prediction | None; at most one predict() per call
        if pred is not None: act(pred.label)
    stream.stats                                 # pushed, valid, skipped_by_reason, windows_scored, ...
    stream.reset()                               # e.g. when the tracked person changes

Every push is one time step. A bad frame (not an array, wrong dtype or shape, NaN/Inf, all zeros) never
raises: it is counted in `stats.skipped_by_reason`, logged (rate-limited) and stored as a *missing*
frame (all zeros: the preprocessing's "tracking lost" convention), so the window keeps the estimator's
time base and windows complete on a fixed schedule: the first after `window` pushes, then one every
`stride` pushes. A window with fewer than `min_valid` of its frames valid is not scored (counted in
`stats.windows_low_valid`, push returns None); nor is a window the recognizer refuses although its frames
passed (finite but huge coordinates that overflow the graphs; `stats.windows_failed`). numpy only; memory
is a preallocated ring buffer.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from tdsm_edge.errors import ConfigError, InputError
from tdsm_edge.skeleton.preprocess import NUM_BODIES

from .recognizer import Prediction, ZeroShotRecognizer, _prediction

log = logging.getLogger(__name__)

MAX_FRAMES = 100_000  # window, stride: about 55 minutes at 30 Hz (a window is one buffer of this many frames)

SKIP_REASONS = ("not_array", "dtype", "shape", "nonfinite", "all_zero")


@dataclass
class StreamStats:
    """Counters since construction or the last `reset()`."""

    pushed: int = 0  # push() calls (= time steps)
    valid: int = 0  # frames stored as given
    skipped_by_reason: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    windows_scored: int = 0  # windows run through the recognizer (= Predictions returned)
    windows_low_valid: int = 0  # complete windows not scored: fewer than min_valid valid frames
    windows_failed: int = 0  # complete windows the recognizer refused (InputError, e.g. coordinates so large
    # that the graphs overflow): not scored, push returns None

    @property
    def skipped(self) -> int:
        """Bad frames stored as missing, all reasons together."""
        return sum(self.skipped_by_reason.values())


class ActionStream:
    """A sliding window over a frame stream, scored by a `ZeroShotRecognizer` every `stride` frames."""

    def __init__(
        self,
        recognizer: ZeroShotRecognizer,
        window: int | None = None,
        stride: int = 8,
        smoothing: float = 0.0,
        min_valid: float = 0.5,
        log_every: int = 100,
    ) -> None:
        """
        Args:
            recognizer: a loaded recognizer with an encoder graph (skeleton windows in).
            window: frames per window (default: the bundle's window length, `preprocess.frames` in its
                manifest); other lengths are resampled to it by the recognizer's preprocessing.
            stride: frames between two scored windows (1 = score every frame once the window is full).
            smoothing: EMA factor in [0, 1) on the score vectors across scored windows:
                `s = smoothing * s_prev + (1 - smoothing) * errors`; 0 = no smoothing.
            min_valid: fraction (0, 1] of a window's frames that must be valid for it to be scored.
            log_every: a WARNING on the first skipped frame and then once per `log_every` skips.
        Raises:
            ConfigError: a bundle without an encoder graph, or an argument out of range.
        """
        pre = recognizer._preprocessing()  # ConfigError for a features-only bundle
        window = pre.frames if window is None else window
        for name, v, hi in (
            ("window", window, MAX_FRAMES),
            ("stride", stride, MAX_FRAMES),
            ("log_every", log_every, 2**62),
        ):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= hi:
                raise ConfigError(f"ActionStream {name} must be an int in [1, {hi}], got {str(v)[:40]!r}")
        for name, v in (("smoothing", smoothing), ("min_valid", min_valid)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ConfigError(f"ActionStream {name} must be a number, got {type(v).__name__} {v!r}")
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"ActionStream smoothing must be in [0, 1) (0 = none; 0.9 = heavy), got {smoothing!r}")
        if not 0.0 < min_valid <= 1.0:
            raise ConfigError(
                f"ActionStream min_valid must be in (0, 1], got {min_valid!r}; it is the fraction "
                "of a window's frames that must hold a skeleton"
            )
        self.recognizer = recognizer
        self.window, self.stride = int(window), int(stride)
        self.smoothing, self.min_valid, self.log_every = float(smoothing), float(min_valid), int(log_every)
        self._min_frames = max(1, math.ceil(self.min_valid * self.window))
        V = pre.layout.num_joints
        self._frame_shape = (NUM_BODIES, V, 3)
        self._buf = np.zeros((NUM_BODIES, self.window, V, 3), np.float32)  # ring buffer, slot = step % window
        self._ordered = np.zeros_like(self._buf)  # (M, W, V, 3) the window in time order
        self._valid = np.zeros(self.window, bool)  # (W,) per slot
        self.reset()

    # ------------------------------------------------------------ state
    @property
    def stats(self) -> StreamStats:
        """A snapshot of the counters."""
        s = self._stats
        return replace(s, skipped_by_reason=dict(s.skipped_by_reason))

    def reset(self) -> None:
        """Forget every frame, the smoothing state and the counters."""
        self._buf.fill(0)
        self._valid.fill(False)
        self._steps = 0  # frames in the current stream (next slot = steps % W)
        self._ema: np.ndarray | None = None  # (K,) smoothed errors
        self._ema_classes: tuple[str, ...] = ()
        self._stats = StreamStats()

    # ------------------------------------------------------------ streaming
    def push(self, frame) -> Prediction | None:
        """Add one frame; return a Prediction when it completes a window, else None.

        Args:
            frame: `(V, 3)` (one body) or `(M, V, 3)` float camera coordinates in the bundle's layout;
                a joint at exactly 0 is missing; bodies beyond 2 are dropped (as in preprocessing).
        Returns:
            The window's Prediction (errors smoothed when `smoothing > 0`; label, index and margin from
            those errors; `latency_ms` this call's wall time), or None. Never raises for a bad frame.
        """
        start = time.perf_counter()
        slot = self._steps % self.window
        reason = self._store(frame, slot)
        self._steps += 1
        st = self._stats
        st.pushed += 1
        if reason is None:
            st.valid += 1
        else:
            st.skipped_by_reason[reason] += 1
            n = st.skipped
            if n == 1 or n % self.log_every == 0:
                log.warning(
                    "ActionStream: frame %d skipped (%s), stored as missing; %d skipped so far %s",
                    st.pushed - 1,
                    reason,
                    n,
                    {k: v for k, v in st.skipped_by_reason.items() if v},
                )
        if self._steps < self.window or (self._steps - self.window) % self.stride:
            return None
        if int(self._valid.sum()) < self._min_frames:
            st.windows_low_valid += 1
            return None
        # slots slot+1 .. W-1 hold the oldest frames, 0 .. slot the newest
        W, k = self.window, slot + 1
        self._ordered[:, : W - k] = self._buf[:, k:]
        self._ordered[:, W - k :] = self._buf[:, :k]
        try:
            pred = self.recognizer.predict(self._ordered)
        except InputError as e:  # frames that pass the per-frame checks can still overflow the graphs together
            st.windows_failed += 1
            log.warning(
                "ActionStream: window ending at frame %d not scored (%d so far): %s",
                st.pushed - 1,
                st.windows_failed,
                e,
            )
            return None
        st.windows_scored += 1
        errors = self._smooth(pred)
        ms = (time.perf_counter() - start) * 1e3
        return _prediction(errors, pred.classes, ms, self.recognizer.open_set_threshold)

    def _store(self, frame, slot: int) -> str | None:
        """Write `frame` into `slot` (zeros when bad); return why it is bad, or None."""
        buf = self._buf[:, slot]  # (M, V, 3) a view
        try:
            a = np.asarray(frame)
        except (TypeError, ValueError):
            reason = "not_array"
        else:
            reason = self._check(a)
        if reason is None:
            if a.ndim == 2:
                a = a[None]  # (1, V, 3)
            m = min(a.shape[0], NUM_BODIES)
            with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf (no warning)
                buf[:m] = a[:m]  # casts to float32
            buf[m:] = 0
            if not np.isfinite(buf[:m]).all():
                reason = "nonfinite"
        if reason is not None:
            buf[:] = 0
        self._valid[slot] = reason is None
        return reason

    def _check(self, a: np.ndarray) -> str | None:
        if a.dtype.kind != "f":
            return "dtype"
        M, V, C = self._frame_shape
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[0] >= 1)) or a.shape[-2:] != (V, C):
            return "shape"
        if not np.isfinite(a).all():
            return "nonfinite"
        if not a.any():
            return "all_zero"
        return None

    def _smooth(self, pred: Prediction) -> np.ndarray:
        """(K,) float32 EMA of the score vectors; restarts when the active classes change."""
        if self.smoothing == 0.0:
            return pred.errors
        if self._ema is None or self._ema_classes != pred.classes:
            self._ema = np.array(pred.errors, np.float32)
            self._ema_classes = pred.classes
        else:
            self._ema = (self.smoothing * self._ema + (1.0 - self.smoothing) * pred.errors).astype(np.float32)
        return self._ema


__all__ = ["ActionStream", "StreamStats"]
