"""The runtime's GPU paths on a real bundle: the torch backend on CUDA (eager, CUDA graphs, fast path)
and ONNX Runtime's IO binding, against ONNX Runtime on the CPU. For the GPU verification machine.

    python3 benchmarks/gpu_runtime_check.py engines/gpu_check      # a bundle built with --no-text-encoder

Prints, per configuration, the max relative error and top-1 agreement against ONNX Runtime CPU on
seeded random features (scaled like the bundle's feature statistics), and the median ms per
`score_features` call at batch 1 and 64 (all bundle classes). Exit status 1 when a configuration
disagrees (fp32: max rel > 1e-3; fp16 fast path: top-1 < 99.5 %).
"""

from __future__ import annotations

import argparse

import numpy as np

from tdsm_edge.cli import HelpFormatter, exit_main
from tdsm_edge.runtime import ZeroShotRecognizer
from tdsm_edge.runtime.manifest import load_manifest
from tdsm_edge.runtime.torch_backend import TorchBackend
from tdsm_edge.timing import median_ms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("bundle", help="engine bundle folder (with reference/ weights)")
    p.add_argument("--samples", type=int, default=2048, help="random features for the agreement check")
    p.add_argument("--reps", type=int, default=50, help="timed calls per median")
    p.add_argument("--device", default="cuda", help="torch device (cpu: a smoke run of this script, no graphs)")
    args = p.parse_args(argv)

    m = load_manifest(args.bundle)
    ref = np.load(m.path(m.data["reference"]["feature_mean"])), np.load(m.path(m.data["reference"]["feature_std"]))
    rng = np.random.default_rng(0)
    z = (ref[0] + ref[1] * rng.standard_normal((args.samples, ref[0].shape[0]))).astype(np.float32)
    cpu = ZeroShotRecognizer.load(args.bundle, backend="onnxruntime")
    want = cpu.score_features(z)
    print(
        f"bundle {args.bundle}: {len(cpu.classes)} classes, {m.precision}, J={m.data['scoring']['num_noises']}; "
        f"reference: ONNX Runtime {cpu._scorer.device}"
    )
    configs = {
        "onnxruntime cpu": cpu._scorer,
        "onnxruntime cpu, io binding": lambda: _ort(args.bundle, io_binding=True),
        f"torch {args.device} eager": lambda: TorchBackend(m, device=args.device, fast=False),
        f"torch {args.device} graph": lambda: TorchBackend(m, device=args.device, fast=False, cuda_graph=True),
        f"torch {args.device} fast path": lambda: TorchBackend(m, device=args.device, fast=True),
        f"torch {args.device} fast path + graphs": lambda: TorchBackend(
            m, device=args.device, fast=True, cuda_graph=True
        ),
    }
    print("| configuration | max rel err | top-1 agreement | ms B=1 | ms B=64 |\n|---|---|---|---|---|")
    failed = []
    for name, scorer in configs.items():
        try:
            scorer = scorer() if callable(scorer) else scorer
            got = scorer.errors(z)
            rel = float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-12)))
            agree = float((got.argmin(1) == want.argmin(1)).mean())
            # two warm-up calls: graph capture, allocator; errors() returns numpy, so it is synchronised
            ms = [median_ms(lambda s=scorer, b=B: s.errors(z[:b]), args.reps, warmup=2) for B in (1, 64)]
            print(f"| {name} | {rel:.2e} | {100 * agree:.2f} % | {ms[0]:.3f} | {ms[1]:.3f} |", flush=True)
            if agree < 0.995 or (m.precision == "fp32" and rel > 1e-3):
                failed.append(name)
        except Exception as e:  # report and go on: one broken path must not hide the others
            print(f"| {name} | failed: {type(e).__name__}: {e} | | | |", flush=True)
            failed.append(name)
    if failed:
        print(f"FAILED: {failed}")
    return 1 if failed else 0


def _ort(bundle: str, io_binding: bool):
    from tdsm_edge.runtime.ort_backend import OrtBackend

    return OrtBackend(bundle, io_binding=io_binding)


if __name__ == "__main__":
    exit_main(main())
