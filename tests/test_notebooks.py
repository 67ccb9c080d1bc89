"""The notebooks, their committed smoke references, and the README's links.

The references under tests/notebooks/ are executed by nbval in `make test`
(`pytest --nbval-lax`, comparing the cells marked `# NBVAL_CHECK_OUTPUT`); these tests
keep them from drifting away from notebooks/ and check the conventions every notebook follows.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import nbformat
import pytest

from radioalign.tools.pipeline import NOTEBOOKS

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
    after = code[code.index(params[0]) + 1].source
    assert re.search(r"^profile = fitting_profile\(profile\).*\n(.*\n)*P = get_profile\(profile\b", after, re.M), (
        "the cell after the parameters swaps the default for a profile that fits, then builds P"
    )
    assert all(not c.get("outputs") for c in code), "notebooks/ are committed without outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_reference_matches_notebook(name):
    ref = REFERENCES / f"{name}.ipynb"
    assert ref.is_file(), f"{ref} is missing: run `make references`"
    nb, executed = _read(SOURCES / f"{name}.ipynb"), _read(ref)
    assert _code_cells(nb), f"{name} has no code"
    assert _code_cells(executed) == _code_cells(nb), f"{ref.name} drifted from notebooks/: run `make references`"
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and re.search(r'^profile = "smoke"$', injected[0].source, re.M), "references are smoke-profile runs"
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every cell of a reference ran"
    errors = [o.get("ename") for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"the reference recorded errors: {errors}"
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in c.source]
    assert checked, "every notebook checks at least one cell's output against its reference"
    empty = [c.source.splitlines()[1:2] for c in checked if not any(_text(o).strip() for o in c.get("outputs", []))]
    assert not empty, f"checked cells without a text output to compare: {empty}"


def _text(output) -> str:
    """What nbval compares of an output: its stream text or its text/plain data."""
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "")


def test_readme_badges_point_at_existing_notebooks():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"(?:blob/main|labpath=|urlpath=lab/tree/)/?([\w./%-]+\.ipynb)", readme)
    assert targets, "the README has Binder and Colab badges"
    for target in targets:
        assert (ROOT / target.replace("%2F", "/")).is_file(), f"badge points at a missing file: {target}"
    assert "mybinder.org" in readme and "colab.research.google.com" in readme


# ---------------------------------------------------------------------------
# `make notebooks-index`: the Colab cells and the README's table, from pyproject.toml


def test_colab_cells_and_readme_index_are_up_to_date():
    from radioalign.tools import notebooks_index

    stale = notebooks_index.update(ROOT, write=False)
    assert not stale, f"out of date: {[str(p.relative_to(ROOT)) for p in stale]}: run `make notebooks-index`"


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """pyproject.toml, README.md and notebooks/, with the repository moved to a fork."""
    for name in ("pyproject.toml", "README.md", "paper/controls_text.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((ROOT / name).read_text())
    (tmp_path / "notebooks").mkdir()
    for name in NOTEBOOKS:
        (tmp_path / "notebooks" / f"{name}.ipynb").write_text((SOURCES / f"{name}.ipynb").read_text())
    pyproject = tmp_path / "pyproject.toml"
    text, n = re.subn(r'(?m)^Repository = ".*"$', 'Repository = "https://github.com/someone/fork"', pyproject.read_text())
    assert n == 1, "pyproject.toml names the repository once"
    pyproject.write_text(text)
    return tmp_path


def test_notebooks_index_writes_the_repository_from_pyproject(project_copy, monkeypatch):
    from radioalign.tools import notebooks_index

    names = sorted(p.name for p in notebooks_index.update(project_copy, write=False))
    assert names == sorted(["README.md"] + [f"{n}.ipynb" for n in NOTEBOOKS]), "--check sees every file"
    notebooks_index.update(project_copy)
    assert notebooks_index.update(project_copy, write=False) == [], "a second pass changes nothing"

    readme = (project_copy / "README.md").read_text()
    assert "radioalign/radioalign" not in readme
    assert "mybinder.org/v2/gh/someone/fork/main" in readme and "colab.research.google.com/github/someone/fork" in readme
    for name in NOTEBOOKS:
        assert f"[`{name}`](notebooks/{name}.ipynb)" in readme

    # The written Colab cell does nothing off Colab, and installs from the fork on Colab.
    cell = _code_cells(_read(project_copy / "notebooks" / f"{NOTEBOOKS[0]}.ipynb"))[0]
    installs = []
    monkeypatch.setattr("subprocess.run", lambda cmd, **kw: installs.append(cmd))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(cell, "colab", "exec"), {})
    assert installs == []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delenv("RADIOALIGN_GIT", raising=False)
    exec(compile(cell, "colab", "exec"), {})
    assert installs and installs[0][-1] == "radioalign @ git+https://github.com/someone/fork"


def test_notebooks_index_wants_a_github_repository(project_copy):
    from radioalign.tools import notebooks_index

    pyproject = project_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("https://github.com/someone/fork", "https://example.org/fork"))
    with pytest.raises(ValueError, match="github.com"):
        notebooks_index.update(project_copy, write=False)


# ---------------------------------------------------------------------------
# The default profile where it cannot run


@pytest.mark.parametrize(
    "requested, environ, cuda, memory, chosen",
    [
        ("paper", {"BINDER_SERVICE_HOST": "10.0.0.1"}, False, 2e9, "smoke"),
        ("paper", {"BINDER_REPO_URL": "https://github.com/someone/fork"}, True, 64e9, "smoke"),
        ("paper", {}, False, 4e9, "smoke"),
        ("paper", {}, False, 32e9, "paper"),
        ("paper", {}, True, 4e9, "paper"),
        ("cpu", {"BINDER_SERVICE_HOST": "10.0.0.1"}, False, 2e9, "cpu"),
        ("paper", {"BINDER_SERVICE_HOST": "10.0.0.1", "RADIOALIGN_PROFILE_PINNED": "1"}, False, 2e9, "paper"),
    ],
)
def test_fitting_profile_swaps_only_the_default_that_cannot_run(requested, environ, cuda, memory, chosen, capsys):
    from radioalign.study.profiles import fitting_profile

    assert fitting_profile(requested, environ=environ, has_cuda=cuda, memory=memory) == chosen
    said = capsys.readouterr().out
    if chosen != requested:
        assert said.startswith('profile "smoke" instead of "paper"') and "8 GB" in said, "the first output says why"
    else:
        assert "instead of" not in said


def test_memory_counts_binders_limit():
    from radioalign.study.profiles import memory_bytes

    machine = memory_bytes({})
    assert machine is None or machine > 0
    assert memory_bytes({"MEM_LIMIT": str(2 * 1024**3)}) == 2 * 1024**3
