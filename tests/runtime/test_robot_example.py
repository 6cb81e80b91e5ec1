"""The README's "Use it in a robot" example is examples/robot.py, and it runs as written (torch-free)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "robot.py"


def test_readme_shows_the_example_file():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use it in a robot", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert block == EXAMPLE.read_text()
    assert len(block.strip().splitlines()) <= 15


def test_example_runs_without_torch_on_a_bundle_like_the_demos(text_bundle):
    """The example on the test bundle (a tiny synthact ru5 run, verified, with the text side), torch blocked."""
    code = EXAMPLE.read_text().replace('"engines/demo"', repr(str(text_bundle.dir)))
    guard = "import sys\nsys.modules['torch'] = None  # any import of torch fails\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run(
        [sys.executable, "-c", guard + code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    preds = [ln for ln in lines if " margin " in ln]
    assert len(preds) == 3  # 128 frames, window 64, stride 32
    labels = {
        "circle left leg",
        "circle right leg",
        "shake head",
        "jump in place",
        "turn around",
        "wave right hand",
        "none of these",
    }
    assert all(ln[:18].strip() in labels for ln in preds), preds
    assert lines[-1].startswith("onnxruntime joint StreamStats(pushed=128")  # backend, variant (the TDSM test bundle)
