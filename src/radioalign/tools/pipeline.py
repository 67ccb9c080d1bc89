"""`make paper`: run the numbered notebooks headless with papermill for one profile.

A step's key is a hash of its notebook, its parameters, the source of the ``radioalign``
modules the notebook can reach (its import statements, followed through the package's
own imports: editing ``tools/bench.py`` or ``tools/report.py`` reruns nothing) and the
previous step's key. A step whose key did not change since its last successful run is
skipped, so a second ``make paper`` takes seconds. Executed notebooks are kept in
``build/<profile>/``; the terminal gets one line per step, with its time.

    python -m radioalign.tools.pipeline --profile smoke
    python -m radioalign.tools.pipeline --download --profile paper   # prefetch for offline nodes
    python -m radioalign.tools.pipeline --references                 # regenerate tests/notebooks/
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from ..paths import repo_root
from ..study.layout import results_dir
from ..study.profiles import PINNED_VARIABLE, PROFILES, get_profile

NOTEBOOKS = (
    "01_captioning",
    "02_frozen_embeddings",
    "03_lora_finetuning",
    "04_evaluation",
    "05_similarity",
    "06_tsne",
    "07_text_controls",
    "08_pairs_and_seeds",
    "09_rotations",
    "10_survey",
    "11_labelling",
)
PACKAGE = "radioalign"
# The folder that holds the package (``src/`` in the repository).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# The kernel's own log is noise on the terminal: a warning that it talks over TCP without
# encryption at every start, and at times "KeyboardInterrupt caught in kernel" when the
# client interrupts it before shutting it down. A failing cell still fails the step, with
# its traceback in the executed notebook.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
_DOTTED = re.compile(rf"{PACKAGE}(\.[A-Za-z_]\w*)+")


# ---------------------------------------------------------------------------
# Step keys: the code a notebook can reach


def module_files(src: Path = SOURCE_ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package under ``src``."""
    files = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_names(tree: ast.AST, module: str = "", is_package: bool = False) -> set[str]:
    """The dotted names the import statements in ``tree`` may load, imports inside functions
    included (they may run). ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a
    submodule); relative imports are resolved against ``module``. A string constant that is
    a dotted ``radioalign.`` path counts too: ``importlib`` may load it."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.fullmatch(node.value):
            names.add(node.value)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


@lru_cache(maxsize=1024)
def _module_imports(source: bytes, module: str, is_package: bool) -> frozenset[str]:
    # Keyed on the file's bytes: a run computes one closure per notebook over the same files.
    return frozenset(imported_names(ast.parse(source), module, is_package))


def _parse_cell(source: str) -> ast.AST:
    # IPython magics and shell escapes are not Python: each becomes a `pass`.
    lines = [
        line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
        for line in source.splitlines()
    ]
    return ast.parse("\n".join(lines))


def reached_files(sources: list[str], src: Path = SOURCE_ROOT) -> list[Path]:
    """The package's source files that code with these cell sources can import: the modules
    it names, the modules those import, and so on, each with its parent packages'
    ``__init__.py`` (importing ``a.b`` runs ``a``). Every file when a cell does not parse."""
    files = module_files(src)
    seen: set[str] = set()
    todo: list[str] = []

    def add(names):
        for name in names:
            parts = name.split(".")
            for prefix in (".".join(parts[: i + 1]) for i in range(len(parts))):
                if prefix in files and prefix not in seen:
                    seen.add(prefix)
                    todo.append(prefix)

    try:
        trees = [_parse_cell(source) for source in sources]
    except SyntaxError:
        return sorted(files.values())
    for tree in trees:
        add(imported_names(tree))
    while todo:
        module = todo.pop()
        path = files[module]
        add(_module_imports(path.read_bytes(), module, path.name == "__init__.py"))
    return sorted(files[m] for m in seen)


def code_cells(notebook: Path) -> list[str]:
    """The sources of a notebook's code cells."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells if c["cell_type"] == "code"]


def step_key(notebook: Path, parameters: dict, previous: str, src: Path = SOURCE_ROOT) -> str:
    """SHA-256 of the notebook, its parameters, the package files it reaches
    (:func:`reached_files`, by path and content) and the previous step's key."""
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    for path in reached_files(code_cells(notebook), src):
        h.update(path.relative_to(src).as_posix().encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(previous.encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Running the steps


def execute(notebook: Path, executed: Path, parameters: dict, timeout: int, progress: bool | dict = False) -> None:
    """Run ``notebook`` with papermill into ``executed``, in the notebook's folder."""
    import papermill as pm

    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebook.parent),
        execution_timeout=timeout,
        progress_bar=progress,
        log_output=False,
        extra_arguments=KERNEL_ARGUMENTS,
    )


@contextmanager
def _pinned_profile():
    # The kernels inherit this: the profile the pipeline passes is a choice
    # (profiles.fitting_profile never swaps it for one that fits the machine).
    before = os.environ.get(PINNED_VARIABLE)
    os.environ[PINNED_VARIABLE] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PINNED_VARIABLE, None)
        else:
            os.environ[PINNED_VARIABLE] = before


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _run_step(name: str, notebook: Path, executed: Path, parameters: dict, timeout: int) -> None:
    """One step and its one line: on a terminal papermill's progress bar stands in for the
    line while the step runs; in a log the step's name comes first, its time when it ends."""
    tty = sys.stderr.isatty()
    label = f"[radioalign] {name:<21}"
    if not tty:
        print(label, end=" ", flush=True)
    start = time.monotonic()
    try:
        execute(notebook, executed, parameters, timeout, progress={"desc": name, "leave": False} if tty else False)
    except BaseException:
        print("failed" if not tty else f"{label} failed", flush=True)
        raise
    took = f"ran in {_duration(time.monotonic() - start)}"
    print(took if not tty else f"{label} {took}", flush=True)


def run(
    profile: str,
    *,
    timeout: int = 7200,
    force: bool = False,
    build: Path | None = None,
    parameters: dict | None = None,
    notebooks: Path | None = None,
    src: Path = SOURCE_ROOT,
) -> list[str]:
    """Run the notebooks (``notebooks/`` unless given) for ``profile``; return the names of
    the steps that ran."""
    get_profile(profile)  # fail early on an unknown profile
    root = repo_root()
    notebooks = Path(notebooks) if notebooks else root / "notebooks"
    build = build or root / "build" / profile
    build.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, **(parameters or {})}
    previous, ran, missing = "", [], []
    print(f"[radioalign] profile {profile}: executed notebooks in {build}", flush=True)
    with _pinned_profile():
        for name in NOTEBOOKS:
            notebook = notebooks / f"{name}.ipynb"
            if not notebook.is_file():
                missing.append(name)
                print(f"[radioalign] {name:<21} not there yet ({notebook.name} is missing): skipped")
                continue
            key = step_key(notebook, params, previous, src)
            done = build / f".{name}.key"
            executed = build / f"{name}.ipynb"
            previous = key
            if not force and executed.is_file() and done.is_file() and done.read_text() == key:
                print(f"[radioalign] {name:<21} skipped: inputs unchanged")
                continue
            done.unlink(missing_ok=True)
            _run_step(name, notebook, executed, params, timeout)
            done.write_text(key)
            ran.append(name)
    if profile == "paper":
        publish(profile)
    if missing:
        print(f"[radioalign] not there yet: {', '.join(missing)}")
    print(f"[radioalign] results in {results_dir(get_profile(profile))}")
    return ran


def publish(profile: str = "paper") -> None:
    """Publish a profile's results from the figure registry: tables, the report's figures
    and the stamp to ``paper/generated/`` (``report.collect``), and each registered report
    figure's files with their stamps to ``figures/``.

    Raises ``FigureMissingError`` (naming the notebook that makes it) when a registered
    figure is missing, before anything is copied.
    """
    from ..study.figures import report_figures
    from .report import collect

    root = repo_root()
    collect(profile, root / "paper" / "generated")
    published = root / "figures"
    published.mkdir(parents=True, exist_ok=True)
    for figure in report_figures():
        for path in figure.paths(results_dir(get_profile(profile))):
            for src in (path, path.with_name(path.name + ".stamp.json")):
                if src.is_file():
                    shutil.copy2(src, published / src.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.tools.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper", choices=sorted(PROFILES))
    parser.add_argument("--timeout", type=int, default=7200, help="execution timeout per cell, seconds")
    parser.add_argument("--force", action="store_true", help="rerun every step")
    parser.add_argument("--download", action="store_true", help="prefetch data, captions and model, then stop")
    parser.add_argument("--references", action="store_true", help="regenerate tests/notebooks/ from the smoke profile")
    args = parser.parse_args(argv)
    if args.download:
        from .download import prefetch

        prefetch(args.profile)
        return 0
    if args.references:
        return make_references()
    from papermill.exceptions import PapermillExecutionError

    try:
        run(args.profile, timeout=args.timeout, force=args.force)
    except PapermillExecutionError as exc:
        # The executed notebook keeps the full traceback; the terminal gets the reason.
        print(f"[radioalign] a step failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print(f"[radioalign] the executed notebook with the traceback is in build/{args.profile}/", file=sys.stderr)
        return 1
    return 0


def make_references() -> int:
    """Run the smoke profile from scratch in ``build/references`` and copy the executed
    notebooks to ``tests/notebooks/``, the regression references nbval compares against."""
    root = repo_root()
    build = root / "build" / "references"
    if build.exists():
        shutil.rmtree(build)
    # Fresh results, so the references never depend on what an earlier run left behind.
    os.environ["RADIOALIGN_RESULTS_DIR"] = str(build / "results")
    run("smoke", force=True, build=build)
    target = root / "tests" / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for name in NOTEBOOKS:
        if (build / f"{name}.ipynb").is_file():
            shutil.copy2(build / f"{name}.ipynb", target / f"{name}.ipynb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
