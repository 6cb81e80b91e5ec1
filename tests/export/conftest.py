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
