"""Export tests: one torch thread (the `tiny` / `stats` fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Tiny graphs: one intra-op thread is much faster than two contending on busy shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny synthact run (helpers/tiny_run.py), trained once for the export tests that build from a run."""
    from helpers.tiny_run import train_tiny_run

    return train_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def bundle(tiny, stats, tmp_path_factory):
    """A fp32 bundle of the tiny model with K=5 classes: (Manifest, tables) (helpers/tiny_bundles.py)."""
    from helpers.tiny_bundles import write_tiny_bundle

    return write_tiny_bundle(tiny, stats, tmp_path_factory.mktemp("bundle") / "demo", "fp32")


@pytest.fixture(scope="session")
def bundle16(tiny, stats, tmp_path_factory):
    """The same as a fp16 bundle."""
    from helpers.tiny_bundles import write_tiny_bundle

    return write_tiny_bundle(tiny, stats, tmp_path_factory.mktemp("bundle16") / "demo16", "fp16")
