"""Before / after of OrtScorer's row-bounded chunks on the CPU, in one run.

    OMP_NUM_THREADS=1 python -m benchmarks.ort_chunking tiny small      # ~6 min on 2 cores

Per preset: the benchmark suite's random-weight model (benchmarks/problem.py) as a fp32 bundle
(J = 3, dynamic batch 1..64) in a temporary folder; then `OrtScorer(bundle, max_rows=10**9)` (one
call per batch) against the default (chunks of at most 256 rows B·K·J), interleaved, 1 thread, for
K = 5 / 24 / 60 and B = 1 / 64. Prints a markdown table of medians; checks the scores are equal.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def bundle(preset: str, root: Path) -> Path:
    from benchmarks.problem import build_problem
    from export.bundle import write_bundle
    from export.iospec import AxisRange

    p = build_problem(preset)
    out = root / f"{preset}_J3"
    write_bundle(out, p.model.cpu(), p.schedule, p.stats, p.text, timestep=25, num_noises=3, noise_seed=0,
                 precision="fp32", batch=AxisRange.for_batch(64, dynamic=True), reference_weights=False)
    return out


def main(presets: list[str]) -> None:
    from tdsm_edge.runtime.ort_backend import OrtScorer

    print("| preset | K | B | one call (ms) | chunked ≤256 rows (ms) | speed-up |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            out = bundle(preset, Path(tmp))
            before, after = OrtScorer(out, threads=1, max_rows=10**9), OrtScorer(out, threads=1)
            z = np.random.default_rng(0).normal(0.7, 1.5, (64, before.z_dim)).astype(np.float32)
            for K in (5, 24, 60):
                for s in (before, after):
                    s.select(list(range(K)))
                for B in (1, 64):
                    np.testing.assert_allclose(after.scores(z[:B]), before.scores(z[:B]), rtol=1e-5, atol=1e-6)
                    t: dict[str, list[float]] = {"before": [], "after": []}
                    for _ in range(5 if B == 1 else 3):
                        for name, s in (("before", before), ("after", after)):
                            t0 = time.perf_counter()
                            s.scores(z[:B])
                            t[name].append((time.perf_counter() - t0) * 1e3)
                    b, a = statistics.median(t["before"]), statistics.median(t["after"])
                    print(f"| {preset} | {K} | {B} | {b:.1f} | {a:.1f} | ×{b / a:.2f} |", flush=True)


if __name__ == "__main__":
    import argparse

    from tdsm_edge.cli import HelpFormatter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("presets", nargs="*", default=["tiny", "small"], choices=["tiny", "small", "paper"],
                        help="denoiser presets to measure")
    main(parser.parse_args().presets)
