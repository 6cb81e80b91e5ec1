"""The lean runtime on the oldest onnxruntime and numpy that pyproject.toml declares (issue 15, finding 3).

`make test` makes a second, small venv (`.venv-oldest`: onnxruntime and numpy at pyproject's floors, nothing
else) beside the main one; a bundle — encoder, scorer, text and tables graphs — is loaded and run there by
the lean runtime in a subprocess and compared with the main venv's run of the same bundle. ONNX Runtime
1.17 refuses graphs above IR 9 ("Unsupported model IR version: 10"), which the exporter wrote before.
Skipped (with the command that makes the venv) where `.venv-oldest` does not exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tomllib

from tdsm_edge.runtime import ZeroShotRecognizer

REPO = Path(__file__).resolve().parents[2]
OLDEST = REPO / ".venv-oldest" / "bin" / "python"
NEW = ["wave twice", "sit down on a chair"]
NEW_DESC = ["A person raises the right hand and waves it twice.", "A person bends both knees and sits down on a chair."]

SCRIPT = """
import json, sys
import numpy as np, onnxruntime
from tdsm_edge.runtime import ZeroShotRecognizer

rec = ZeroShotRecognizer.load(sys.argv[1], backend="onnxruntime", threads=1)
raw = np.load(sys.argv[2])
before = np.stack([p.errors for p in rec.predict_batch(raw)])
rec.add_classes(*json.loads(sys.argv[4]))  # the text and tables graphs
after = np.stack([p.errors for p in rec.predict_batch(raw)])
np.savez(sys.argv[3], before=before, after=after)
print(json.dumps({"numpy": np.__version__, "onnxruntime": onnxruntime.__version__,
                  "torch": "torch" in sys.modules, "backend": rec.backend}))
"""


def floors() -> dict[str, str]:
    """pyproject's lowest declared versions of numpy (the runtime's dependency) and onnxruntime (its extra)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    found = {}
    for req in (*project["dependencies"], *project["optional-dependencies"]["runtime"]):
        m = re.fullmatch(r"(numpy|onnxruntime)>=([\d.]+)", req.replace(" ", ""))
        if m:
            found[m[1]] = m[2]
    assert set(found) == {"numpy", "onnxruntime"}, f"pyproject's floors not found: {found}"
    return found


def test_make_test_installs_the_floors_pyproject_declares():
    """The Makefile's pins of .venv-oldest must be pyproject's floors (one fact: pyproject; this keeps them equal)."""
    makefile = (REPO / "Makefile").read_text()
    for name, floor in floors().items():
        pins = re.findall(rf'"{name}==([\d.]+)"', makefile)
        assert pins and all(p.split(".")[:2] == floor.split(".")[:2] for p in pins), (name, floor, pins)


def test_a_bundle_runs_the_same_in_the_oldest_declared_onnxruntime(text_bundle, runtime_bundle, tmp_path):
    if not OLDEST.is_file():
        pytest.skip(
            "no .venv-oldest: `make test` makes it (onnxruntime and numpy at pyproject's floors) on Python < 3.12; "
            "numpy 1.24 has no wheel for newer Pythons"
        )
    raw = runtime_bundle.windows(per_class=1, seed=11)
    np.save(tmp_path / "raw.npy", raw)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            str(OLDEST),
            "-c",
            SCRIPT,
            str(text_bundle.dir),
            str(tmp_path / "raw.npy"),
            str(tmp_path / "out.npz"),
            json.dumps([NEW, NEW_DESC]),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    for name, floor in floors().items():  # it really ran on the floors
        assert info[name].split(".")[:2] == floor.split(".")[:2], info
    assert info["backend"] == "onnxruntime" and not info["torch"]

    rec = ZeroShotRecognizer.load(text_bundle.dir, backend="onnxruntime", threads=1)
    before = np.stack([p.errors for p in rec.predict_batch(raw)])
    rec.add_classes(NEW, NEW_DESC)
    after = np.stack([p.errors for p in rec.predict_batch(raw)])
    old = np.load(tmp_path / "out.npz")
    assert old["after"].shape == after.shape == (len(raw), before.shape[1] + len(NEW))
    np.testing.assert_allclose(old["before"], before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(old["after"], after, rtol=1e-5, atol=1e-6)
