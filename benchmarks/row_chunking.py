"""Before / after of the runtime's row-bounded chunks on the CPU, in one run, per backend.

    OMP_NUM_THREADS=1 python -m benchmarks.row_chunking tiny small                 # ONNX Runtime, ~6 min
    OMP_NUM_THREADS=1 python -m benchmarks.row_chunking small --backend torch      # the torch backend

Per preset: the benchmark suite's random-weight model (benchmarks/problem.py) as a fp32 bundle
(J = 3, dynamic batch 1..64, reference weights) in a temporary folder; then the backend's scorer with
`max_rows=10**9` (one call per batch) against its default (chunks of at most
`tdsm_edge.runtime.batching.CPU_MAX_ROWS` = 256 rows B·K·J), interleaved, 1 thread, for K = 5 / 24 / 60
and B = 1 / 64. Prints a markdown table of medians; checks the scores are equal.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def bundle(preset: str, root: Path) -> Path:
    from benchmarks.problem import build_problem, write_problem_bundle

    return write_problem_bundle(build_problem(preset), root / f"{preset}_J3", 3)


def scorer(backend: str, out: Path, **kw):
    """The backend's scorer on the CPU, one thread."""
    if backend == "torch":
        from tdsm_edge.runtime.manifest import load_manifest
        from tdsm_edge.runtime.torch_backend import TorchBackend

        return TorchBackend(load_manifest(out), device="cpu", threads=1, **kw)
    from tdsm_edge.runtime.ort_backend import OrtBackend

    return OrtBackend(out, threads=1, **kw)


def main(presets: list[str], backend: str) -> None:
    print(f"{backend}, CPU, 1 thread\n")
    print("| preset | K | B | one call (ms) | chunked ≤256 rows (ms) | speed-up |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets:
            out = bundle(preset, Path(tmp))
            before, after = scorer(backend, out, max_rows=10**9), scorer(backend, out)
            z = np.random.default_rng(0).normal(0.7, 1.5, (64, before.z_dim)).astype(np.float32)
            for K in (5, 24, 60):
                for s in (before, after):
                    s.class_set.select(list(range(K)))
                for B in (1, 64):
                    np.testing.assert_allclose(after.errors(z[:B]), before.errors(z[:B]), rtol=1e-5, atol=1e-6)
                    t: dict[str, list[float]] = {"before": [], "after": []}
                    for _ in range(5 if B == 1 else 3):
                        for name, s in (("before", before), ("after", after)):
                            t0 = time.perf_counter()
                            s.errors(z[:B])
                            t[name].append((time.perf_counter() - t0) * 1e3)
                    b, a = statistics.median(t["before"]), statistics.median(t["after"])
                    print(f"| {preset} | {K} | {B} | {b:.1f} | {a:.1f} | ×{b / a:.2f} |", flush=True)


if __name__ == "__main__":
    import argparse

    from tdsm_edge.cli import HelpFormatter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "presets",
        nargs="*",
        default=["tiny", "small"],
        choices=["tiny", "small", "paper"],
        help="denoiser presets to measure",
    )
    parser.add_argument(
        "--backend",
        default="onnxruntime",
        choices=["onnxruntime", "torch"],
        help="the runtime backend whose chunking is measured",
    )
    args = parser.parse_args()
    main(args.presets, args.backend)
