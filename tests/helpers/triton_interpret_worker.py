"""Run the fast path's Triton kernels in the Triton interpreter (CPU tensors) and save their outputs.

    TRITON_INTERPRET=1 PYTHONPATH=<repo>:<repo>/tests python tests/helpers/triton_interpret_worker.py OUT.pt

A separate process because TRITON_INTERPRET must be set before triton is first imported; the
tests (tests/fastpath/test_triton_interpret.py) compare what it saves with the torch fallbacks.
"""

from __future__ import annotations

import os
import sys

import torch

from helpers.fastpath_cases import SCORER_CASES, kernel_cases, run_case, scorer_case


def main(path: str) -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("set TRITON_INTERPRET=1 before running this worker")
    out = {f"kernel/{name}": run_case(case, "triton") for name, case in kernel_cases().items()}
    for name in SCORER_CASES:
        out[f"scorer/{name}"] = scorer_case(name, "triton")[0]
    torch.save(out, path)


if __name__ == "__main__":
    main(sys.argv[1])
