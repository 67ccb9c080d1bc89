"""`make notebooks-index`: the parts of the notebooks and the README made from one source.

The repository's address lives in one place, ``[project.urls] Repository`` in
``pyproject.toml``. From it this tool writes

- each notebook's first code cell, the Colab install cell;
- the README's Binder and Colab badges and its notebook table (title of each notebook,
  from its first heading), between ``<!-- notebooks-index:... -->`` markers;
- the paragraphs on the published-caption controls, in the README and in
  ``paper/controls_text.md``, from ``paper/measurements/controls_published.json``
  (``radioalign.study.published_controls``), so each number quoted there has a committed source.

``--check`` changes nothing and exits 1 naming the files that are out of date (a test
runs it), as PythonDataScienceHandbook's ``tools/`` keep its index in step.

    python -m radioalign.tools.notebooks_index           # rewrite what is out of date
    python -m radioalign.tools.notebooks_index --check   # exit 1 if anything is
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ..paths import repo_root
from .pipeline import NOTEBOOKS

BRANCH = "main"
MARKERS = ("badges", "table", "layout", "deviations", "controls-published")
PAPER_PROSE = ("paper", "controls_text.md")  # a file of paper/ with a generated block

COLAB_CELL = '''\
# On Google Colab, install the package first (elsewhere `make` has built .venv with it).
# Written by `make notebooks-index` from [project.urls] Repository in pyproject.toml.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    repo = os.environ.get("RADIOALIGN_GIT", "{url}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"radioalign @ git+{{repo}}"], check=True)'''


def repository_url(root: Path) -> str:
    """``[project.urls] Repository`` of ``root/pyproject.toml``, a GitHub address."""
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    url = project.get("urls", {}).get("Repository", "").rstrip("/")
    parsed = urlparse(url)
    if parsed.netloc != "github.com" or len(parsed.path.strip("/").split("/")) != 2:
        raise ValueError(f"pyproject.toml's [project.urls] Repository must be https://github.com/<owner>/<name>, not {url!r}")
    return url.removesuffix(".git")


def colab_cell(url: str) -> str:
    """The source of every notebook's first code cell."""
    return COLAB_CELL.format(url=url)


def _links(url: str, name: str) -> tuple[str, str]:
    slug = urlparse(url).path.strip("/")
    binder = f"https://mybinder.org/v2/gh/{slug}/{BRANCH}?urlpath=lab/tree/notebooks/{name}.ipynb"
    colab = f"https://colab.research.google.com/github/{slug}/blob/{BRANCH}/notebooks/{name}.ipynb"
    return binder, colab


def _title(notebook: Path) -> str:
    """The notebook's first heading, without its ``01 ·`` number."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    return re.sub(r"^#+\s*(\d+\s*·\s*)?", "", line).strip()
    raise ValueError(f"{notebook} has no markdown heading to name it by")


def readme_blocks(root: Path, url: str) -> dict[str, str]:
    """The README's generated blocks, by marker name."""
    binder, colab = _links(url, NOTEBOOKS[0])
    badges = (
        f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder})\n"
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})"
    )
    rows = ["| notebook | what it does | open in |", "| --- | --- | --- |"]
    for name in NOTEBOOKS:
        binder, colab = _links(url, name)
        title = _title(root / "notebooks" / f"{name}.ipynb").replace("|", "\\|")
        rows.append(f"| [`{name}`](notebooks/{name}.ipynb) | {title} | [Colab]({colab}) · [Binder]({binder}) |")
    return {"badges": badges, "table": "\n".join(rows), "layout": layout_table(root), "deviations": deviations_block(),
            "controls-published": published_controls_block()}


def _summary(path: Path) -> str:
    """The first line of a module's docstring (for a package, of its ``__init__.py``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    if not doc:
        raise ValueError(f"{path} has no module docstring to describe it by")
    return doc.strip().splitlines()[0].replace("|", "\\|")


def layout_table(root: Path) -> str:
    """One line per module of ``src/radioalign``: the library first, then the study, then the tools."""
    package = root / "src" / "radioalign"
    rows = ["| module | holds |", "| --- | --- |"]
    layer = {"study": 1, "tools": 2}  # the library's parts are 0
    for path in sorted(package.rglob("*.py"), key=lambda p: (layer.get(p.relative_to(package).parts[0], 0), str(p))):
        rel = path.relative_to(package.parent)
        if path.name == "__main__.py":
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        rows.append(f"| `{name}` | {_summary(path)} |")
    return "\n".join(rows)


def deviations_block() -> str:
    """The deviation registry (``radioalign.study.deviations()``) as the README's table."""
    from ..study.deviation_registry import render_markdown

    return render_markdown().rstrip("\n")


def published_controls_block() -> str:
    """The published-caption controls' paragraphs (``published_controls.markdown_block``)."""
    from ..study.published_controls import markdown_block

    return markdown_block()


def _fill(text: str, blocks: dict[str, str]) -> str:
    for name, body in blocks.items():
        start, end = f"<!-- notebooks-index:{name} -->", f"<!-- /notebooks-index:{name} -->"
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        if len(pattern.findall(text)) != 1:
            raise ValueError(f"the file needs exactly one {start} ... {end} block")
        text = pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)
    return text


def _with_colab_cell(text: str, url: str) -> str:
    nb = json.loads(text)
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    if "".join(first["source"]) == colab_cell(url):
        return text  # compare the cell, not the file's JSON layout
    first["source"] = colab_cell(url).splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def update(root: Path | None = None, *, write: bool = True) -> list[Path]:
    """Bring the Colab cells and the README's blocks up to date with ``pyproject.toml``;
    return the files that were (``write=False``: that would be) changed."""
    root = Path(root) if root else repo_root()
    url = repository_url(root)
    targets = {root / "notebooks" / f"{name}.ipynb": lambda t: _with_colab_cell(t, url) for name in NOTEBOOKS}
    targets[root / "README.md"] = lambda t: _fill(t, readme_blocks(root, url))
    if root.joinpath(*PAPER_PROSE).is_file():
        targets[root.joinpath(*PAPER_PROSE)] = lambda t: _fill(t, {"controls-published": published_controls_block()})
    stale = []
    for path, rewrite in targets.items():
        text = path.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new, encoding="utf-8")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.tools.notebooks_index", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    root = repo_root()
    stale = update(root, write=not args.check)
    for path in stale:
        print(f"{'out of date' if args.check else 'rewrote'}: {path.relative_to(root)}")
    if args.check and stale:
        print("run `make notebooks-index`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
