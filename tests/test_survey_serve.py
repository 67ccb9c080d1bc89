"""The README's survey commands, run as written, and the search page they lead to.

The store is made by the README's own commands (ingest a FITS folder, search --text,
classify), parsed from its survey section, so README and test cannot drift. Then
`radioalign serve` runs in a subprocess on a free port: its JSON API is checked with
plain HTTP, hostile uploads included (a gzip bomb, declared pixel counts past the cap,
unreadable files: 413 or 400 with a fixed sentence, never a path), and the page in a real
headless Chromium (Debian's package, driven by Playwright) types a query, sees results
and clicks 'more like this'."""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
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
        yield {"base": base, "info": info, "pid": proc.pid, **readme_run}
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


def test_api_cone_takes_sexagesimal_positions_and_radius_units(server):
    from urllib.parse import urlencode

    from astropy.coordinates import SkyCoord

    base = server["base"]
    placed = [r for r in get_json(f"{base}/api/search?text=radio%20galaxy&k=50") if r["ra"] is not None]
    assert placed, "the README's cut-outs carry a WCS"
    target = SkyCoord(placed[0]["ra"], placed[0]["dec"], unit="deg")
    ra, dec = target.to_string("hmsdms", sep=":", precision=2).split()
    degrees = get_json(f"{base}/api/search?" + urlencode(
        {"text": "radio galaxy", "ra": target.ra.deg, "dec": target.dec.deg, "radius": 60, "k": 50}))  # fmt: skip
    sexagesimal = get_json(f"{base}/api/search?" + urlencode(
        {"text": "radio galaxy", "ra": ra, "dec": dec, "radius": "1arcmin", "k": 50}))  # fmt: skip
    assert placed[0]["id"] in [r["id"] for r in sexagesimal]
    assert [r["id"] for r in sexagesimal] == [r["id"] for r in degrees]
    g = target.galactic
    galactic = get_json(f"{base}/api/search?" + urlencode(
        {"text": "radio galaxy", "ra": g.l.deg, "dec": g.b.deg, "radius": "1arcmin", "frame": "galactic", "k": 50}))  # fmt: skip
    assert [r["id"] for r in galactic] == [r["id"] for r in degrees]
    with pytest.raises(urllib.error.HTTPError) as info:
        get(f"{base}/api/search?" + urlencode({"text": "a", "ra": "12:99:00", "dec": "1", "radius": "1arcmin"}))
    assert info.value.code == 400 and "dec >=" not in json.loads(info.value.read())["detail"]


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
# Hostile uploads: caps on bytes, inflated bytes and pixels; error bodies the server chooses

MiB = 2**20


def post_image(server, filename: str, data, **fields):
    import requests

    return requests.post(f"{server['base']}/api/search", files={"image": (filename, data)}, data=fields, timeout=60)


def assert_clean(detail, server) -> None:
    """An error body's detail: a sentence, naming no server path, temporary folder or exception."""
    assert isinstance(detail, str) and detail, detail
    for secret in (str(server["home"]), str(server["store"]), server["store"].name + "/", "tmp", "Traceback"):
        assert secret not in detail, (secret, detail)
    assert not re.search(r"(?<![\w.-])/\w", detail), f"a rooted path in {detail!r}"
    assert not re.search(r"\w(Error|Exception|Warning)\b|Error:", detail), f"an exception in {detail!r}"


def fits_header(**cards) -> bytes:
    """A primary FITS header of the given integer cards (BITPIX and NAXIS first), padded to 2880 bytes."""
    lines = [b"SIMPLE  =                    T"] + [f"{key:<8}= {value:>20}".encode() for key, value in cards.items()]
    text = b"".join(line.ljust(80) for line in lines + [b"END"])
    return text.ljust(-(-len(text) // 2880) * 2880)


def gzip_bomb(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` then ``zeros`` zero bytes, made without holding them: after a
    full flush, deflate's output for each MiB of zeros is the same block, repeated. The
    trailer's CRC is not the content's (a server that stops early never checks it)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = deflate.compress(head) + deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(bytes(MiB)) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = first + block * (zeros // MiB - 1) + deflate.flush()
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03" + body + struct.pack("<II", 0, (len(head) + zeros) % 2**32)


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` grey pixels and holds almost none."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(width + 1))) + chunk(b"IEND", b"")


def kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1))


def peak_growth_mb(pid: int, action):
    """``action()``'s result and how far the process ``pid``'s resident memory rose above
    its level before, in MB: its high-water mark (VmHWM, reset first through clear_refs)
    where Linux allows, and VmRSS sampled every millisecond in any case."""
    import threading

    if not Path(f"/proc/{pid}/status").exists():
        pytest.skip("no /proc: the server's memory cannot be read here")
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        reset = True
    except OSError:
        reset = False
    before, peak, done = kib(pid, "VmRSS"), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], kib(pid, "VmRSS"))
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = action()
    finally:
        done.set()
        sampler.join()
    high = max(peak[0], kib(pid, "VmHWM") if reset else 0)
    return result, (high - before) / 1024


@pytest.mark.parametrize("filename", ["bomb.fits.gz", "bomb.fits"])
def test_a_gzip_bomb_is_refused_at_once_without_unfolding(server, filename):
    # 2 GiB of zeros behind a FITS header that declares them, in 2 MB of gzip; the second
    # name hides the gzip, which its magic bytes give away.
    bomb = gzip_bomb(fits_header(BITPIX=8, NAXIS=2, NAXIS1=46341, NAXIS2=46341), 2 * 2**30)
    assert len(bomb) < 4 * MiB
    post_image(server, "warm-up.txt", b"hello")  # the first request's one-off costs are not the bomb's

    def send():
        start = time.perf_counter()
        response = post_image(server, filename, bomb)
        return response, time.perf_counter() - start

    (response, seconds), growth = peak_growth_mb(server["pid"], send)
    assert response.status_code == 413, response.text
    assert response.json()["detail"] == "the image decompresses to more than 64 MiB"
    assert seconds < 1.0, f"refused after {seconds:.2f} s"
    assert growth < 200, f"the server's memory grew by {growth:.0f} MB"


def test_a_fits_header_declaring_too_many_pixels_is_refused_before_its_data(server):
    # 5000 x 5000 float pixels declared, 100 MB of data: only 3 blocks sent. Had the data
    # been read, the file would be refused as truncated (400), not as too large.
    data = fits_header(BITPIX=-32, NAXIS=2, NAXIS1=5000, NAXIS2=5000) + bytes(3 * 2880)
    for name, body in [("big.fits", data), ("big.fits.gz", gzip.compress(data))]:
        response = post_image(server, name, body)
        assert response.status_code == 413, (name, response.text)
        assert "pixels" in response.json()["detail"]
        assert_clean(response.json()["detail"], server)


def test_a_fits_file_of_huge_headers_is_refused_before_astropy_parses_them(server):
    cards = b"".join(f"COMMENT {i}".encode().ljust(80) for i in range(40_000))  # 3.2 MB of header
    data = fits_header(BITPIX=8, NAXIS=0)[:240] + cards + b"END".ljust(80)
    data = data.ljust(-(-len(data) // 2880) * 2880)
    response = post_image(server, "headers.fits", data)
    assert response.status_code == 413 and "headers" in response.json()["detail"], response.text


@pytest.mark.parametrize("size", [5000, 100_000])
def test_a_picture_declaring_too_many_pixels_is_refused(server, size):
    # 5000 x 5000 passes Pillow's own bomb check but not the server's cap; 100 000 x 100 000 trips Pillow's.
    response = post_image(server, "big.png", png_header(size, size))
    assert response.status_code == 413, response.text
    assert "pixels" in response.json()["detail"]
    assert_clean(response.json()["detail"], server)


def test_an_upload_past_the_byte_cap_is_refused(server):
    import requests

    response = post_image(server, "huge.fits", bytes(64 * MiB + 1))
    assert response.status_code == 413 and response.json()["detail"] == "images up to 64 MiB", response.text

    def chunks():  # no Content-Length: the server counts what arrives
        for _ in range(80):
            yield bytes(MiB)

    boundary = "xyz"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="huge.fits"\r\n\r\n'.encode()
    streamed = requests.post(f"{server['base']}/api/search", data=itertools.chain([head], chunks()), timeout=60,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
    assert streamed.status_code == 413, streamed.text


def test_unreadable_uploads_get_a_fixed_sentence(server):
    bad, folder = server["bad"], server["folder"] / "broken"
    assert {"truncated", "empty", "image", "oned", "allnan"} <= set(bad)
    good = (server["folder"] / f"{server['names'][0]}.fits").read_bytes()
    uploads = {name: (folder / f"{name}.fits").read_bytes() for name in ("truncated", "empty", "image", "oned", "allnan")}
    uploads |= {"notgzip.fits.gz": good, "cut.fits.gz": gzip.compress(good)[:3000], "noise.png": os.urandom(4000),
                "text.jpg": b"\xff\xd8\xff" + b"not a jpeg" * 50, "double.fits": good[:2880].replace(b"NAXIS2", b"NAXIS1")}
    for name, data in uploads.items():
        response = post_image(server, name if "." in name else f"{name}.fits", data)
        assert response.status_code == 400, (name, response.text)
        detail = response.json()["detail"]
        assert detail in {"cannot read the upload as a FITS, PNG or JPEG image",
                          "the upload holds no usable 2-D image (it is truncated, blank, constant or not 2-D)"}, (name, detail)
        assert_clean(detail, server)


def test_gzipped_and_unnamed_uploads_are_read_in_memory(server):
    name = server["names"][1]
    good = (server["folder"] / f"{name}.fits").read_bytes()
    for filename, data in [(f"{name}.fits.gz", gzip.compress(good)), ("upload", gzip.compress(good)), ("upload", good)]:
        response = post_image(server, filename, data, k="2")
        assert response.status_code == 200, (filename, response.text)
        assert response.json()[0]["name"] == name and response.json()[0]["score"] == pytest.approx(1.0, abs=1e-4)
    from PIL import Image

    y, x = np.mgrid[:64, :64]
    png = io.BytesIO()
    Image.fromarray((255 * np.exp(-((x - 30) ** 2 + (y - 34) ** 2) / 50.0)).astype(np.uint8)).save(png, format="PNG")
    response = post_image(server, "query.png", png.getvalue(), k="2")
    assert response.status_code == 200 and len(response.json()) == 2, response.text


def test_bad_queries_get_fixed_sentences_without_paths(server):
    import requests

    base = server["base"]
    cases = [("/api/search?like=/etc/passwd", 400), (f"/api/search?like={server['store']}", 400),
             ("/api/thumb/%2Fetc%2Fpasswd", 404), ("/api/search?text=a&ra=1&dec=95&radius=3", 400),
             ("/api/search?text=a&ra=nan&dec=1&radius=3", 400), ("/api/search?text=a&k=0", 422),
             ("/api/search?text=%20", 400)]  # fmt: skip
    for url, code in cases:
        response = requests.get(base + url, timeout=60)
        assert response.status_code == code, (url, response.text)
        assert_clean(response.json()["detail"], server)
    for fields in [{"k": "many"}, {"k": "0"}, {"ra": "1", "dec": "2"}]:
        response = post_image(server, "x.fits", b"", **fields)
        assert response.status_code == 400, (fields, response.text)
        assert_clean(response.json()["detail"], server)
    not_a_form = requests.post(f"{base}/api/search", data=b"SIMPLE", headers={"Content-Type": "image/fits"}, timeout=60)
    assert not_a_form.status_code == 400 and "multipart" in not_a_form.json()["detail"]


def test_info_names_the_store_folder_not_its_path(server):
    import requests

    response = requests.get(f"{server['base']}/api/info", timeout=60)
    assert response.json()["store"] == server["store"].name
    assert str(server["home"]) not in response.text and str(server["store"]) not in response.text


def test_store_failures_and_crashes_answer_a_generic_sentence():
    from fastapi.testclient import TestClient

    from radioalign.survey.serve import create_app
    from radioalign.survey.store import StoreError

    class Broken:
        def text(self, text, k, cone):
            raise StoreError("the store at /srv/secret/store has no 'sources' table")

        def like(self, key, k, cone):
            raise KeyError("/srv/secret/store/sources.lance")

    client = TestClient(create_app(Broken()), raise_server_exceptions=False)
    store_failed = client.get("/api/search?text=a")
    crashed = client.get("/api/search?like=x")
    assert (store_failed.status_code, crashed.status_code) == (409, 500)
    for response in (store_failed, crashed):
        assert "secret" not in response.text and "Error" not in response.text, response.text


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
