"""`make paper`: the smoke study's outputs, step keys over the code a notebook reaches,
skipping, and papermill's one clean line per step.

The smoke study itself runs once per session (the `smoke_study` fixture in conftest.py:
nbval's run of the references in `make test`, else one pipeline run). The skipping
tests replace papermill with a stub, so they cost no kernel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import SENTINEL_KEY

from radioalign.tools import pipeline
from radioalign.tools.pipeline import NOTEBOOKS, SOURCE_ROOT, code_cells, reached_files, step_key
from radioalign.study.profiles import PINNED_VARIABLE

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# The smoke study


@pytest.mark.slow
def test_smoke_study_writes_table_figures_stamps_and_no_key(smoke_study, monkeypatch):
    from radioalign.study.figures import report_figures

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(smoke_study.results.parent))  # where the layout looks
    assert not smoke_study.failed, f"the smoke study ({smoke_study.runner}) failed: {smoke_study.failed[:3]}"
    out = smoke_study.results
    expected = [out / name for name in ("metrics.csv", "table1.md", "table1.tex")]
    expected += [path for figure in report_figures() for path in figure.paths(out)]
    for path in expected:
        assert path.is_file(), f"{path} was not written"
        assert path.stat().st_mtime >= smoke_study.since, f"{path} is left from an earlier session"
        stamp = json.loads(path.with_name(path.name + ".stamp.json").read_text())
        assert stamp["profile"] == "smoke" and stamp["commit"] and stamp["versions"]["torch"], path
    for figure in report_figures():
        assert all(p.stat().st_size > 1000 for p in figure.paths(out)), f"{figure.key} is empty"
    assert "Frozen" in (out / "table1.md").read_text()

    # The key sat in every kernel's environment: no file written since and no output holds it.
    leaks = [
        str(path)
        for base in smoke_study.written
        if base.is_dir()
        for path in base.rglob("*")
        if path.is_file() and path.stat().st_mtime >= smoke_study.since and SENTINEL_KEY.encode() in path.read_bytes()
    ]
    assert not leaks, f"the API key was written to {leaks}"
    assert smoke_study.outputs, "the study's outputs were collected"
    assert not [text for text in smoke_study.outputs if SENTINEL_KEY in text], "the API key was printed"


# ---------------------------------------------------------------------------
# Step keys: what a notebook reaches


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "radioalign" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_import_closure_follows_relative_lazy_and_dotted_imports(tmp_path):
    src = _package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import f\n",
        "b.py": "def f():\n    from .sub import c  # lazy: may run\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import d\n",
        "d.py": "TARGET = 'radioalign.e.g'  # loaded through importlib\n",
        "e.py": "",
        "unreached.py": "import radioalign.a\n",
    })  # fmt: skip

    def reached(*sources):
        return sorted(p.relative_to(src / "radioalign").as_posix() for p in reached_files(list(sources), src))

    chain = ["__init__.py", "a.py", "b.py", "d.py", "e.py", "sub/__init__.py", "sub/c.py"]
    assert reached("%matplotlib inline\nfrom radioalign import a") == chain
    assert reached("import radioalign.a as x") == chain
    assert reached("from radioalign.sub.c import nothing") == sorted(["__init__.py", "sub/__init__.py", "sub/c.py", "d.py", "e.py"])
    assert reached("import numpy") == []
    everything = sorted(p.relative_to(src / "radioalign").as_posix() for p in (src / "radioalign").rglob("*.py"))
    assert reached("print(1 +") == everything, "a cell that does not parse reaches everything"


@pytest.fixture
def src_copy(tmp_path) -> Path:
    """A copy of the package source to edit."""
    shutil.copytree(SOURCE_ROOT / "radioalign", tmp_path / "src" / "radioalign", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "src"


def _keys(src: Path, notebooks: Path = ROOT / "notebooks") -> list[str]:
    keys, previous = [], ""
    for name in NOTEBOOKS:
        previous = step_key(notebooks / f"{name}.ipynb", {"profile": "smoke"}, previous, src)
        keys.append(previous)
    return keys


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


def test_step_keys_change_only_with_code_a_notebook_reaches(src_copy):
    reached = [{p.relative_to(src_copy) for p in reached_files(code_cells(ROOT / "notebooks" / f"{n}.ipynb"), src_copy)} for n in NOTEBOOKS]
    tools = [Path("radioalign/tools") / f"{m}.py" for m in ("bench", "report", "download", "pipeline", "notebooks_index")]
    assert not set(tools) & set.union(*reached), "no notebook imports the tools"
    before = _keys(src_copy)
    for tool in tools:
        _touch(src_copy / tool)
    assert _keys(src_copy) == before, "editing bench.py or report.py reruns nothing"

    # A module first reached by a later notebook: the steps before it keep their keys,
    # it and every step after it (they read its outputs) get new ones.
    first = next(i for i in range(1, len(NOTEBOOKS)) if reached[i] - set.union(*reached[:i]))
    _touch(src_copy / sorted(reached[first] - set.union(*reached[:first]))[0])
    after = _keys(src_copy)
    assert after[:first] == before[:first]
    assert all(a != b for a, b in zip(after[first:], before[first:]))


# ---------------------------------------------------------------------------
# Skipping: papermill replaced by a stub


@pytest.fixture
def stub_papermill(monkeypatch):
    """Replaces the papermill call: records each step and writes its executed notebook."""
    calls = []

    def execute(notebook, executed, parameters, timeout, progress=False):
        calls.append((notebook.stem, dict(parameters), os.environ.get(PINNED_VARIABLE)))
        Path(executed).write_text(notebook.read_text())

    monkeypatch.setattr(pipeline, "execute", execute)
    monkeypatch.setattr(pipeline, "publish", lambda profile: None)
    return calls


def test_a_second_run_skips_every_step_and_an_edit_reruns_from_its_step(tmp_path, src_copy, stub_papermill, capsys):
    build = tmp_path / "build"
    assert pipeline.run("smoke", build=build, src=src_copy) == list(NOTEBOOKS)
    assert {c[1]["profile"] for c in stub_papermill} == {"smoke"}
    assert {c[2] for c in stub_papermill} == {"1"}, "the kernels see the profile as pinned"
    assert os.environ.get(PINNED_VARIABLE) is None, "and the pin ends with the run"
    assert pipeline.run("smoke", build=build, src=src_copy) == [], "unchanged inputs: every step skipped"

    _touch(src_copy / "radioalign" / "tools" / "bench.py")
    assert pipeline.run("smoke", build=build, src=src_copy) == []

    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    edited = nbformat.read(notebooks / f"{NOTEBOOKS[3]}.ipynb", as_version=4)
    edited.cells.append(nbformat.v4.new_markdown_cell("an edit"))
    nbformat.write(edited, notebooks / f"{NOTEBOOKS[3]}.ipynb")
    assert pipeline.run("smoke", build=build, src=src_copy, notebooks=notebooks) == list(NOTEBOOKS[3:])
    assert pipeline.run("smoke", build=build, src=src_copy, notebooks=notebooks, force=True) == list(NOTEBOOKS)

    lines = [line for line in capsys.readouterr().out.splitlines() if re.match(rf"\[radioalign\] ({'|'.join(NOTEBOOKS)})\b", line)]
    assert len(lines) == 5 * len(NOTEBOOKS), "one line per step and run"
    assert sum("ran in" in line for line in lines) == 2 * len(NOTEBOOKS) + len(NOTEBOOKS[3:])


# ---------------------------------------------------------------------------
# The real papermill call, on two small notebooks


def _notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('profile = "paper"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.mark.slow
def test_papermill_steps_print_one_clean_line_each(tmp_path, capfd, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    check = "from radioalign.study.profiles import fitting_profile\nprint('chosen', fitting_profile(profile))"
    _notebook(notebooks / f"{NOTEBOOKS[0]}.ipynb", check)
    _notebook(notebooks / f"{NOTEBOOKS[1]}.ipynb", "import os\nprint('pinned', os.environ.get('RADIOALIGN_PROFILE_PINNED'))")
    build = tmp_path / "build"

    # On Binder a notebook left to itself swaps "paper" for "smoke"; `make paper` pins its choice.
    monkeypatch.setenv("BINDER_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setattr(pipeline, "publish", lambda profile: None)
    ran = pipeline.run("paper", build=build, notebooks=notebooks, timeout=120)
    out, err = capfd.readouterr()
    assert ran == list(NOTEBOOKS[:2])
    steps = [line for line in out.splitlines() if re.match(r"\[radioalign\] \d\d_", line)]
    assert [line.split()[1] for line in steps] == list(NOTEBOOKS), out
    assert all(re.fullmatch(r"\[radioalign\] \S+ +ran in \d+ s", line) for line in steps[:2]), steps
    assert all("not there yet" in line for line in steps[2:])
    assert "WARNING" not in err and "IPKernelApp" not in err, f"kernel noise on the terminal: {err[-500:]}"
    first, second = (nbformat.read(build / f"{n}.ipynb", as_version=4) for n in NOTEBOOKS[:2])
    assert "chosen paper" in first.cells[-1].outputs[0]["text"]
    assert "pinned 1" in second.cells[-1].outputs[0]["text"], "the kernels see the profile as pinned"
