#!/usr/bin/env bash
# The GPU verification script: ONE prepared run on the lent GPU machine (an H100), from the repository root.
#
# Before it, on the development machine, build the two small bundles it reads (no MiniLM there; ~10 MB each)
# and carry them (device tool: carry ["engines/gpu_check", "engines/gpu_check_fp16"]):
#   python -m export.build_engine --run runs/demo/ru5/seed1 --out engines/gpu_check --no-text-encoder --no-tradeoff --batch 64
#   python -m export.build_engine --run runs/demo/ru5/seed1 --out engines/gpu_check_fp16 --precision fp16 --no-text-encoder --no-tradeoff --batch 64
# Then: bash benchmarks/gpu_check.sh   (logs to $OUT, or ./gpu_check_out without it; ~8 min in all)
#
# 1. the fast path's latency table (issue 6: paper preset, published loop / batched fp16 eager / CUDA graph /
#    torch.compile / FastScorer, ratios, top-1 agreement, per-kernel profile of B=1 K=5)
# 2. the runtime's GPU paths on the bundles (torch eager / CUDA graph / fast path vs ONNX Runtime CPU)
# 3. the CUDA tests (tests/gpu, tests/fastpath incl. Triton on the GPU, cuda-python graph capture)
set -uo pipefail
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
$PY -c "import triton; print('triton', triton.__version__)" 2>&1 | tee -a "$OUT/gpu.txt"
echo "== 1. fast path benchmark"
timeout 260 $PY benchmarks/gpu_fastpath.py --budget-s 230 --profile 1x5 --json "$OUT/fastpath.json" 2>&1 | tee "$OUT/fastpath.md"
echo "== 2. runtime on the GPU"
for b in engines/gpu_check engines/gpu_check_fp16; do
  if [ -f "$b/manifest.json" ]; then timeout 90 $PY benchmarks/gpu_runtime_check.py "$b" 2>&1 | tee "$OUT/runtime_$(basename $b).md"
  else echo "$b missing: build and carry it (see the top of this script)"; fi
done
echo "== 3. CUDA tests"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/gpu tests/fastpath tests/test_scoring.py tests/models \
  "tests/export/test_tensorrt_build.py::test_cuda_graph_capture_and_replay_with_cuda_python" \
  2>&1 | tail -25 | tee "$OUT/gpu_pytest.log"
