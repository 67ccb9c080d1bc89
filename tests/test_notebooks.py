"""The notebooks, their committed smoke references, and the README's links.

The references under tests/notebooks/ are executed by nbval in `make test`
(`pytest --nbval-lax`, comparing the cells marked `# NBVAL_CHECK_OUTPUT`); these tests
keep them from drifting away from notebooks/ and check the conventions every notebook follows.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from radioalign.study.pipeline import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "notebooks"
REFERENCES = ROOT / "tests" / "notebooks"


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _code_cells(nb, *, drop_injected: bool = True) -> list[str]:
    return [
        c.source
        for c in nb.cells
        if c.cell_type == "code" and not (drop_injected and "injected-parameters" in c.metadata.get("tags", []))
    ]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_conventions(name):
    nb = _read(SOURCES / f"{name}.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown", "a notebook opens with its title and purpose"
    assert "google.colab" in code[0].source, "the first code cell installs the package on Colab"
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one papermill parameters cell"
    assert re.search(r'^profile = "paper"', params[0].source, re.M), "profile defaults to paper"
    assert all(not c.get("outputs") for c in code), "notebooks/ are committed without outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_reference_matches_notebook(name):
    ref = REFERENCES / f"{name}.ipynb"
    assert ref.is_file(), f"{ref} is missing: run `make references`"
    nb, executed = _read(SOURCES / f"{name}.ipynb"), _read(ref)
    assert _code_cells(executed) == _code_cells(nb), f"{ref.name} drifted from notebooks/: run `make references`"
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source, "references are smoke-profile runs"
    checked = [c for c in executed.cells if c.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in c.source]
    if name != "01_captioning" or checked:
        assert all(c.get("outputs") for c in checked), "checked cells must have reference outputs"


def test_readme_badges_point_at_existing_notebooks():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"(?:blob/main|labpath=|urlpath=lab/tree/)/?([\w./%-]+\.ipynb)", readme)
    assert targets, "the README has Binder and Colab badges"
    for target in targets:
        assert (ROOT / target.replace("%2F", "/")).is_file(), f"badge points at a missing file: {target}"
    assert "mybinder.org" in readme and "colab.research.google.com" in readme
