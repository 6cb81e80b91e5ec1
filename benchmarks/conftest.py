"""Fixtures of the scoring benchmarks (test_scoring_latency.py: the grid; test_cpu_target.py: the
issue's CPU target, paired): the seeded problems, one engine bundle per (preset, J), the reference
scores, loaded recognizers, all built lazily and cached for the session.

    python -m pytest benchmarks/ -m "not slow" --benchmark-json results.json   # tiny / small on CPU
    python -m benchmarks.report results.json --out DIR                          # table + plots
    python -m pytest benchmarks/ -k "paper and not onnxruntime" --bench-device cuda  # paper size, on a GPU

Options: --bench-threads (torch and runtime intra-op threads), --bench-device (where the torch
reference loop, the folded scorer and the runtime's torch backend run), --bench-budget (seconds of
timed rounds per case).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.problem import MAX_CLASSES, NOISE_SEED, TIMESTEP, Problem, build_problem, write_problem_bundle


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tdsm-edge benchmarks")
    group.addoption(
        "--bench-threads", type=int, default=1, help="intra-op threads for torch and every runtime backend (default: 1)"
    )
    group.addoption(
        "--bench-device",
        default="cpu",
        help="torch device of the reference loop, folded-torch and the runtime's torch backend, e.g. cuda "
        "(default: cpu)",
    )
    group.addoption(
        "--bench-budget",
        type=float,
        default=2.0,
        help="seconds of timed rounds per case: budget / first call rounds, 3..200, fewer (maybe 1) when "
        "one call takes over 2 s (default: 2)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # also registered in pyproject.toml; repeated here so `pytest benchmarks/` stands alone
    config.addinivalue_line("markers", "slow: long-running (deselect with -m 'not slow')")


class BenchSession:
    """Lazily built, cached objects shared by every benchmark of the session."""

    def __init__(self, root: Path, threads: int, device: str, budget: float) -> None:
        self.root, self.threads, self.device, self.budget = root, threads, device, budget
        self._problems: dict[str, Problem] = {}
        self._bundles: dict[tuple[str, int], Path] = {}
        self._reference: dict[tuple[str, int, int], np.ndarray] = {}
        self._recognizers: dict[tuple[str, int, str], Any] = {}
        self._device_models: dict[str, Any] = {}

    def problem(self, preset: str) -> Problem:
        if preset not in self._problems:
            self._problems[preset] = build_problem(preset)
        return self._problems[preset]

    def model(self, preset: str):
        """The preset's denoiser on `--bench-device` (a copy off the CPU: `Module.to` moves in place, and
        the bundles export the CPU model)."""
        if preset not in self._device_models:
            model = self.problem(preset).model
            self._device_models[preset] = model if self.device == "cpu" else copy.deepcopy(model).to(self.device)
        return self._device_models[preset]

    def bundle(self, preset: str, J: int) -> Path:
        """The fp32 engine bundle of all MAX_CLASSES classes (no encoder; batch 1..64), built once."""
        if (preset, J) not in self._bundles:
            self._bundles[(preset, J)] = write_problem_bundle(
                self.problem(preset),
                self.root / f"{preset}_J{J}",
                J,
                plan_builder=_plan_builder(),
                build_command=f"benchmarks/conftest.py bundle {preset} J={J}",
            )
        return self._bundles[(preset, J)]

    def recognizer(self, preset: str, J: int, backend: str):
        """`ZeroShotRecognizer.load(bundle, backend=...)`; pytest.skip when the backend is refused."""
        from tdsm_edge.errors import ConfigError, MissingDependencyError
        from tdsm_edge.runtime import ZeroShotRecognizer

        key = (preset, J, backend)
        if key not in self._recognizers:
            # the torch backend runs where the reference loop runs (--bench-device), not "auto"
            where = dict(device=self.device) if backend == "torch" else {}
            try:
                self._recognizers[key] = ZeroShotRecognizer.load(
                    self.bundle(preset, J), backend=backend, threads=self.threads, **where
                )
            except (ConfigError, MissingDependencyError) as e:
                self._recognizers[key] = e
        rec = self._recognizers[key]
        if isinstance(rec, Exception):
            pytest.skip(f"backend {backend!r}: {type(rec).__name__}: {rec}")
        return rec

    def reference(self, preset: str, K: int, J: int, B: int) -> np.ndarray:
        """The reference loop's `(B, K)` errors, cached per (preset, J, B): a class's errors do not depend
        on the other classes, so a cached larger K is sliced."""
        cached = self._reference.get((preset, J, B))
        if cached is None or cached.shape[1] < K:
            self.remember_reference(preset, J, B, self.reference_call(preset, K, J, B)())
        return self._reference[(preset, J, B)][:, :K]

    def remember_reference(self, preset: str, J: int, B: int, errors: np.ndarray) -> None:
        """Cache reference errors `(B, K)` computed elsewhere (the reference benchmark's own first call)."""
        cached = self._reference.get((preset, J, B))
        if cached is None or cached.shape[1] < errors.shape[1]:
            self._reference[(preset, J, B)] = errors

    def class_text(self, preset: str, K: int) -> tuple:
        """The first K classes' text `(fc (K, Dc), fl (K, L, Dc), mask (K, L))` as tensors on `--bench-device`."""
        import torch

        t = self.problem(preset).text.subset(range(K))
        return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in (t.global_, t.local, t.mask))

    def reference_call(self, preset: str, K: int, J: int, B: int):
        """The paper's loop as a call: raw features → standardise → `score_reference` → `(B, K)` numpy."""
        import torch

        from tdsm_edge.scoring import noise_bank, score_reference

        p, model = self.problem(preset), self.model(preset)
        fc, fl, mask = self.class_text(preset, K)
        noises = noise_bank(J, p.cfg.z_dim, NOISE_SEED).to(self.device)  # (J, Dz)
        z = p.features(B)

        def call() -> np.ndarray:
            zs = torch.from_numpy(p.stats.apply(z)).to(self.device)  # (B, Dz) standardised
            return score_reference(model, p.schedule, zs, (fc, fl, mask), noises, TIMESTEP).cpu().numpy()

        return call

    def folded_call(self, preset: str, K: int, J: int, B: int):
        """`FoldedScorer` (fp32, torch) over the first K classes' tables: ONE batched call → `(B, K)` numpy."""
        import torch

        from tdsm_edge.models.class_tables import class_tables
        from tdsm_edge.models.folded import FoldedScorer
        from tdsm_edge.scoring import noise_bank

        p, model = self.problem(preset), self.model(preset)
        tables = class_tables(model, *self.class_text(preset, K), TIMESTEP, "fp32")
        scorer = (
            FoldedScorer(model, p.schedule, noise_bank(J, p.cfg.z_dim, NOISE_SEED), TIMESTEP, p.stats, "fp32")
            .to(self.device)
            .eval()
        )
        z = torch.from_numpy(p.features(B)).to(self.device)  # (B, Dz) raw

        def call() -> np.ndarray:
            with torch.no_grad():
                return scorer(z, **tables).cpu().numpy()

        return call

    def runtime_call(self, preset: str, K: int, J: int, B: int, backend: str):
        """`rec.set_active_classes(first K)` then `rec.score_features(z)` as a call → `(B, K)` numpy."""
        rec = self.recognizer(preset, J, backend)
        assert len(rec.all_classes) == MAX_CLASSES
        rec.set_active_classes(rec.all_classes[:K])
        z = self.problem(preset).features(B)
        return lambda: rec.score_features(z)


def _plan_builder():
    """TensorRT fp32 plans when TensorRT is installed (the tensorrt backend runs them), else None."""
    from tdsm_edge.runtime.trt_engine import tensorrt_available

    if not tensorrt_available():
        return None
    from export.tensorrt_build import build_plan
    from tdsm_edge.runtime.iospec import BATCH

    def build(stage_dir: Path, onnx: dict, io) -> list[dict]:
        b, k = io.axes[BATCH], io.axes["classes"]
        return [
            build_plan(
                path,
                stage_dir,
                graph=graph,
                precision="fp32",
                min_batch=b.min,
                opt_batch=b.opt,
                max_batch=b.max,
                classes=(k.min, k.opt, k.max),
            )
            for graph, path in onnx.items()
        ]

    return build


@pytest.fixture(scope="session")
def bench(request, tmp_path_factory) -> BenchSession:
    """The session's BenchSession (bundles under a pytest tmp dir); torch runs with --bench-threads."""
    import torch

    opt = request.config.getoption
    before = torch.get_num_threads()
    torch.set_num_threads(opt("--bench-threads"))
    yield BenchSession(
        tmp_path_factory.mktemp("bundles"), opt("--bench-threads"), opt("--bench-device"), opt("--bench-budget")
    )
    torch.set_num_threads(before)
