"""Every `.py` path of this repository named in the code (messages, docstrings, comments) exists: an
error that sends a user to a file must send them to a real one."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = ("tdsm_edge/", "export/", "benchmarks/", "tests/", "examples/")
PATH = re.compile(r"(?<![\w/.-])((?:{})[\w/.-]*?\.py)\b".format("|".join(re.escape(p) for p in OURS)))


def test_every_named_py_path_exists():
    missing = []
    for folder in ("tdsm_edge", "export", "benchmarks", "examples", "tests"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            text = f.read_text(encoding="utf-8")
            for m in PATH.finditer(text):
                if not (ROOT / m.group(1)).is_file():
                    missing.append(f"{f.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(1)}")
    assert not missing, "paths named in the code that do not exist:\n" + "\n".join(missing)


def test_the_pattern_finds_paths_and_skips_foreign_ones():
    text = 'see export/bundle.py and tdsm_edge/runtime/recognizer.py; not model/dit.py nor data/ntu_60.py'
    assert [m.group(1) for m in PATH.finditer(text)] == ["export/bundle.py", "tdsm_edge/runtime/recognizer.py"]
