"""benchmarks/gpu_fastpath.py runs end to end on CPU (tiny preset, no CUDA graph, no compile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_fastpath_benchmark_cpu_smoke(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/gpu_fastpath.py"),
        "--device",
        "cpu",
        "--preset",
        "tiny",
        "--quick",
        "--shapes",
        "1x5,2x3",
        "--tokens",
        "6",
        "--cond-dim",
        "24",
        "--features",
        "64",
        "--repeats",
        "3",
        "--json",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "| FastScorer, eager |" in run.stdout and "| published loop, fp32 |" in run.stdout
    res = json.loads(out.read_text())
    assert res["reference_check_rel"] < 1e-4
    assert set(res["ms"]) == {"1x5", "2x3"} and all(v > 0 for r in res["ms"].values() for v in r.values())
    assert all(a["top1_agreement"] >= 0.995 for a in res["agreement"])


def test_gpu_fastpath_benchmark_survives_a_broken_fast_path(monkeypatch, capsys, tmp_path):
    """One GPU run is all there is: if the fast path fails (a Triton compile error, say), the script still
    times the baselines, prints the table and the error, writes its JSON, and exits 1."""
    import benchmarks.gpu_fastpath as bench
    from tdsm_edge.fastpath import kernels

    def broken(*args, **kwargs):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(kernels, "ln_modulate", broken)
    out = tmp_path / "bench.json"
    rc = bench.main(
        [
            "--device",
            "cpu",
            "--preset",
            "tiny",
            "--quick",
            "--shapes",
            "1x5",
            "--tokens",
            "6",
            "--cond-dim",
            "24",
            "--features",
            "16",
            "--repeats",
            "2",
            "--json",
            str(out),
        ]
    )
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAILED agreement K=5: RuntimeError: simulated kernel failure" in text
    assert "FAILED B=1, K=5, FastScorer, eager: RuntimeError" in text
    assert "| batched fp16, eager |" in text and "| published loop, fp32 |" in text  # the baselines were timed
    res = json.loads(out.read_text())
    assert res["agreement"][0]["top1_agreement"] == 0.0 and res["ms"]["1x5"]["batched fp16, eager"] > 0
