"""The GPU machine's prepared run (benchmarks/gpu_check.sh) must work the first time it meets a GPU:
its runtime check runs end to end here on the CPU, the script parses, and the bundle-build commands
its header tells the operator to run are valid build_engine command lines."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks/gpu_check.sh"


def test_gpu_runtime_check_runs_on_cpu(runtime_bundle):
    cmd = [
        sys.executable,
        str(REPO / "benchmarks/gpu_runtime_check.py"),
        str(runtime_bundle.dir),
        "--device",
        "cpu",
        "--samples",
        "32",
        "--reps",
        "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    rows = [
        line for line in run.stdout.splitlines() if line.startswith("| torch cpu") or line.startswith("| onnxruntime")
    ]
    assert len(rows) == 6 and not any("failed" in r for r in rows), run.stdout
    assert all("100.00 %" in r for r in rows), run.stdout  # fp32 bundle: every configuration agrees on top-1


def test_gpu_check_script_parses_and_its_build_commands_are_valid():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    from export.build_engine import build_parser

    builds = [
        shlex.split(line.split("#", 1)[1])
        for line in SCRIPT.read_text().splitlines()
        if line.startswith("#") and "python -m export.build_engine" in line
    ]
    assert len(builds) == 2
    outs = set()
    for argv in builds:
        assert argv[:3] == ["python", "-m", "export.build_engine"]
        args = build_parser().parse_args(argv[3:])
        outs.add(args.out)
    carried = [w.strip('"[],') for w in SCRIPT.read_text().split("carry [", 1)[1].split("]", 1)[0].split()]
    assert {str(o) for o in outs} == set(carried) == {"engines/gpu_check", "engines/gpu_check_fp16"}
    assert f"for b in {' '.join(sorted(carried))}; do" in SCRIPT.read_text()  # the script reads what is carried
