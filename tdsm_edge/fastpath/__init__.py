"""The GPU fast path of the PyTorch backend: `FastScorer` (fp16, fused Triton kernels, SDPA, CUDA graphs).

Import each name from the module that defines it (`from tdsm_edge.fastpath.scorer import FastScorer`);
the package itself imports nothing, so `import tdsm_edge.fastpath` imports neither torch nor triton;
Triton itself is imported only when a kernel runs on it (kernels.py).
"""
