#!/usr/bin/env bash
# The GPU verification script: run it on the lent GPU machine from the repository root.
#   bash benchmarks/gpu_check.sh            (writes logs to $OUT, or ./gpu_check_out without it)
# Prints the machine, runs the CUDA tests plus the device-independent tests that need no MiniLM /
# open_clip, and times a denoiser training step and zero-shot scoring per preset on the GPU.
# The fast path's latency table is its own run (~4 min on an H100): python3 benchmarks/gpu_fastpath.py [--quick]
set -uo pipefail
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
timeout 300 $PY -m pytest -q -p no:cacheprovider -x \
  tests/gpu tests/fastpath tests/data/test_synthact.py tests/data/test_build.py tests/data/test_pku_build.py tests/skeleton tests/models tests/test_scoring.py \
  tests/training/test_loss.py tests/training/test_denoiser_trainer.py tests/training/test_metrics.py \
  2>&1 | tail -25 | tee "$OUT/gpu_pytest.log"
timeout 200 $PY benchmarks/train_step_timing.py --device cuda --presets tiny small paper --steps 20 \
  --score-batch 256 2>&1 | tee "$OUT/gpu_timing.jsonl"
