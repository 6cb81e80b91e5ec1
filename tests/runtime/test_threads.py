"""One recognizer shared by 8 threads gives bitwise the results of the same calls run one after another."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tdsm_edge.runtime import ZeroShotRecognizer

THREADS, CALLS = 8, 200
P_PREDICT = 0.25  # the rest are score_features calls (cheaper: no preprocessing, no encoder)


@pytest.fixture(scope="module", params=[1, 2], ids=["intra1", "intra2"])
def rec(runtime_bundle, request) -> ZeroShotRecognizer:
    """Its own recognizer (no class subset from other tests); 1 and 2 ORT intra-op threads."""
    return ZeroShotRecognizer.load(runtime_bundle.dir, threads=request.param)


def _calls(runtime_bundle, n: int, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """n calls: ("predict", window (M, T, V, 3)) or ("features", z (B, Dz), B in 1..4), in a seeded random mix."""
    rng = np.random.default_rng(seed)
    raw = runtime_bundle.windows(per_class=2, seed=21)  # (10, 2, T, V, 3)
    z = runtime_bundle.features(raw)  # (10, Dz)
    z = np.concatenate([z, z * 1.5 + 0.1, z[::-1] - 0.2])  # (30, Dz) distinct rows
    out = []
    for _ in range(n):
        if rng.random() < P_PREDICT:
            w = raw[rng.integers(len(raw))]
            out.append(("predict", w[:, : rng.integers(4, w.shape[1] + 1)]))  # T in 4..16 (resampled to 16)
        else:
            out.append(("features", z[rng.choice(len(z), size=rng.integers(1, 5), replace=False)]))
    return out


def _run(rec: ZeroShotRecognizer, call: tuple[str, np.ndarray]) -> np.ndarray:
    kind, x = call
    if kind == "predict":
        p = rec.predict(x)
        assert p.label == rec.classes[p.index]
        return p.errors  # (K,)
    return rec.score_features(x)  # (B, K)


def test_eight_threads_equal_serial_bitwise(rec, runtime_bundle):
    calls = _calls(runtime_bundle, THREADS * CALLS)
    serial = [_run(rec, c) for c in calls]
    threaded: list[np.ndarray | None] = [None] * len(calls)
    errors: list[BaseException] = []
    start, lock = threading.Barrier(THREADS), threading.Lock()
    flight = {"now": 0, "max": 0}  # calls in progress at once

    def work(t: int) -> None:
        try:
            start.wait()  # all threads call at once
            for i in range(t, len(calls), THREADS):  # interleaved: neighbours overlap in time
                with lock:
                    flight["now"] += 1
                    flight["max"] = max(flight["max"], flight["now"])
                threaded[i] = _run(rec, calls[i])
                with lock:
                    flight["now"] -= 1
        except BaseException as e:  # noqa: BLE001 - reported below, with the thread's traceback
            errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in pool), "a thread hung"
    if errors:
        raise errors[0]
    assert flight["max"] >= 2, "the calls never overlapped: the test did not exercise concurrency"
    kinds = [k for k, _ in calls]
    assert 0.15 < kinds.count("predict") / len(calls) < 0.35  # both kinds really ran
    diff = [i for i, (a, b) in enumerate(zip(serial, threaded)) if not np.array_equal(a, b)]
    assert not diff, (
        f"{len(diff)} of {len(calls)} calls differ from serial, e.g. call {diff[0]} ({kinds[diff[0]]}): "
        f"max |diff| {np.abs(serial[diff[0]] - threaded[diff[0]]).max():.3g}"
    )
