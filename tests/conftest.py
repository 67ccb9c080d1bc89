"""Shared test set-up: fully offline, real data from ../shared when present."""

from __future__ import annotations

import os
import shutil

# Before any Hugging Face import: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from radioalign.paths import shared_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared() -> Path:
    """The project's ../shared folder; tests that need it skip visibly when it is absent
    (a user's fresh clone has no ../shared)."""
    path = shared_dir()
    if path is None or not (path / "data").is_dir():
        pytest.skip("../shared/data is absent (a fresh clone): real-data test skipped")
    return path


@pytest.fixture(scope="session")
def mirabest_f_archive(shared: Path) -> Path:
    path = shared / "data" / "mirabest" / "MiraBest_F_batches.tar.gz"
    if not path.is_file():
        pytest.skip(f"{path} is absent: real-data test skipped")
    return path


@pytest.fixture(scope="session")
def published_captions_dir(shared: Path) -> Path:
    path = shared / "data" / "captions"
    if not path.is_dir():
        pytest.skip(f"{path} is absent: published-captions test skipped")
    return path


@pytest.fixture(scope="module")
def one_thread():
    """Tiny matrices: thread synchronisation costs more than it saves on shared cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory) -> Path:
    """A tiny SigLIP with a locally built tokenizer, saved once per session (no download)."""
    from tiny_siglip import tiny_folder

    return tiny_folder(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def env(tiny_siglip_dir) -> dict[str, str]:
    """The environment of a `python -m radioalign` subprocess: `--model tiny` finds the
    session's tiny SigLIP, this checkout's src/ is imported, no network, one thread."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {
        **os.environ, "RADIOALIGN_MODELS_DIR": str(tiny_siglip_dir.parent), "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1",
    }  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tiny_siglip_dir):
    """``(model, processor)`` of the tiny SigLIP, loaded through ``load_siglip`` once per module."""
    from tiny_siglip import load_tiny

    return load_tiny(tiny_siglip_dir)


# ---------------------------------------------------------------------------
# The session's one smoke study.
#
# `make test` runs nbval over the smoke references in tests/notebooks/: that run *is* the
# smoke study, written to $RADIOALIGN_RESULTS_DIR. Tests that take the `smoke_study`
# fixture check what it wrote; they are moved after the notebooks, whatever the order of
# collection. When the references are not part of the session (`pytest tests/test_pipeline.py`),
# the fixture runs `make paper PROFILE=smoke`'s pipeline once instead.

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

SENTINEL_KEY = "fake-gemini-key-radioalign-sentinel-0123456789abcdef"
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")


@dataclass
class SmokeStudy:
    """What one smoke study left behind: its results folder, the folders to search for
    the key (only files written since ``since``), and every text it printed."""

    results: Path
    written: list[Path]
    since: float
    outputs: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    runner: str = "nbval"


_NBVAL = pytest.StashKey[SmokeStudy]()


def _is_nbval_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def _study(config) -> SmokeStudy:
    return config.stash.setdefault(_NBVAL, SmokeStudy(results=Path(), written=[], since=time.time()))


def pytest_sessionstart(session):
    _study(session.config)  # `since`: the session's start


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: only what really runs
def pytest_collection_modifyitems(config, items):
    from radioalign.tools.pipeline import NOTEBOOKS

    notebooks = {Path(str(item.fspath)).stem for item in items if _is_nbval_cell(item)}
    _study(config).runner = "nbval" if set(NOTEBOOKS) <= notebooks else ""
    late = [item for item in items if "smoke_study" in getattr(item, "fixturenames", ())]
    if late:
        ids = {id(item) for item in late}
        items[:] = [item for item in items if id(item) not in ids] + late


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    # The references' kernels start in their first cell's set-up: with a key in their
    # environment, as a user with a Gemini key would run them.
    if not _is_nbval_cell(item):
        return (yield)
    saved = {name: os.environ.get(name) for name in KEY_VARIABLES}
    os.environ.update(dict.fromkeys(KEY_VARIABLES, SENTINEL_KEY))
    try:
        return (yield)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _is_nbval_cell(item) and call.when == "call":
        study = _study(item.config)
        study.outputs.append(json.dumps(getattr(item, "test_outputs", None) or [], default=str))
        if report.failed:
            study.failed.append(item.nodeid)
    return report


def _pipeline_study(tmp: Path) -> SmokeStudy:
    """`make paper PROFILE=smoke` in a subprocess, with the key in its environment."""
    from radioalign import paths

    results, build, data = tmp / "results", tmp / "build", tmp / "data"
    env = dict(os.environ, RADIOALIGN_RESULTS_DIR=str(results), RADIOALIGN_DATA_DIR=str(data), HF_HUB_OFFLINE="1")
    env.update(dict.fromkeys(KEY_VARIABLES, SENTINEL_KEY))
    code = f"from pathlib import Path; from radioalign.tools.pipeline import run; run('smoke', build=Path({str(build)!r}))"
    since = time.time()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    failed = [] if done.returncode == 0 else [f"pipeline exit {done.returncode}: {done.stdout[-2000:]}{done.stderr[-2000:]}"]
    return SmokeStudy(
        results=results / "smoke", written=[results, build, data, paths.cache_dir()], since=since,
        outputs=[done.stdout, done.stderr], failed=failed, runner="pipeline",
    )  # fmt: skip


@pytest.fixture(scope="session")
def smoke_study(request, tmp_path_factory) -> SmokeStudy:
    """This session's smoke study: the nbval run of the references when the session has
    all of them, else one pipeline run into a temporary folder."""
    study = _study(request.config)
    if study.runner != "nbval":
        return _pipeline_study(tmp_path_factory.mktemp("smoke"))
    from radioalign import paths
    from radioalign.study.layout import results_dir
    from radioalign.study.profiles import get_profile

    study.results = results_dir(get_profile("smoke"))
    study.written = [study.results, paths.data_dir(), paths.cache_dir()]
    return study


# ---------------------------------------------------------------------------
# A headless Chromium for the pages' tests (Debian's package, driven by Playwright)


def chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Chromium installed (Debian: apt-get install chromium): the browser test is skipped")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    executable = chromium_path()
    with sync_api.sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        except Exception as err:  # noqa: BLE001 - any launch failure means: no usable browser here
            pytest.skip(f"Playwright cannot launch {executable}: {err}")
        yield chromium
        chromium.close()
