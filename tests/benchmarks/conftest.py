"""The report tests import the repository's `benchmarks` package, which is not installed: `python -m
pytest` (make test) finds it from the working directory; a bare `pytest` needs the repository root
on sys.path (until pyproject's pytest `pythonpath` lists "." next to "tests")."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
