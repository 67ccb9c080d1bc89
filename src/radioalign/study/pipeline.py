"""`make paper`: run notebooks 01 -> 06 headless with papermill for one profile.

Each step's key is a hash of its notebook, its parameters, the package source and
the previous step's key; a step whose key did not change since its last successful
run is skipped, so a second ``make paper`` takes seconds. Executed notebooks are
kept in ``build/<profile>/``.

    python -m radioalign.study.pipeline --profile smoke
    python -m radioalign.study.pipeline --download --profile paper   # prefetch for offline nodes
    python -m radioalign.study.pipeline --references                 # regenerate tests/notebooks/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

from ..paths import repo_root
from .layout import figures_dir, results_dir
from .profiles import PROFILES, get_profile

NOTEBOOKS = (
    "01_captioning",
    "02_frozen_embeddings",
    "03_lora_finetuning",
    "04_evaluation",
    "05_similarity",
    "06_tsne",
)


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((repo_root() / "src" / "radioalign").rglob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def step_key(notebook: Path, parameters: dict, previous: str) -> str:
    h = hashlib.sha256()
    h.update(notebook.read_bytes())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    h.update(_source_hash().encode())
    h.update(previous.encode())
    return h.hexdigest()


def run(profile: str, *, timeout: int = 7200, force: bool = False, build: Path | None = None, parameters: dict | None = None) -> list[str]:
    """Run the notebooks for ``profile``; return the names of the steps that ran."""
    import papermill as pm

    get_profile(profile)  # fail early on an unknown profile
    root = repo_root()
    build = build or root / "build" / profile
    build.mkdir(parents=True, exist_ok=True)
    params = {"profile": profile, **(parameters or {})}
    previous, ran, missing = "", [], []
    for name in NOTEBOOKS:
        notebook = root / "notebooks" / f"{name}.ipynb"
        if not notebook.is_file():
            missing.append(name)
            print(f"[radioalign] {name}: not there yet (notebooks/{name}.ipynb is missing) — skipped")
            continue
        key = step_key(notebook, params, previous)
        done = build / f".{name}.key"
        executed = build / f"{name}.ipynb"
        previous = key
        if not force and executed.is_file() and done.is_file() and done.read_text() == key:
            print(f"[radioalign] {name}: inputs unchanged — skipped")
            continue
        print(f"[radioalign] {name}: running (profile {profile})", flush=True)
        start = time.time()
        done.unlink(missing_ok=True)
        pm.execute_notebook(
            str(notebook),
            str(executed),
            parameters=params,
            kernel_name="python3",
            cwd=str(notebook.parent),
            execution_timeout=timeout,
            progress_bar=sys.stderr.isatty(),
            log_output=False,
        )
        done.write_text(key)
        ran.append(name)
        print(f"[radioalign] {name}: done in {time.time() - start:.0f} s", flush=True)
    if profile == "paper":
        publish(profile)
    if missing:
        print(f"[radioalign] not there yet: {', '.join(missing)}")
    print(f"[radioalign] results in {results_dir(profile)}")
    return ran


def publish(profile: str = "paper") -> None:
    """Copy the paper profile's table and figures to ``paper/generated/`` and ``figures/``."""
    root = repo_root()
    generated = root / "paper" / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    for name in ("table1.md", "table1.tex", "metrics.csv"):
        src = results_dir(profile) / name
        if src.is_file():
            shutil.copy2(src, generated / name)
    if figures_dir(profile).is_dir():
        for fig in figures_dir(profile).glob("fig*"):
            shutil.copy2(fig, root / "figures" / fig.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.study.pipeline", description=__doc__.splitlines()[0])
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
        print(f"\n[radioalign] a step failed: {exc.ename}: {exc.evalue}", file=sys.stderr)
        print(f"[radioalign] the executed notebook with the traceback is in build/{args.profile}/", file=sys.stderr)
        return 1
    return 0


def make_references() -> int:
    """Run the smoke profile from scratch in ``build/references`` and copy the executed
    notebooks to ``tests/notebooks/``, the regression references nbval compares against."""
    import os

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
