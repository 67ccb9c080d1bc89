"""The shape of the package: two layers, short functions, torch-free metrics."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "radioalign"
MAX_LINES = 80


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_longer_than_about_80_lines():
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name} ({n} lines)")
    assert not long, f"functions longer than {MAX_LINES} lines: {long}"


def _imports(path: Path) -> set[str]:
    """The radioalign names ``path`` may load: the pipeline's own reading of imports
    (relative imports resolved), which also decides what a notebook's step key hashes."""
    from radioalign.study.pipeline import imported_names, module_files

    module = next(name for name, file in module_files().items() if file == path)
    names = imported_names(ast.parse(path.read_text()), module, path.name == "__init__.py")
    return {n for n in names if n.startswith("radioalign")}


def test_the_library_never_imports_the_study():
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "study" or rel.name == "__init__.py" and len(rel.parts) == 1:
            continue  # radioalign/__init__.py only re-exports lazily (deviations())
        bad = sorted(n for n in _imports(path) if n.startswith("radioalign.study"))
        if bad:
            offenders.append(f"{rel}: {bad}")
    assert not offenders, f"library modules import the study: {offenders}"


@pytest.mark.parametrize("module", ["radioalign", "radioalign.metrics", "radioalign.study.evaluation", "radioalign.text_baselines"])
def test_importing_does_not_import_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
