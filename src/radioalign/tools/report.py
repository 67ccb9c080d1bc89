"""`make pdf`: build the LaTeX reproduction report in ``paper/`` from one profile's results.

The report source ``paper/report.tex`` reads ``generated/`` beside it. For a profile P
the build happens in ``paper/build/P/``: ``report.tex`` is copied there and
``generated/`` is filled from ``results/P`` (tables, figures, a stamp), so building the
smoke report never touches the published ``paper/generated/`` of the paper profile.

The figures are the registry's (``radioalign.study.figures.FIGURES``, the paper's and the
extras): a missing one stops the build with an error that names the notebook making it,
and ``generated/figures.tex`` places each with its registered title as caption.

    python -m radioalign.tools.report --profile smoke     # -> paper/build/smoke/report.pdf
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from ..paths import repo_root
from ..provenance import stamp
from ..study.figures import PAPER, Figure, FigureMissingError, report_figures, require_figures
from ..study.deviation_registry import render_latex as deviations_latex
from ..study.published_controls import latex_block as published_controls_latex
from ..study.layout import results_dir
from ..study.profiles import get_profile

# controls.tex: the second table (radioalign.study.controls), written by the last control notebook (09)
TABLES = ("table1.tex", "comparison.tex", "table1.md", "metrics.csv", "controls.tex", "controls.csv")


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def figures_tex(figures: list[Figure]) -> str:
    """LaTeX for the report's figures, from the registry: each figure's PDF, its title as
    the caption, and the notebook and function that made it (showyourwork's ``\\script{}``)."""
    blocks = []
    for f in figures:
        made = f"notebooks/{f.notebook}.ipynb" + (f", {f.function}" if f.function else "")
        extra = "" if f.kind == PAPER else " (not in the original paper)"
        blocks.append(
            "\\begin{figure}[H]\\centering\n"
            f"\\includegraphics[width=0.95\\linewidth]{{generated/{f.key}.pdf}}\n"
            f"\\caption{{{_latex_escape(f.title)}{extra} {{\\footnotesize\\emph{{Made by \\texttt{{{_latex_escape(made)}}}.}}}}}}\n"
            f"\\label{{fig:{f.key}}}\n"
            "\\end{figure}\n"
        )
    return "\n".join(blocks)


def collect(profile: str, target: Path) -> list[str]:
    """Copy a profile's tables and its registered report figures into ``target``, write
    ``figures.tex`` and ``stamp.tex``; return the tables that are missing.

    Raises ``FigureMissingError`` naming each missing figure and the notebook that makes it.
    """
    figures = report_figures()
    results = results_dir(get_profile(profile))  # the tool's edge: the name becomes a Profile here
    require_figures(results, figures)
    target.mkdir(parents=True, exist_ok=True)
    missing = []
    for name in TABLES:
        src = results / name
        if src.is_file():
            shutil.copy2(src, target / name)
        else:
            missing.append(str(src))
    for f in figures:
        for path in f.paths(results):
            shutil.copy2(path, target / path.name)
    (target / "figures.tex").write_text(figures_tex(figures))
    (target / "deviations.tex").write_text(deviations_latex())
    (target / "controls_published.tex").write_text(published_controls_latex())
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
        print(f"[radioalign] report: table not produced yet, shown as missing: {item}")
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
    parser = argparse.ArgumentParser(prog="python -m radioalign.tools.report", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    args = parser.parse_args(argv)
    try:
        build(args.profile)
    except FigureMissingError as exc:
        print(f"[radioalign] report: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
