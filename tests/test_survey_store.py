"""The LanceDB store and vector search of radioalign.survey, on synthetic stores (no model):
cone filters against astropy, exact search against numpy, the IVF-PQ index, output formats."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from radioalign.survey import search as S  # noqa: E402
from radioalign.survey.store import ModelMismatchError, Store, normalise, now, source_id  # noqa: E402

DIM = 32


def fake_store(path, ra, dec, seed=0, dim=DIM) -> tuple[Store, np.ndarray, list[str]]:
    """A store of len(ra) sources with random unit vectors, as if ingested by a model 'fake'."""
    rng = np.random.default_rng(seed)
    vectors = normalise(rng.normal(size=(len(ra), dim)))
    store = Store(path)
    store.init_meta({"fingerprint": "f" * 64, "model": "fake", "adapter": "", "dim": str(dim)})
    ids = [source_id(f"fake#{i}") for i in range(len(ra))]
    rows = [
        {"id": ids[i], "name": f"src{i}", "ra": None if ra[i] is None else float(ra[i]), "dec": None if dec[i] is None else float(dec[i]),
         "source": f"fake#{i}", "thumbnail": b"", "vector": vectors[i].tolist(), "model": "f" * 64, "adapter": "",
         "preprocessing": "none", "created_at": now()}
        for i in range(len(ra))
    ]  # fmt: skip
    for start in range(0, len(rows), 100):  # several commits, as ingest makes them
        store.add_sources(rows[start : start + 100], dim)
    return store, vectors, ids


def brute_force(vectors, ids, query, k, mask=None):
    scores = vectors @ query
    order = [i for i in np.argsort(-scores) if mask is None or mask[i]]
    return [ids[i] for i in order[:k]], scores


def test_separation_matches_astropy():
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(0)
    ra1, ra2 = rng.uniform(0, 360, 200), rng.uniform(0, 360, 200)
    dec1, dec2 = rng.uniform(-90, 90, 200), rng.uniform(-90, 90, 200)
    ours = S.separation_arcsec(ra1, dec1, ra2, dec2)
    theirs = SkyCoord(ra1, dec1, unit="deg").separation(SkyCoord(ra2, dec2, unit="deg")).arcsec
    assert np.allclose(ours, theirs, atol=1e-3)  # haversine: milliarcsec agreement away from antipodes
    assert S.separation_arcsec(359.999, 0.0, 0.001, 0.0) == pytest.approx(7.2, rel=1e-6)


@pytest.mark.parametrize(
    "centre",
    [(0.05, 10.0, 900.0), (359.95, -20.0, 900.0), (120.0, 89.9, 1800.0), (45.0, -89.95, 600.0), (200.0, 0.0, 60.0)],
    ids=["wrap-low", "wrap-high", "north-pole", "south-pole", "small"],
)
def test_cone_search_equals_an_exact_filter(tmp_path, centre):
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ra0, dec0, radius = centre
    rng = np.random.default_rng(1)
    # sources scattered around the centre out to three radii, plus some far away and some without coordinates
    offsets = rng.uniform(0, 3 * radius / 3600.0, 300)
    angles = rng.uniform(0, 360, 300)
    points = SkyCoord(ra0, dec0, unit="deg").directional_offset_by(angles * u.deg, offsets * u.deg)
    ra = list(points.ra.deg) + list(rng.uniform(0, 360, 50)) + [None] * 5
    dec = list(points.dec.deg) + list(rng.uniform(-90, 90, 50)) + [None] * 5
    store, vectors, ids = fake_store(tmp_path / "s", ra, dec)
    cone = S.Cone(ra0, dec0, radius)
    inside = np.array(
        [r is not None and S.separation_arcsec(ra0, dec0, r, d) <= radius for r, d in zip(ra, dec)], dtype=bool
    )
    assert 5 < inside.sum() < 300, "the fixture must put some sources inside and some outside"
    query = vectors[3]
    expected, scores = brute_force(vectors, ids, query, 10, inside)
    got = S.nearest(store, query, k=10, cone=cone)
    assert [r["id"] for r in got] == expected
    for r in got:
        assert r["score"] == pytest.approx(float(scores[ids.index(r["id"])]), abs=1e-5)
        assert S.separation_arcsec(ra0, dec0, r["ra"], r["dec"]) <= radius
    everything = S.nearest(store, query, k=len(ra), cone=cone)
    assert len(everything) == inside.sum()


def test_exact_search_without_cone_is_brute_force(tmp_path):
    rng = np.random.default_rng(2)
    store, vectors, ids = fake_store(tmp_path / "s", rng.uniform(0, 360, 150), rng.uniform(-90, 90, 150))
    query = normalise(rng.normal(size=(1, DIM)))[0]
    expected, _ = brute_force(vectors, ids, query, 7)
    got = S.nearest(store, query, k=7)
    assert [r["id"] for r in got] == expected
    assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)
    assert set(got[0]) == set(S.RESULT_FIELDS)


def test_ivf_pq_index_above_the_threshold(tmp_path):
    n = 600
    rng = np.random.default_rng(3)
    store, vectors, ids = fake_store(tmp_path / "s", rng.uniform(0, 360, n), rng.uniform(-90, 90, n))
    assert store.ensure_vector_index(ann_threshold=n + 1) == "exact" and not store.has_vector_index()
    assert store.ensure_vector_index(ann_threshold=300) == "ivf_pq" and store.has_vector_index()
    recalls = []
    for q in range(20):
        expected, scores = brute_force(vectors, ids, vectors[q], 10)
        got = S.nearest(store, vectors[q], k=10)
        assert got[0]["id"] == ids[q] and got[0]["score"] == pytest.approx(1.0, abs=1e-5)
        for r in got:  # scores are exact cosines even through the index
            assert r["score"] == pytest.approx(float(scores[ids.index(r["id"])]), abs=1e-5)
        recalls.append(len(set(expected) & {r["id"] for r in got}) / 10)
    assert np.mean(recalls) >= 0.8, f"IVF-PQ recall@10 {np.mean(recalls):.2f}"


def test_store_refuses_another_model(tmp_path):
    store, _, _ = fake_store(tmp_path / "s", [1.0], [2.0])
    store.check_model("f" * 64, "query")  # the same model is fine
    with pytest.raises(ModelMismatchError, match="fingerprint"):
        store.check_model("0" * 64, "query")


def test_existing_ids_and_errors(tmp_path):
    store, _, ids = fake_store(tmp_path / "s", [1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    error = {"id": "bad", "key": "/x/x.fits", "name": "x", "source": "/x/x.fits", "stamp": "0:1", "reason": "OSError: empty",
             "created_at": now()}  # fmt: skip
    store.add_errors([error])
    store.add_errors([{**error, "reason": "OSError: still empty"}])  # a new failure of one input replaces the old
    assert store.count("errors") == 1 and store.errors_for(["/x/x.fits", "/x/y.fits"]) == {"/x/x.fits": "0:1"}
    assert store.existing_ids([ids[0], ids[2], "nope", "bad"]) == {ids[0], ids[2], "bad"}
    assert store.existing_ids(["it's quoted"]) == set()
    assert store.clear_errors() == 1 and store.existing_ids(["bad"]) == set()


def test_files_table_and_last_path_seen(tmp_path):
    store, _, ids = fake_store(tmp_path / "s", [1.0, 2.0], [0.0, 0.0])
    rows = [{"key": "/a/1.fits", "stamp": "1:1", "id": ids[0], "seen_at": now()},
            {"key": "/b/1.fits", "stamp": "1:1", "id": ids[0], "seen_at": now()}]  # fmt: skip
    store.record_files(rows)
    store.record_files([{**rows[0], "stamp": "2:2", "id": ids[1]}])  # new pixels at /a/1.fits: updated, not added
    assert store.count("files") == 2
    assert store.files_for(["/a/1.fits", "/c"]) == {"/a/1.fits": {"key": "/a/1.fits", "stamp": "2:2", "id": ids[1]}}
    assert store.ids_in_use([ids[0], ids[1], "other"]) == {ids[0], ids[1]}
    store.set_source_paths({ids[0]: "/b/1.fits"})
    assert store.rows_where(f"id = '{ids[0]}'", ["source"]) == [{"source": "/b/1.fits"}]
    assert store.count() == 2  # an update, not a new row


def test_the_write_lock_is_exclusive_and_reentrant(tmp_path):
    import fcntl

    store = Store(tmp_path / "s")
    with store.writing():
        with store.writing():  # re-entrant: the ingest's write holds it around nested writes
            with open(tmp_path / "s" / ".radioalign-write.lock") as other:  # another process's view
                with pytest.raises(BlockingIOError):
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "s" / ".radioalign-write.lock") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving


def test_output_formats_round_trip():
    from astropy.table import Table

    results = [
        {"id": "a1", "name": "J1", "ra": 10.5, "dec": -3.25, "score": 0.9, "source": "/x/J1.fits"},
        {"id": "b2", "name": "pic", "ra": None, "dec": None, "score": 0.5, "source": "/x/pic.png"},
    ]
    assert json.loads(S.format_results(results, "json")) == results
    csv_text = S.format_results(results, "csv")
    assert csv_text.splitlines()[0] == ",".join(S.RESULT_FIELDS) and "J1" in csv_text
    table = Table.read(io.BytesIO(S.format_results(results, "votable").encode()), format="votable")
    assert list(table["name"]) == ["J1", "pic"] and table["ra"][0] == 10.5
    assert table["ra"][1] is np.ma.masked or np.isnan(table["ra"][1])  # a null RA reads back as missing
    assert str(table["ra"].unit) == "deg"
    with pytest.raises(ValueError):
        S.format_results(results, "xml")
