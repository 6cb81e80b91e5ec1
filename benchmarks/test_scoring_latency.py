"""Zero-shot scoring latency: the paper's loop against the folded scorer and every runtime backend.

Each case (preset, K classes, J noises, B samples) times one scoring call, features → `(B, K)`
errors, for each method on the same weights in the same run:

    reference     `tdsm_edge.scoring.score_reference`: the published loop, J × K denoiser forwards
                  over the batch (torch fp32, standardisation included)
    folded-torch  `FoldedScorer` (torch fp32) over precomputed class tables: ONE batched call
    onnxruntime / torch / tensorrt
                  `ZeroShotRecognizer.load(bundle, backend=...)`, `set_active_classes(first K)`,
                  `score_features(z)`; one fp32 bundle of 60 classes per (preset, J). A backend that
                  `load` refuses (ConfigError / MissingDependencyError) is skipped with the reason.

Every method is also checked against the reference before it is timed (fp32 scores within
RTOL/ATOL; the same argmin wherever the reference's best two classes are further apart than that
tolerance). Results carry preset / K / J / B / backend in `extra_info` for `python -m benchmarks.report`.
"""

from __future__ import annotations

import time

import pytest

from benchmarks.problem import BATCHES, CLASSES, NOISES, PRESETS, check_against_reference, is_slow, reference_gflop

METHODS = ("reference", "folded-torch", "onnxruntime", "torch", "tensorrt")
RUNTIME_BACKENDS = ("onnxruntime", "torch", "tensorrt")
MAX_ROUNDS = 200
LONG_CALL_S = 2.0  # a case whose first call takes longer is timed in budget / first rounds, maybe one

CASES = [
    pytest.param(
        preset, K, J, B, id=f"{preset}-K{K}-J{J}-B{B}", marks=[pytest.mark.slow] if is_slow(preset, B, K, J) else []
    )
    for preset in PRESETS
    for J in NOISES
    for B in BATCHES
    for K in CLASSES
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("preset,K,J,B", CASES)
def test_scoring(benchmark, bench, preset: str, K: int, J: int, B: int, method: str) -> None:
    if method == "reference":
        call = bench.reference_call(preset, K, J, B)
    elif method == "folded-torch":
        call = bench.folded_call(preset, K, J, B)
    else:
        call = bench.runtime_call(preset, K, J, B, method)

    start = time.perf_counter()
    errors = call()  # (B, K): the check, and the first warm-up
    first = time.perf_counter() - start
    if method == "reference":
        bench.remember_reference(preset, J, B, errors)
    info = check_against_reference(errors, bench.reference(preset, K, J, B))

    # about --bench-budget seconds of rounds; at least 3 unless one call takes longer than LONG_CALL_S
    rounds = int(min(MAX_ROUNDS, max(1 if first > LONG_CALL_S else 3, bench.budget // max(first, 1e-6))))
    benchmark.group = f"{preset} J={J} B={B} K={K}"
    benchmark.extra_info.update(
        preset=preset,
        K=K,
        J=J,
        B=B,
        backend=method,
        threads=bench.threads,
        device=bench.device if method in ("reference", "folded-torch", "torch") else method,
        reference_gflop=round(reference_gflop(preset, B, K, J), 3),
        **info,
    )
    if method in RUNTIME_BACKENDS:
        rec = bench.recognizer(preset, J, method)
        benchmark.extra_info["runtime_backend"] = rec.backend
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1 if first < 0.5 else 0)  # first: warm-up too
