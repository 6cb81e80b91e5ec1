"""Layers: no package imports another package's private names; the import contracts hold.

The import contracts themselves (the runtime never imports torch / training / models / export; models
never import training; the library never imports export) are in pyproject.toml ([tool.importlinter])
and run by `lint-imports` in `make test`; the test here checks what import-linter cannot: names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tdsm_edge", "export")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(module: str) -> str:
    """The unit that may share private names: `export`, or `tdsm_edge.<subpackage or module>`."""
    parts = module.split(".")
    return parts[0] if parts[0] == "export" else ".".join(parts[:2])


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(path: Path) -> list[str]:
    """`module: imported name` for every private name this file imports from another package."""
    module = _module_name(path)
    own = _package_of(module)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, path.name == "__init__.py")
            targets = [(source, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [(a.name, "") for a in node.names]
        else:
            continue
        for source, name in targets:
            if source.split(".")[0] not in PACKAGES or _package_of(source) == own:
                continue
            parts = [*source.split("."), *([name] if name else [])]
            if any(_private(p) for p in parts):
                found.append(f"{module} (line {node.lineno}): {source}{'.' + name if name else ''}")
    return found


def test_no_package_imports_private_names_of_another():
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) > 50
    bad = [hit for p in files for hit in private_imports(p)]
    assert not bad, "private names imported across packages (make them public where they live):\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "code,hits",
    [
        ("from tdsm_edge.training.plots import _save\n", 1),  # another package's private name
        ("from tdsm_edge.runtime import _bert_chars\n", 1),  # another package's private module
        ("import tdsm_edge.runtime._bert_chars\n", 1),
        ("from tdsm_edge.runtime.iospec import IOSpec\n", 0),  # public
        ("from .onnx_export import _export\n", 0),  # inside its own package
        ("from tdsm_edge.runtime.trt_engine import import_trt as _import_trt\n", 0),  # a public name, aliased
    ],
)
def test_the_private_import_check_finds_what_it_should(tmp_path, monkeypatch, code, hits):
    fake = ROOT / "export" / "_layers_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: code)
    assert len(private_imports(fake)) == hits
