"""The search page's labelling mode: its JSON endpoints on a synthetic two-cluster store
(a stand-in encoder, FastAPI's test client), then the page in a real headless Chromium on
a folder ingested with the tiny SigLIP: label a batch of suggestions by key and by click,
see the count and the probe's score change, undo."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")
pytest.importorskip("fastapi")

from test_survey_labelling import DIM, clustered_store  # noqa: E402

from radioalign.survey import labelling as L  # noqa: E402
from radioalign.survey.store import normalise  # noqa: E402


class StandInEncoder:
    """The store's "model" for the endpoints' tests: the synthetic store's fingerprint, and
    text vectors that are a fixed function of the text (a hash seeds them)."""

    fingerprint = "f" * 64
    dim = DIM

    def texts(self, texts):
        seeds = [int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) for t in texts]
        return normalise(np.stack([np.random.default_rng(s).normal(size=DIM) for s in seeds])).astype(np.float32)

    def images(self, images):
        raise AssertionError("no image is embedded in these tests")

    def logit_scale_bias(self):
        return 10.0, -5.0


@pytest.fixture
def client(tmp_path):
    from fastapi.testclient import TestClient

    from radioalign.survey.serve import SearchService, create_app

    store, vectors, ids, classes, _ = clustered_store(tmp_path / "s", n=40)
    service = SearchService(store, StandInEncoder())
    return TestClient(create_app(service)), service, ids, classes


def post_labels(client, labels, train=False):
    return client.post("/api/labels", json={"labels": labels, "train": train})


def test_labelling_state_offers_the_prompt_classes_first_then_the_peoples(client):
    client, service, ids, _ = client
    state = client.get("/api/labelling").json()
    assert state["classes"] == ["FR-I", "FR-II"] and state["total"] == 0 and state["counts"] == {}
    assert state["probe"]["state"] == "idle" and state["probe"]["version"] == 0
    state = post_labels(client, {ids[0]: "bent-tail", ids[1]: "FR-I"}).json()
    assert state["classes"] == ["FR-I", "FR-II", "bent-tail"] and state["total"] == 2
    assert state["counts"] == {"FR-I": 1, "bent-tail": 1}


def test_labels_are_stored_replaced_and_undone(client):
    client, service, ids, _ = client
    assert post_labels(client, {ids[0]: "A", ids[1]: "B"}).status_code == 200
    assert post_labels(client, {ids[0]: "B"}).json()["counts"] == {"B": 2}
    state = post_labels(client, {ids[0]: None}).json()  # undo of a first label: removed
    assert state["counts"] == {"B": 1} and L.user_labels(service.store) == {ids[1]: "B"}
    hits = client.get(f"/api/search?like={ids[1]}&k=3").json()
    assert hits[0]["user_label"] == "B" and all("user_label" in h for h in hits), "search results carry the labels"


def test_label_requests_are_refused_in_fixed_sentences(client):
    client, service, ids, _ = client
    for body, words in (({"labels": {"nosuchsource": "A"}}, "not in the store"), ({"labels": {ids[0]: "A|B"}}, "holds '|'"),
                        ({"labels": ["x"]}, "an object of source ids"), ({"labels": {ids[0]: 3}}, "an object of source ids")):  # fmt: skip
        response = client.post("/api/labels", json=body)
        assert response.status_code == 400 and words in response.json()["detail"], body
    form = client.post("/api/labels", data={"labels": "x"})
    assert form.status_code == 415 and "application/json" in form.json()["detail"], "a form post is refused"
    assert client.post("/api/labels", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    big = json.dumps({"labels": {f"{i:016x}": "A" for i in range(60_000)}})
    assert client.post("/api/labels", content=big, headers={"Content-Type": "application/json"}).status_code == 400
    assert L.user_labels(service.store) == {}, "nothing was written"


def test_suggestions_by_text_then_by_the_probes_uncertainty(client):
    client, service, ids, classes = client
    first = client.get("/api/suggest?n=5&text=a%20bent-tail%20radio%20galaxy").json()
    assert len(first) == 5 and {r["by"] for r in first} == {"query"} and first[0]["best"] is None
    query = StandInEncoder().texts(["a bent-tail radio galaxy"])[0]
    vectors = np.stack([np.asarray(r["vector"]) for r in service.store.table("sources").search().select(["id", "vector"]).limit(100).to_arrow().to_pylist()])
    assert first[0]["priority"] == pytest.approx(float((normalise(vectors) @ query).max()), abs=1e-5), "the closest first"
    post_labels(client, {ids[i]: str(classes[i]) for i in range(6)})
    picks = client.get("/api/suggest?n=4").json()
    assert len(picks) == 4 and {r["by"] for r in picks} == {"margin"} and not {r["id"] for r in picks} & set(ids[:6])
    assert all(r["best"] in ("A", "B") and r[f"cal_p_{r['best']}"] >= 0.5 for r in picks)
    assert client.get("/api/suggest?n=0").status_code == 422


def test_a_full_batch_retrains_the_probe_in_the_background(client):
    client, service, ids, classes = client
    state = post_labels(client, {ids[i]: str(classes[i]) for i in range(8)}, train=True).json()
    assert state["probe"]["state"] == "training" and state["total"] == 8
    assert service.probe.wait(1, timeout=120), "the probe finished"
    probe = client.get("/api/probe").json()
    assert probe["state"] == "ready" and probe["version"] == 1 and probe["model"] == "probe" and probe["labels"] == 8
    assert 0.0 <= probe["cv_macro_f1"] <= 1.0 and 0.0 <= probe["coverage"] <= 1.0 and probe["alpha"] == 0.1
    stored = L.predictions_of(service.store, ids)
    assert len(stored) == len(ids), "every source predicted"
    hits = client.get(f"/api/search?like={ids[9]}&k=2").json()
    assert hits[0]["prediction_set"] == stored[ids[9]]["prediction_set"] and hits[0]["predicted_by"] == "probe"
    assert client.post("/api/probe").json()["state"] == "training"
    assert service.probe.wait(2, timeout=120) and client.get("/api/probe").json()["version"] == 2


def test_one_class_only_trains_calibrated_zero_shot_and_says_why(client):
    client, service, ids, _ = client
    post_labels(client, {ids[0]: "FR-I"}, train=True)
    assert service.probe.wait(1, timeout=120)
    probe = client.get("/api/probe").json()
    assert probe["state"] == "ready" and probe["model"] == "zeroshot" and "only one class is labelled" in probe["fallback"]


def test_the_background_probe_reports_a_failure_without_dying(tmp_path):
    store, *_ = clustered_store(tmp_path / "s", n=20)
    probe = L.BackgroundProbe(store, None)
    version = probe.request()
    assert probe.wait(version, timeout=60)
    status = probe.status()
    assert status["state"] == "failed" and "no labels yet" in status["message"] and status["cv_macro_f1"] is None
    L.add_labels(store, {L.resolve_sources(store, ["src0"])[0]["src0"]: "A", L.resolve_sources(store, ["src1"])[0]["src1"]: "B"})
    assert probe.wait(probe.request(), timeout=60) and probe.status()["state"] == "ready" and probe.status()["version"] == 2


# ---------------------------------------------------------------------------
# The page in Chromium


@pytest.fixture(scope="module")
def live(tmp_path_factory, env):
    """A folder of FITS cut-outs ingested and classified with the tiny SigLIP, served by
    `radioalign serve` on a free port."""
    pytest.importorskip("reproject")
    pytest.importorskip("uvicorn")
    from test_survey_cli import radioalign, write_good_files
    from test_survey_serve import serving

    home = tmp_path_factory.mktemp("labelpage")
    names = write_good_files(home / "cutouts", 12)
    store = home / "store"
    radioalign(env, "ingest", home / "cutouts", "--store", store, "--model", "tiny", "--workers", "0", "--no-progress")
    with serving(store, home, env) as (base, _, _):
        yield {"base": base, "store": store, "names": names}




def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_probe_version(page, version: int) -> str:
    page.wait_for_function(f"document.getElementById('probe-status').dataset.version === '{version}' && "
                           "document.getElementById('probe-status').dataset.state !== 'training'", timeout=120_000)  # fmt: skip
    return text_of(page, "#probe-status")


@pytest.mark.slow
def test_the_page_labels_a_batch_and_the_probe_retrains(live, browser):
    from test_survey_serve import get_json

    base = live["base"]
    page = browser.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((base, "data:")) else None)
    page.goto(base + "/")
    page.wait_for_function("document.getElementById('info').textContent.includes('sources')")
    page.click("#mode-label")
    assert "mode=label" in page.url and page.locator("#labelling").is_visible()
    page.wait_for_function("document.getElementById('class-keys').textContent.includes('1 FR-I')")
    assert text_of(page, "#label-count") == "0 sources labelled" and "not trained yet" in text_of(page, "#probe-status")

    page.fill("#k", "4")
    page.fill("#query", "a bent-tail radio galaxy")
    page.click("#suggest")
    page.wait_for_function("document.querySelectorAll('.card .classify button').length === 8")
    assert "closest to" in text_of(page, "#status")
    cards = page.locator(".card")
    ids = [cards.nth(i).get_attribute("data-id") for i in range(4)]
    assert page.evaluate("document.activeElement.dataset.id") == ids[0], "the first suggestion has the focus"
    page.keyboard.press("1")  # FR-I, and the focus moves on
    page.wait_for_function("document.getElementById('label-count').dataset.total === '1'")
    page.keyboard.press("2")
    page.wait_for_function("document.getElementById('label-count').dataset.total === '2'")
    assert text_of(page, "#label-count") == "2 sources labelled (FR-I: 1, FR-II: 1)"
    assert cards.nth(0).get_attribute("aria-label").endswith("labelled FR-I")
    cards.nth(2).locator("button[data-class='FR-I']").click()
    page.wait_for_function("document.getElementById('label-count').dataset.total === '3'")
    assert get_json(f"{base}/api/labelling")["counts"] == {"FR-I": 2, "FR-II": 1}

    page.keyboard.press("u")  # undo the click
    page.wait_for_function("document.getElementById('label-count').dataset.total === '2'")
    assert cards.nth(2).get_attribute("data-given") is None and get_json(f"{base}/api/labelling")["total"] == 2
    before = text_of(page, "#probe-status")
    cards.nth(2).locator("button[data-class='FR-I']").click()
    cards.nth(3).locator("button[data-class='FR-II']").click()  # the batch is complete: the probe retrains
    first = wait_probe_version(page, 1)
    assert first != before and "cross-validated macro F1" in first and "coverage" in first and "trained on 4 labels" in first
    assert page.locator("#label-count").inner_text() == "4 sources labelled (FR-I: 2, FR-II: 2)"

    page.wait_for_function(f"!{json.dumps(ids)}.includes(document.querySelector('.card').dataset.id)")  # the next batch
    assert "uncertainty" in text_of(page, "#status")
    nxt = page.locator(".card")
    for i in range(nxt.count()):
        nxt.nth(i).locator(f"button[data-class='{'FR-I' if i % 2 else 'FR-II'}']").click()
    second = wait_probe_version(page, 2)
    assert "trained on 8 labels" in second and second != first
    assert get_json(f"{base}/api/labelling")["total"] == 8
    assert not outside, f"the page fetched outside the server: {outside}"
    page.close()


@pytest.mark.slow
def test_the_labelling_mode_keeps_search_and_more_like_this(live, browser):
    base = live["base"]
    page = browser.new_page()
    page.goto(base + "/?mode=label")
    page.wait_for_function("document.getElementById('class-keys').textContent.includes('FR-I')")
    assert page.locator("#labelling").is_visible()
    page.fill("#k", "3")
    page.fill("#query", "a double radio source")
    page.click("#search")
    page.wait_for_function("document.querySelectorAll('.card .classify button').length >= 6")
    assert "mode=label" in page.url and "text=" in page.url
    name = page.locator(".card .name").nth(1).inner_text()
    page.locator(".card .more").nth(1).click()
    page.wait_for_function(f"document.getElementById('status').textContent.includes('results: sources like {name}')")
    assert page.locator(".card .name").first.inner_text() == name
    assert page.locator(".card").first.locator(".classify button").count() >= 2, "results keep their class buttons"
    for control in ("#suggest", "#undo", "#train", "#new-class", "#mode-search", "#mode-label"):
        label = page.evaluate(f"(() => {{ const e = document.querySelector('{control}'); return e.labels && e.labels.length ? e.labels[0].textContent : e.textContent; }})()")
        assert label.strip(), f"{control} has a name for screen readers"
    page.click("#mode-search")
    assert "mode=label" not in page.url and not page.locator("#labelling").is_visible()
    assert page.locator(".card .classify button:visible").count() == 0
    page.close()
