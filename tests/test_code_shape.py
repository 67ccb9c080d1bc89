"""The shape of the package: three layers, no import circle, short functions, torch-free metrics."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "radioalign"
MAX_LINES = 60
# Layers from the bottom: the library (every part not named here), the study, the tools.
LAYER = {"study": 1, "tools": 2}
LAYER_NAMES = ("the library", "the study", "the tools")


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_longer_than_about_60_lines():
    long = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{rel}:{node.name} ({n} lines, limit {MAX_LINES})")
    assert not long, f"functions longer than the limit: {long}"


def _running(tree: ast.Module) -> ast.Module:
    """``tree`` without its ``if TYPE_CHECKING:`` blocks: imports there serve annotations
    and never run, so they are no arrow between modules."""
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                setattr(node, field, [n for n in block if not (isinstance(n, ast.If) and ast.unparse(n.test) in
                                                                 ("TYPE_CHECKING", "typing.TYPE_CHECKING"))])  # fmt: skip
    return tree


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it may load, read as the pipeline reads imports
    (relative imports resolved, imports inside functions included: they may run). A name
    that is not a module (``from m import f``) counts as its module; a module's own
    ancestors do not count, as Python loads a package before its modules anyway."""
    from radioalign.tools.pipeline import imported_names, module_files

    files = module_files()

    def module_of(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in files:
            parts.pop()
        return ".".join(parts) or None

    graph = {}
    for module, path in files.items():
        names = imported_names(_running(ast.parse(path.read_text())), module, path.name == "__init__.py")
        targets = {module_of(n) for n in names if n.startswith("radioalign")} - {None, module}
        graph[module] = {t for t in targets if not module.startswith(t + ".")}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], 0) if len(parts) > 1 else 0


def test_imports_run_downward_only():
    """The library never imports the study or the tools; the study never imports the tools."""
    upward = [
        f"{m} ({LAYER_NAMES[_layer(m)]}) -> {t} ({LAYER_NAMES[_layer(t)]})"
        for m, targets in _graph().items()
        for t in sorted(targets)
        if _layer(t) > _layer(m)
    ]
    assert not upward, f"imports that run upward: {upward}"


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_circle_finder_finds_a_circle_and_only_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_graph_reads_the_data_arrows():
    # The arrows the data package was untangled into (issue 21): both read ``archive``,
    # the loader makes the synthetic archive, and nothing points back.
    graph = _graph()
    assert {"radioalign.data.archive", "radioalign.data.synthetic"} <= graph["radioalign.data.mirabest"]
    assert "radioalign.data.archive" in graph["radioalign.data.synthetic"]
    assert "radioalign.data.mirabest" not in graph["radioalign.data.synthetic"]
    assert not graph["radioalign.data.archive"] & {"radioalign.data.mirabest", "radioalign.data.synthetic"}


def test_no_import_circle():
    circles = _circles(_graph())
    assert not circles, f"modules that import each other, directly or round a circle: {circles}"


@pytest.mark.parametrize(
    "module", ["radioalign", "radioalign.metrics", "radioalign.study", "radioalign.study.evaluation", "radioalign.text_baselines"]
)
def test_importing_does_not_import_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


def test_profile_is_a_Profile_below_the_edges():
    """A profile's name becomes a ``Profile`` once, at the edges (a notebook's parameters
    cell, the tools' command lines); in the study every ``profile`` parameter is annotated
    ``Profile`` (never a name: ``str``, or unannotated and taking either), and no function
    takes a ``profile_name``. Functions that need only the results folder take the folder."""
    offenders = []
    for path in sorted((PACKAGE / "study").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                for arg in a.posonlyargs + a.args + a.kwonlyargs:
                    annotation = ast.unparse(arg.annotation) if arg.annotation else None
                    if arg.arg == "profile_name" or arg.arg == "profile" and annotation not in ("Profile", "Profile | None"):
                        offenders.append(f"{path.name}:{node.name}({arg.arg}: {annotation})")
    assert not offenders, f"profile parameters that are not a Profile: {offenders}"
