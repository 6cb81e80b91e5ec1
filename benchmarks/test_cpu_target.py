"""The issue's CPU target: small preset, B=1, K=5, J=3, ONNX Runtime at least 3× faster than the
paper's loop in PyTorch, in the same run.

On a shared machine a burst of load during one method's rounds skews a ratio of two medians taken
one after the other (test_scoring_latency.py), so here the two calls are timed in interleaved
pairs (order alternating each pair) and the speed-up is median(reference) / median(onnxruntime)
over the same pairs. The timed benchmark is the ONNX Runtime call; the paired numbers are in
`extra_info` (`python -m benchmarks.report` prints them).
"""

from __future__ import annotations

import statistics
import time

import pytest

from benchmarks.problem import check_against_reference

TARGET = dict(preset="small", K=5, J=3, B=1)
MIN_SPEEDUP = 3.0
PAIRS = 40


def test_onnxruntime_meets_cpu_target(benchmark, bench) -> None:
    if bench.device != "cpu":
        pytest.skip(f"the CPU target compares CPU timings; the reference loop runs on {bench.device}")
    preset, K, J, B = TARGET["preset"], TARGET["K"], TARGET["J"], TARGET["B"]
    ort = bench.runtime_call(preset, K, J, B, "onnxruntime")
    reference = bench.reference_call(preset, K, J, B)
    info = check_against_reference(ort(), bench.reference(preset, K, J, B))

    times: dict[str, list[float]] = {"reference": [], "onnxruntime": []}
    pair = [("reference", reference), ("onnxruntime", ort)]
    for i in range(PAIRS):
        for name, call in pair if i % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    ref_ms, ort_ms = (1e3 * statistics.median(times[n]) for n in ("reference", "onnxruntime"))
    speedup = ref_ms / ort_ms

    benchmark.group = "CPU target"
    benchmark.extra_info.update(
        target=dict(TARGET, backend="onnxruntime", min_speedup=MIN_SPEEDUP),
        threads=bench.threads,
        pairs=PAIRS,
        reference_median_ms=ref_ms,
        onnxruntime_median_ms=ort_ms,
        speedup=speedup,
        **info,
    )
    benchmark.pedantic(ort, rounds=PAIRS, iterations=1, warmup_rounds=1)
    assert speedup >= MIN_SPEEDUP, (
        f"ONNX Runtime is {speedup:.2f}× faster than the paper's loop ({ort_ms:.2f} vs "
        f"{ref_ms:.2f} ms median over {PAIRS} interleaved pairs); the target is "
        f"{MIN_SPEEDUP}×"
    )
