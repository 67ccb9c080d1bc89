"""`make pdf`: build the LaTeX reproduction report in ``paper/`` from one profile's results.

The report source ``paper/report.tex`` reads ``generated/`` beside it. For a profile P
the build happens in ``paper/build/P/``: ``report.tex`` is copied there and
``generated/`` is filled from ``results/P`` (tables, figures, a stamp), so building the
smoke report never touches the published ``paper/generated/`` of the paper profile.

    python -m radioalign.study.report --profile smoke     # -> paper/build/smoke/report.pdf
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ..paths import repo_root
from ..provenance import stamp
from .layout import figures_dir, results_dir

TABLES = ("table1.tex", "comparison.tex", "table1.md", "metrics.csv")


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def collect(profile: str, target: Path) -> list[str]:
    """Copy a profile's tables and figures into ``target`` and write ``stamp.tex``; return what is missing."""
    target.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in TABLES:
        src = results_dir(profile) / name
        if src.is_file():
            shutil.copy2(src, target / name)
        else:
            missing.append(str(src))
    for n in range(1, 6):
        src = figures_dir(profile) / f"fig{n}.pdf"
        if src.is_file():
            shutil.copy2(src, target / src.name)
        else:
            missing.append(str(src))
    s = stamp(profile)
    v = s["versions"]
    (target / "stamp.tex").write_text(
        _latex_escape(
            f"profile {profile}, commit {s['commit']}, {s['created']}; "
            f"radioalign {v['radioalign']}, torch {v['torch']}, transformers {v['transformers']}, peft {v['peft']}"
        )
        + "\n"
    )
    return missing


def build(profile: str, *, latexmk: str = "latexmk") -> Path:
    paper = repo_root() / "paper"
    workdir = paper / "build" / profile
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(paper / "report.tex", workdir / "report.tex")
    missing = collect(profile, workdir / "generated")
    for item in missing:
        print(f"[radioalign] report: not produced yet, shown as missing: {item}")
    if shutil.which(latexmk) is None:
        raise RuntimeError(
            f"{latexmk} is not installed: install TeX Live (Debian: apt-get install latexmk "
            "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended lmodern)"
        )
    subprocess.run(
        [latexmk, "-pdf", "-interaction=nonstopmode", "-halt-on-error", "report.tex"],
        cwd=workdir,
        check=True,
        stdout=subprocess.DEVNULL if not sys.stdout.isatty() else None,
    )
    pdf = workdir / "report.pdf"
    print(f"[radioalign] report: {pdf}")
    return pdf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.study.report", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    args = parser.parse_args(argv)
    build(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
