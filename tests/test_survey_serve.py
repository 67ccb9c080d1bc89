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


@contextlib.contextmanager
def serving(store, home: Path, env: dict):
    """`radioalign serve` on ``store`` at a free port until the block ends: ``(base URL,
    the /api/info answer, the process)``; its log goes to ``home/serve.log``."""
    port = free_port()
    log = open(home / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "radioalign", "serve", "--store", str(store), "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                info = get_json(f"{base}/api/info")
                break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the server did not start:\n{(home / 'serve.log').read_text()[-3000:]}")
                time.sleep(0.3)
        yield base, info, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(readme_run, env):
    """`radioalign serve` on a free port, until the module's tests are done."""
    with serving(readme_run["store"], readme_run["home"], env) as (base, info, proc):
        yield {"base": base, "info": info, "pid": proc.pid, "env": env, **readme_run}


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


# ---------------------------------------------------------------------------
# The Virtual Observatory: Simple Cone Search, exports, the upload token

# The README's cut-outs lie at RA 0, 15, ... 120 deg, Dec -30, -28, ... -14 deg: a cone of
# 20 deg around J0004 holds J0003, J0004 and J0005, and no other.
CONE = (60.0, -22.0, 20.0)


def scs_table(body: bytes):
    """A cone search's answer, parsed strictly: its first table and its resource's INFOs."""
    from astropy.io.votable import parse

    votable = parse(io.BytesIO(body), verify="exception")
    resource = votable.resources[0]
    return resource.tables[0], {i.name: i.value for i in resource.infos}


def cli_cone_ids(server, ra: float, dec: float, radius_deg: float) -> set[str]:
    """``radioalign search --cone`` with a k past the store's size: every source in the cone."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("RADIOALIGN_MODELS_DIR", server["env"]["RADIOALIGN_MODELS_DIR"])
        code = main(["search", "--store", str(server["store"]), "--text", "a radio galaxy", "--cone", str(ra), str(dec),
                     f"{radius_deg}deg", "-k", "1000"])  # fmt: skip
    assert code == 0, err.getvalue()
    return {r["id"] for r in json.loads(out.getvalue())}


@pytest.mark.parametrize("cone", [CONE, (60.0, -22.0, 0.01), (30.0, -26.0, 35.0), (200.0, 40.0, 1.0)])
def test_pyvo_cone_search_gets_the_sources_of_search_cone(server, cone):
    pyvo = pytest.importorskip("pyvo")
    from astropy.coordinates import SkyCoord

    ra, dec, radius = cone
    results = pyvo.dal.SCSService(f"{server['base']}/scs").search(pos=(ra, dec), radius=radius)
    ids = [str(i) for i in results["id"]]
    assert set(ids) == cli_cone_ids(server, ra, dec, radius), "the cone search and `radioalign search --cone` agree"
    assert len(ids) == len(set(ids)) and len(ids) < len(server["names"])
    if cone == CONE:
        assert sorted(str(n) for n in results["name"]) == ["J0003", "J0004", "J0005"]
    table = results.to_table()
    centre = SkyCoord(ra, dec, unit="deg")
    exact = centre.separation(SkyCoord(table["ra"], table["dec"], unit="deg")).deg
    assert np.allclose(table["distance"], exact, atol=1e-9) and list(table["distance"]) == sorted(table["distance"])
    assert all(d <= radius + 1e-9 for d in exact)
    ucds = {field.name: field.ucd for field in results.fielddescs}
    assert ucds == {"id": "meta.id;meta.main", "name": "meta.id", "ra": "pos.eq.ra;meta.main", "dec": "pos.eq.dec;meta.main",
                    "distance": "pos.angDistance", "label": "src.class", "probability": "stat.probability"}  # fmt: skip
    assert str(table["ra"].unit) == "deg" and str(table["distance"].unit) == "deg"
    assert set(str(v) for v in table["label"]) <= {"FR-I", "FR-II"}


def test_cone_search_verbosity_metadata_overflow_and_case(server):
    from urllib.parse import urlencode

    base = f"{server['base']}/scs?"
    ra, dec, sr = CONE
    kind, body = get(base + urlencode({"RA": ra, "DEC": dec, "SR": sr}))
    assert kind == "text/xml"
    table, infos = scs_table(body)
    assert infos["QUERY_STATUS"] == "OK" and len(table.array) == 3
    assert [f.name for f in table.fields] == ["id", "name", "ra", "dec", "distance", "label", "probability"]
    lower = scs_table(get(base + urlencode({"ra": ra, "Dec": dec, "sr": sr}))[1])[0]
    assert list(lower.array["id"]) == list(table.array["id"]), "parameter names are case-insensitive"

    terse = scs_table(get(base + urlencode({"RA": ra, "DEC": dec, "SR": sr, "VERB": 1}))[1])[0]
    assert [f.name for f in terse.fields] == ["id", "ra", "dec", "distance"]
    full = scs_table(get(base + urlencode({"RA": ra, "DEC": dec, "SR": sr, "VERB": 3}))[1])[0]
    names = [f.name for f in full.fields]
    assert {"p_FR_I", "p_FR_II", "source", "created_at"} <= set(names)
    for row in full.array:
        assert row["probability"] == pytest.approx(max(row["p_FR_I"], row["p_FR_II"]), abs=1e-6)
    assert {f.name: f.ucd for f in full.fields}["p_FR_I"] == "stat.probability"

    meta, infos = scs_table(get(base + urlencode({"RA": ra, "DEC": dec, "SR": 0}))[1])
    assert len(meta.array) == 0 and [f.name for f in meta.fields] == [f.name for f in table.fields], "SR=0: the FIELDs only"
    assert {f.name: f.ucd for f in meta.fields}["id"] == "meta.id;meta.main"

    capped, infos = scs_table(get(base + urlencode({"RA": ra, "DEC": dec, "SR": sr, "MAXREC": 2}))[1])
    assert infos["QUERY_STATUS"] == "OVERFLOW" and list(capped.array["id"]) == list(table.array["id"][:2])
    whole = scs_table(get(base + urlencode({"RA": 0, "DEC": 90, "SR": 180}))[1])[0]
    placed = [r for r in get_json(f"{server['base']}/api/search?text=a&k=50") if r["ra"] is not None]
    assert sorted(whole.array["id"]) == sorted(r["id"] for r in placed), "SR=180: the whole sky"


@pytest.mark.parametrize("query", ["RA=10&DEC=20", "RA=ten&DEC=20&SR=1", "RA=10&DEC=95&SR=1", "RA=400&DEC=0&SR=1",
                                   "RA=10&DEC=0&SR=-1", "RA=10&DEC=0&SR=nan", "RA=10&DEC=0&SR=1&VERB=7",
                                   "RA=10&DEC=0&SR=1&MAXREC=x", ""])  # fmt: skip
def test_cone_search_errors_are_votables_with_an_error_info(server, query):
    pyvo = pytest.importorskip("pyvo")
    from astropy.io.votable import parse

    kind, body = get(f"{server['base']}/scs?{query}")
    assert kind == "text/xml", "SCS 1.03: errors come with HTTP 200 as text/xml"
    votable = parse(io.BytesIO(body), verify="exception")
    infos = {i.name: i.value for i in votable.resources[0].infos}
    assert infos["QUERY_STATUS"] == "ERROR" and infos["Error"]
    assert_clean(infos["Error"], server)
    with pytest.raises(pyvo.dal.DALQueryError):  # pyvo's client reads the error as one
        pyvo.dal.scs.SCSQuery(f"{server['base']}/scs?{query}").execute()


def test_cone_search_hides_store_failures_in_an_error_votable():
    from fastapi.testclient import TestClient

    from radioalign.survey.serve import STORE_FAILED, create_app
    from radioalign.survey.store import StoreError

    class Broken:
        def classes(self):
            raise StoreError("the store at /srv/secret/store has no 'labels' table")

    response = TestClient(create_app(Broken()), raise_server_exceptions=False).get("/scs?RA=1&DEC=2&SR=3")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    assert "secret" not in response.text and f'name="Error" value="{STORE_FAILED}"' in response.text


def test_results_export_as_csv_and_votable_equal_the_search(server):
    import csv as csv_module
    from urllib.parse import urlencode

    from astropy.io.votable import parse

    ra, dec, radius = CONE
    query = urlencode({"text": "a radio galaxy", "k": 6, "ra": ra, "dec": dec, "radius": f"{radius}deg"})
    results = get_json(f"{server['base']}/api/search?{query}")
    assert [r["name"] for r in results] and {r["name"] for r in results} <= {"J0003", "J0004", "J0005"}
    kind, body = get(f"{server['base']}/api/results.csv?{query}")
    rows = list(csv_module.DictReader(io.StringIO(body.decode())))
    assert kind == "text/csv" and [r["id"] for r in rows] == [r["id"] for r in results]
    assert [float(r["score"]) for r in rows] == pytest.approx([r["score"] for r in results])
    assert [r["label"] for r in rows] == [r["label"] for r in results]
    kind, body = get(f"{server['base']}/api/results.vot?{query}")
    table = parse(io.BytesIO(body), verify="exception").get_first_table()
    assert kind == "application/x-votable+xml"
    assert list(table.array["id"]) == [r["id"] for r in results]
    assert list(table.array["score"]) == pytest.approx([r["score"] for r in results])
    assert list(table.array["ra"]) == pytest.approx([r["ra"] for r in results])
    ucds = {f.name: f.ucd for f in table.fields}
    assert ucds["id"] == "meta.id;meta.main" and ucds["ra"] == "pos.eq.ra;meta.main" and ucds["probability"] == "stat.probability"
    with pytest.raises(urllib.error.HTTPError) as info:
        get(f"{server['base']}/api/results.csv?k=3")
    assert info.value.code == 400


def test_an_upload_is_held_under_a_token_for_export_and_links(server):
    import requests

    name = server["names"][5]
    data = (server["folder"] / f"{name}.fits").read_bytes()
    posted = post_image(server, f"{name}.fits", data, k="4")
    token = posted.headers["X-Radioalign-Upload"]
    assert posted.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", token)
    again = get_json(f"{server['base']}/api/search?upload={token}&k=4")
    assert [r["id"] for r in again] == [r["id"] for r in posted.json()] and again[0]["name"] == name
    assert post_image(server, "copy.fits", data, k="4").headers["X-Radioalign-Upload"] == token, "same image, same token"
    rows = get(f"{server['base']}/api/results.csv?upload={token}&k=4")[1].decode().splitlines()
    assert len(rows) == 5 and rows[1].split(",")[1] == name
    gone = requests.get(f"{server['base']}/api/search?upload={'0' * 32}", timeout=60)
    assert gone.status_code == 400 and "upload it again" in gone.json()["detail"]
    both = requests.get(f"{server['base']}/api/search?upload={token}&text=a", timeout=60)
    assert both.status_code == 400


def test_info_names_the_hips_survey_and_bad_hips_ids_are_refused(server):
    from radioalign.survey.serve import DEFAULT_HIPS, check_hips

    assert server["info"]["hips"] == DEFAULT_HIPS == "CDS/P/NVSS"
    assert check_hips("CDS/P/DSS2/color") == "CDS/P/DSS2/color" and check_hips(None) == DEFAULT_HIPS
    for bad in ["", "a b", "x\"><script>", "https://evil/x?y", "../" * 50]:
        with pytest.raises(ValueError):
            check_hips(bad)


def test_sampjs_is_vendored_unchanged_but_for_its_last_line():
    import hashlib

    static = ROOT / "src" / "radioalign" / "survey" / "static"
    vendored = (static / "vendor" / "samp.js").read_bytes()
    patched = b'if (typeof module !== "undefined") { module.exports = { samp }; }  // radioalign: a browser has no module\n'
    assert vendored.endswith(patched)
    original = vendored[: -len(patched)] + b"module.exports = { samp }"
    assert hashlib.sha256(original).hexdigest() == "399858fe6c10ab1c55c09217178135999b866433a9f3e0b1f0748d4e2abd61bf"
    licence = (static / "vendor" / "LICENSE-sampjs.txt").read_text()
    assert "CC0" in licence and "Mark Taylor" in licence and "Statement of Purpose" in licence
    page = (static / "index.html").read_text() + (static / "style.css").read_text()
    assert not re.search(r"""(src|href)=["'](https?:)?//|@import|url\(\s*["']?(https?:)?//""", page), "nothing from another host"


# ---------------------------------------------------------------------------
# The page and the VO in a real browser: cards, export, the URL, the keyboard, SAMP


def card_ids(page) -> list[str]:
    return page.eval_on_selector_all(".card", "cards => cards.map(c => c.dataset.id)")


def wait_for_results(page, what: str) -> None:
    page.wait_for_function("(what) => document.getElementById('status').textContent.includes('results: ' + what) "
                           "|| document.getElementById('status').textContent.includes('result: ' + what)", arg=what)  # fmt: skip


def same_host(url: str, base: str) -> bool:
    from urllib.parse import urlsplit

    return url.startswith("data:") or urlsplit(url).netloc == urlsplit(base).netloc


def test_each_card_shows_sexagesimal_and_plain_links_without_fetching_them(server, browser):
    from urllib.parse import parse_qs, urlencode, urlsplit

    from astropy.coordinates import Angle

    base = server["base"]
    page = browser.new_page()
    requests_seen: list[str] = []
    page.on("request", lambda request: requests_seen.append(request.url))
    query = {"text": "a radio galaxy", "k": 9}
    page.goto(f"{base}/?{urlencode(query)}")
    wait_for_results(page, "\u201ca radio galaxy\u201d")
    results = get_json(f"{base}/api/search?{urlencode(query)}")
    assert card_ids(page) == [r["id"] for r in results]
    page.wait_for_function("[...document.querySelectorAll('.card .thumb')].every(i => i.complete && i.naturalWidth === 150)")
    for i, r in enumerate(results):
        node = page.locator(".card").nth(i)
        assert node.locator(".deg").inner_text().split() == ["RA", f"{r['ra']:.4f}\u00b0", "Dec", f"{r['dec']:.4f}\u00b0"]
        hms = node.locator(".hms").inner_text()
        assert re.fullmatch(r"\d\dh\d\dm\d\d\.\ds [+-]\d\d\u00b0\d\d\u2032\d\d\u2033", hms), hms
        ra_text, dec_text = hms.split()
        assert Angle(ra_text).deg == pytest.approx(r["ra"], abs=0.05 * 15 / 3600)
        assert Angle(dec_text).deg == pytest.approx(r["dec"], abs=0.5 / 3600)
        links = {name: node.locator(f"a.{name}").get_attribute("href") for name in ("aladin", "simbad", "ned", "legacy")}
        aladin = parse_qs(urlsplit(links["aladin"]).query)
        assert links["aladin"].startswith("https://aladin.cds.unistra.fr/AladinLite/?") and aladin["survey"] == ["CDS/P/NVSS"]
        assert [float(v) for v in aladin["target"][0].split()] == pytest.approx([r["ra"], r["dec"]], abs=1e-6)
        assert links["simbad"].startswith("https://simbad.cds.unistra.fr/simbad/sim-coo?")
        assert parse_qs(urlsplit(links["simbad"]).query)["CooFrame"] == ["ICRS"]
        assert links["ned"].startswith("https://ned.ipac.caltech.edu/conesearch?")
        legacy = parse_qs(urlsplit(links["legacy"]).query)
        assert links["legacy"].startswith("https://www.legacysurvey.org/viewer?") and legacy["zoom"] == ["14"]
        assert float(legacy["ra"][0]) == pytest.approx(r["ra"], abs=1e-6) and float(legacy["dec"][0]) == pytest.approx(r["dec"], abs=1e-6)
    assert page.locator(".card a[target=_blank]").count() == 4 * len(results)
    tricky = [(0.0, 0.0), (359.99999, -0.00001), (194.046527, 12.582), (10.684708, 41.26875), (83.63308, -5.391111),
              (44.99999, -89.999999), (187.27791, 2.05239), (299.868, 40.7339)]  # fmt: skip
    for ra, dec in tricky:  # the page's own formatter against astropy's, rounding carries included
        text = page.evaluate("([ra, dec]) => sexagesimal(ra, true) + ' ' + sexagesimal(dec, false)", [ra, dec])
        ra_text, dec_text = text.split()
        assert abs(((Angle(ra_text).deg - ra + 180) % 360) - 180) <= 0.05 * 15 / 3600 + 1e-12, (ra, text)
        assert Angle(dec_text).deg == pytest.approx(dec, abs=0.5 / 3600 + 1e-12), (dec, text)
        assert re.fullmatch(r"\d\dh\d\dm\d\d\.\ds [+-]\d\d\u00b0\d\d\u2032\d\d\u2033", text), text
    assert requests_seen and all(same_host(url, base) for url in requests_seen), "the page fetches nothing from another host"
    page.close()


def test_the_page_exports_the_results_it_shows(server, browser, tmp_path):
    import csv as csv_module

    from astropy.io.votable import parse

    base, (ra, dec, radius) = server["base"], CONE
    page = browser.new_page(accept_downloads=True)
    page.goto(base + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('sources')")
    assert page.get_attribute("#export-csv", "aria-disabled") == "true" and page.is_disabled("#samp-send")
    page.fill("#query", "a radio galaxy")
    page.fill("#k", "5")
    page.click("#cone summary")
    page.fill("#ra", str(ra))
    page.fill("#dec", str(dec))
    page.fill("#radius", f"{radius}deg")
    page.click("#search")
    wait_for_results(page, "\u201ca radio galaxy\u201d")
    shown = card_ids(page)
    names = card_names(page)
    assert shown and set(names) <= {"J0003", "J0004", "J0005"}
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename == "radioalign-results.csv"
    rows = list(csv_module.DictReader(open(download.path(), newline="")))
    assert [r["id"] for r in rows] == shown and [r["name"] for r in rows] == names
    scores = [float(t.split()[-1]) for t in page.locator(".card .score").all_inner_texts()]
    assert [round(float(r["score"]), 3) for r in rows] == scores
    with page.expect_download() as info:
        page.click("#export-vot")
    assert info.value.suggested_filename == "radioalign-results.vot"
    table = parse(info.value.path(), verify="exception").get_first_table()
    assert list(table.array["id"]) == shown and list(table.array["name"]) == names
    assert {f.name: f.ucd for f in table.fields}["ra"] == "pos.eq.ra;meta.main"
    page.close()


def test_the_page_state_lives_in_its_url(server, browser):
    from urllib.parse import parse_qs, urlencode, urlsplit

    base, k = server["base"], 4
    page = browser.new_page()
    page.goto(base + "/")
    page.fill("#query", "a bright double")
    page.fill("#k", str(k))
    page.click("#search")
    wait_for_results(page, "\u201ca bright double\u201d")
    text_ids = card_ids(page)
    assert parse_qs(urlsplit(page.url).query) == {"text": ["a bright double"], "k": [str(k)]}
    assert text_ids == [r["id"] for r in get_json(f"{base}/api/search?" + urlencode({"text": "a bright double", "k": k}))]

    chosen = card_names(page)[1]
    page.locator(".card").nth(1).locator(".more").click()
    wait_for_results(page, f"sources like {chosen}")
    like_url, like_ids = page.url, card_ids(page)
    assert parse_qs(urlsplit(like_url).query)["like"] == [text_ids[1]] and like_ids != text_ids

    shared = browser.new_page()  # a shared link, opened elsewhere: the same results
    shared.goto(like_url)
    wait_for_results(shared, f"sources like {chosen}")
    assert card_ids(shared) == like_ids
    shared.close()

    page.go_back()
    wait_for_results(page, "\u201ca bright double\u201d")
    assert card_ids(page) == text_ids and page.input_value("#query") == "a bright double"
    page.go_forward()
    wait_for_results(page, f"sources like {chosen}")
    assert card_ids(page) == like_ids
    page.reload()
    wait_for_results(page, f"sources like {chosen}")
    assert card_ids(page) == like_ids

    ra, dec, radius = CONE  # a cone in the URL fills the form and limits the results
    coned = {"text": "a radio galaxy", "k": 9, "ra": ra, "dec": dec, "radius": f"{radius}deg"}
    page.goto(f"{base}/?{urlencode(coned)}")
    wait_for_results(page, "\u201ca radio galaxy\u201d")
    assert sorted(card_names(page)) == ["J0003", "J0004", "J0005"] and page.input_value("#radius") == f"{radius}deg"

    name = server["names"][6]  # an upload (without the cone): its URL holds the server's token for it
    page.fill("#radius", "")
    page.set_input_files("#image", str(server["folder"] / f"{name}.fits"))
    page.click("#search")
    wait_for_results(page, f"images like {name}.fits")
    upload_url, upload_ids = page.url, card_ids(page)
    assert "upload=" in upload_url and card_names(page)[0] == name
    again = browser.new_page()
    again.goto(upload_url)
    wait_for_results(again, "images like the uploaded image")
    assert card_ids(again) == upload_ids
    again.close()
    page.go_back()
    wait_for_results(page, "\u201ca radio galaxy\u201d")
    assert sorted(card_names(page)) == ["J0003", "J0004", "J0005"]
    page.close()


def test_the_page_is_keyboard_reachable_with_labels(server, browser):
    base = server["base"]
    page = browser.new_page()
    page.goto(f"{base}/?text=a%20radio%20galaxy&k=3")
    wait_for_results(page, "\u201ca radio galaxy\u201d")
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, button, a[href], [tabindex="0"]')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.outerHTML.slice(0, 80))""")  # fmt: skip
    assert unlabelled == [], "every control has a label, an aria-label or text"
    assert page.locator("div[onclick], span[onclick]").count() == 0
    reached = []
    for _ in range(80):  # Tab through the page once: every control and every card is reached
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => { const e = document.activeElement; "
                                     "return e.id || e.className || e.tagName; }"))  # fmt: skip
        if reached.count(reached[0]) == 2:
            break
    for wanted in ["query", "image", "k", "search", "export-csv", "export-vot", "samp-send"]:
        assert wanted in reached, (wanted, reached)
    assert reached.count("card") == 3 and reached.count("more") == 3 and "aladin" in reached
    card = page.locator(".card").nth(2)
    card.focus()
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none", "a focused card shows it"
    name = card.locator(".name").inner_text()
    page.keyboard.press("Enter")
    wait_for_results(page, f"sources like {name}")
    assert card_names(page)[0] == name
    page.close()


# -- SAMP ------------------------------------------------------------------

WEB_PROFILE_PORT = 21012  # the SAMP Web Profile's fixed port, where sampjs looks for the hub


def samp_module():
    """pyvo.samp (astropy.samp moved there; astropy 8 deprecates its copy), else astropy.samp."""
    try:
        import pyvo.samp as samp
    except ImportError:
        samp = pytest.importorskip("astropy.samp", reason="neither pyvo.samp nor astropy.samp is installed")
    return samp


@pytest.fixture
def samp_hub(server, tmp_path, monkeypatch):
    """A SAMP hub with its Web Profile on port 21012 and a consent dialog that admits the
    page's origin only; its lock file in a temporary folder and its standard profile on
    a free port, so a user's own hub (~/.samp) is never touched. Skips when 21012 is in
    use (a running TOPCAT, Aladin or other hub)."""
    import warnings

    samp = samp_module()
    from importlib import import_module

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the hub does: a past run's TIME_WAIT is no hub
        try:
            probe.bind(("127.0.0.1", WEB_PROFILE_PORT))
        except OSError:
            pytest.skip(f"port {WEB_PROFILE_PORT} (the SAMP Web Profile) is in use, e.g. by a running TOPCAT or Aladin: "
                        "the SAMP test needs its own hub there")  # fmt: skip
    monkeypatch.delenv("SAMP_HUB", raising=False)
    dialog_base = import_module(samp.__name__ + ".hub").WebProfileDialog

    class Consent(dialog_base):
        """The user's answer to the hub's "may this web page register?": yes, for the page."""

        def __init__(self, origin: str):
            self.origin, self.asked, self.polling = origin, [], True
            self.thread = threading.Thread(target=self.poll, daemon=True)
            self.thread.start()

        def poll(self):
            while self.polling:
                self.handle_queue()
                time.sleep(0.05)

        def show_dialog(self, samp_name, details, client, origin):
            self.asked.append((samp_name, origin))
            self.consent() if origin == self.origin else self.reject()

    import threading

    dialog = Consent(server["base"])
    with warnings.catch_warnings(), samp.conf.set_temp("use_internet", False):
        warnings.simplefilter("ignore")
        hub = samp.SAMPHubServer(web_profile=True, web_profile_dialog=dialog, lockfile=str(tmp_path / "samp.lock"),
                                 addr="127.0.0.1", label="radioalign test hub", pool_size=2)  # fmt: skip
        hub.start()
    try:
        if not hub._web_profile:
            pytest.skip(f"the SAMP hub could not open its Web Profile on port {WEB_PROFILE_PORT}")
        yield samp, hub, dialog
    finally:
        dialog.polling = False
        hub.stop()


def test_the_page_sends_its_results_and_positions_over_samp(server, browser, samp_hub):
    import queue

    from astropy.io.votable import parse

    samp, hub, dialog = samp_hub
    received: queue.Queue = queue.Queue()
    with samp.conf.set_temp("use_internet", False):
        client = samp.SAMPIntegratedClient(name="radioalign test receiver", addr="127.0.0.1")
        client.connect(hub=hub, pool_size=2)
    try:
        for mtype in ("table.load.votable", "coord.pointAt.sky"):
            client.bind_receive_notification(mtype, lambda key, sender, mtype, params, extra: received.put((mtype, params, sender)))

        def next_message(mtype: str):
            while True:
                got = received.get(timeout=60)
                if got[0] == mtype:
                    return got

        base = server["base"]
        page = browser.new_page()
        page.goto(f"{base}/?text=a%20radio%20galaxy&k=5")
        wait_for_results(page, "\u201ca radio galaxy\u201d")
        shown = get_json(f"{base}/api/search?text=a%20radio%20galaxy&k=5")
        assert card_ids(page) == [r["id"] for r in shown]
        page.click("#samp-send")
        _, params, sender = next_message("table.load.votable")
        assert dialog.asked == [("radioalign", base)], "the hub asked once, for the page's own origin"
        assert client.get_metadata(sender)["samp.name"] == "radioalign"
        assert params["url"].startswith(f"{base}/api/results.vot?") and params["name"].startswith("radioalign")
        table = parse(io.BytesIO(get(params["url"])[1]), verify="exception").get_first_table()
        assert list(table.array["id"]) == [r["id"] for r in shown]
        assert list(table.array["name"]) == [r["name"] for r in shown]
        assert list(table.array["score"]) == pytest.approx([r["score"] for r in shown])
        assert list(table.array["ra"]) == pytest.approx([r["ra"] for r in shown])
        assert list(table.array["label"]) == [r["label"] for r in shown]
        page.wait_for_function("document.getElementById('status').textContent.includes('sent 5 results')")

        page.locator(".card").nth(2).locator(".thumb").click()  # a click on a result points the tools at it
        _, params, _ = next_message("coord.pointAt.sky")
        assert (float(params["ra"]), float(params["dec"])) == pytest.approx((shown[2]["ra"], shown[2]["dec"]), abs=1e-9)
        page.locator(".card").nth(4).focus()  # and Space on a focused result
        page.keyboard.press(" ")
        _, params, _ = next_message("coord.pointAt.sky")
        assert (float(params["ra"]), float(params["dec"])) == pytest.approx((shown[4]["ra"], shown[4]["dec"]), abs=1e-9)
        assert len(dialog.asked) == 1, "registered once"
        page.close()
    finally:
        client.disconnect()
