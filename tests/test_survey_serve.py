"""The README's survey commands, run as written, and the search page they lead to.

The store is made by the README's own commands (ingest a FITS folder, search --text,
classify), parsed from its survey section, so README and test cannot drift. Then
`radioalign serve` runs in a subprocess on a free port: its JSON API is checked with
plain HTTP, and the page in a real headless Chromium (Debian's package, driven by
Playwright) types a query, sees results and clicks 'more like this'."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_survey_cli import write_bad_files, write_good_files  # noqa: E402

from radioalign.survey.cli import main  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[list[str]]:
    """The first ```bash block of the README's survey section, one command per line."""
    text = README.read_text()
    section = re.search(r"<!-- survey:start -->(.*?)<!-- survey:end -->", text, re.S)
    assert section, "README.md needs a survey section between <!-- survey:start --> and <!-- survey:end -->"
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    assert block, "the survey section needs a ```bash block of commands"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    return [c for c in commands if c]


@pytest.fixture(scope="module")
def env(tiny_siglip_dir) -> dict[str, str]:
    """The server's environment: the store's model `tiny` is the session's tiny SigLIP; no network."""
    return {
        **os.environ, "RADIOALIGN_MODELS_DIR": str(tiny_siglip_dir.parent), "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1",
    }  # fmt: skip


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory, tiny_siglip_dir) -> dict:
    """A folder of FITS cut-outs, then the README's commands in it, as written: each one
    through the console script's entry point (``radioalign = radioalign.survey.cli:main``),
    in this process, with its stdout and stderr captured."""
    home = tmp_path_factory.mktemp("readme")
    commands = readme_commands()
    folder = next(Path(a) for c in commands if c[:2] == ["radioalign", "ingest"] for a in c[2:] if not a.startswith("-"))
    names = write_good_files(home / folder, 9)
    bad = write_bad_files(home / folder / "broken")
    outputs = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        mp.setenv("RADIOALIGN_MODELS_DIR", str(tiny_siglip_dir.parent))  # where `--model tiny` is found
        for command in commands:
            assert command[0] == "radioalign", f"README survey block: {command} is not a radioalign command"
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(command[1:])
            assert code == 0, f"{shlex.join(command)} failed:\n{err.getvalue()[-3000:]}"
            outputs.append((command, out.getvalue(), err.getvalue()))
    store = next(home / c[c.index("--store") + 1] for c in commands if "--store" in c)
    return {"home": home, "folder": home / folder, "names": names, "bad": bad, "outputs": outputs, "store": store}


def test_the_readme_commands_ingest_search_and_classify(readme_run):
    by_verb = {c[1]: (out, err) for c, out, err in readme_run["outputs"]}
    assert set(by_verb) == {"ingest", "search", "classify"}, "the README shows the three commands"
    assert f"{len(readme_run['names'])} ok, {len(readme_run['bad'])} failed" in by_verb["ingest"][1]
    results = json.loads(by_verb["search"][0])
    assert results and all(set(r) == {"id", "name", "ra", "dec", "score", "source"} for r in results)
    assert {r["name"] for r in results} <= set(readme_run["names"])
    assert f"{len(readme_run['names'])} sources labelled" in by_verb["classify"][1]


def test_serve_has_help_with_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "examples:" in out and "radioalign serve --store" in out and "--port" in out


# ---------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str):
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
        return response.headers.get_content_type(), body


def get_json(url: str):
    return json.loads(get(url)[1])


@pytest.fixture(scope="module")
def server(readme_run, env):
    """`radioalign serve` on a free port, until the module's tests are done."""
    port = free_port()
    log = open(readme_run["home"] / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "radioalign", "serve", "--store", str(readme_run["store"]), "--port",
                             str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                info = get_json(f"{base}/api/info")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start:\n{(readme_run['home'] / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield {"base": base, "info": info, **readme_run}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_api_search_by_text_and_like_returns_labelled_records(server):
    base, names = server["base"], server["names"]
    assert server["info"]["sources"] == len(names) and server["info"]["model"] == "tiny"
    results = get_json(f"{base}/api/search?text=bent-tail%20radio%20galaxy&k=5")
    assert len(results) == 5 and [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        assert {"id", "name", "ra", "dec", "score", "source", "label", "probability"} <= set(r)
        assert r["label"] in {"FR-I", "FR-II"} and 0.0 <= r["probability"] <= 1.0 and r["name"] in names
    target = results[-1]
    like = get_json(f"{base}/api/search?like={target['id']}&k=4")
    assert like[0]["id"] == target["id"] and like[0]["score"] == pytest.approx(1.0, abs=1e-5)
    by_name = get_json(f"{base}/api/search?like={target['name']}&k=4")
    assert [r["id"] for r in by_name] == [r["id"] for r in like]
    kind, png = get(f"{base}/api/thumb/{target['id']}")
    assert kind == "image/png" and png[:4] == b"\x89PNG"


def test_api_refuses_bad_queries(server):
    base = server["base"]
    for url, code in [("/api/search?like=nosuchsource", 400), ("/api/thumb/nosuchsource", 404),
                      ("/api/search?k=3", 400), ("/api/search?text=a&ra=1&dec=2", 400)]:  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as info:
            get(base + url)
        assert info.value.code == code, url
        assert json.loads(info.value.read())["detail"]


def test_api_search_by_uploaded_fits_finds_that_source(server):
    import requests

    name = server["names"][4]
    path = server["folder"] / f"{name}.fits"
    with open(path, "rb") as f:
        response = requests.post(f"{server['base']}/api/search", files={"image": (path.name, f)}, data={"k": "3"}, timeout=60)
    assert response.status_code == 200, response.text
    results = response.json()
    assert len(results) == 3 and results[0]["name"] == name and results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    bad = requests.post(f"{server['base']}/api/search", files={"image": ("notes.txt", b"hello")}, timeout=60)
    assert bad.status_code == 400 and "FITS" in bad.json()["detail"]


# ---------------------------------------------------------------------------
# The page in a real browser


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


def card_names(page) -> list[str]:
    return page.locator(".card .name").all_inner_texts()


def test_the_page_searches_and_finds_more_like_this(server, browser):
    base, k = server["base"], 6
    page = browser.new_page()
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(request.url))
    page.goto(base + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('sources')")
    page.fill("#k", str(k))
    page.fill("#query", "an edge-brightened radio galaxy with hotspots")
    page.click("#search")
    page.wait_for_selector(".card")
    expected = get_json(f"{base}/api/search?text=an%20edge-brightened%20radio%20galaxy%20with%20hotspots&k={k}")
    assert card_names(page) == [r["name"] for r in expected]
    first = page.locator(".card").first
    assert first.locator(".score").inner_text() == f"score {expected[0]['score']:.3f}"
    assert first.locator(".label").inner_text().startswith(expected[0]["label"])
    assert "RA" in first.locator(".coords").inner_text()
    page.wait_for_function("[...document.querySelectorAll('.card .thumb')].every(i => i.complete && i.naturalWidth === 150)")

    chosen = expected[2]
    page.locator(".card").nth(2).locator(".more").click()
    page.wait_for_function(f"document.getElementById('status').textContent.includes('results: sources like {chosen['name']}')")
    neighbours = get_json(f"{base}/api/search?like={chosen['id']}&k={k}")
    assert card_names(page) == [r["name"] for r in neighbours] and card_names(page)[0] == chosen["name"]
    assert page.locator(".card .score").first.inner_text() == "score 1.000"
    assert card_names(page) != [r["name"] for r in expected], "the results change to the source's neighbours"
    assert all(url.startswith(base) or url.startswith("data:") for url in requests_seen), "the page fetches nothing outside"
    page.close()


def test_the_page_searches_by_an_uploaded_image(server, browser):
    name = server["names"][7]
    page = browser.new_page()
    page.goto(server["base"] + "/")
    page.set_input_files("#image", str(server["folder"] / f"{name}.fits"))
    page.click("#search")
    page.wait_for_function(f"document.getElementById('status').textContent.includes('result') && "
                           f"document.getElementById('status').textContent.includes('{name}.fits')")
    assert card_names(page)[0] == name
    page.close()
