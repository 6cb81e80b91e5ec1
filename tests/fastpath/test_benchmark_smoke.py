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
    cmd = [sys.executable, str(REPO / "benchmarks/gpu_fastpath.py"), "--device", "cpu", "--preset", "tiny", "--quick",
           "--shapes", "1x5,2x3", "--tokens", "6", "--cond-dim", "24", "--features", "64", "--repeats", "3",
           "--json", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "| FastScorer, eager |" in run.stdout and "| published loop, fp32 |" in run.stdout
    res = json.loads(out.read_text())
    assert res["reference_check_rel"] < 1e-4
    assert set(res["ms"]) == {"1x5", "2x3"} and all(v > 0 for r in res["ms"].values() for v in r.values())
    assert all(a["top1_agreement"] >= 0.995 for a in res["agreement"])
