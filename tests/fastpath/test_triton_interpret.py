"""The Triton kernels, run by the Triton interpreter on CPU tensors, against the torch fallbacks.

TRITON_INTERPRET must be set before triton is imported, so one subprocess
(tests/helpers/triton_interpret_worker.py) runs every kernel case and the Triton-backed FastScorer
and saves the outputs; the tests here compare them. Skipped when triton is not importable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

from helpers.fastpath_cases import SCORER_CASES, kernel_cases, run_case, scorer_case

pytestmark = pytest.mark.skipif(find_spec("triton") is None, reason="needs triton")  # not imported here

ROOT = Path(__file__).resolve().parents[2]
CASES = kernel_cases()


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory):
    out = tmp_path_factory.mktemp("interpret") / "outputs.pt"
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests/helpers/triton_interpret_worker.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_triton_kernel_matches_torch(interpreted, name):
    got, want = interpreted[f"kernel/{name}"], run_case(CASES[name], "torch")
    assert got.dtype == want.dtype and got.shape == want.shape
    tol = dict(rtol=2e-3, atol=2e-3) if got.dtype == torch.float16 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got, want, **tol)


@pytest.mark.parametrize("name", sorted(SCORER_CASES))
def test_triton_fast_scorer_matches_folded_fp32(interpreted, name):
    got = interpreted[f"scorer/{name}"]
    fallback, ref = scorer_case(name, "torch")
    precision = SCORER_CASES[name][3]  # (…, attention): the decoupled student's cases too
    rtol = 1e-5 if precision == "fp32" else 3e-3
    torch.testing.assert_close(got, ref, rtol=rtol, atol=0)
    torch.testing.assert_close(got, fallback, rtol=rtol, atol=0)  # both backends of the same layout
    assert torch.equal(got.argmin(1), ref.argmin(1))
