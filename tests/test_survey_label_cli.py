"""`radioalign label`, `classify --probe [--abstain]` and `suggest` as a user runs them, and
what they leave in `store export`, `search` and `store delete`: fast checks on synthetic
two-cluster stores (no model: `--no-prior`), then the whole loop with the tiny SigLIP's
zero-shot prior on an ingested folder of FITS files."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("lancedb")
pytest.importorskip("astropy")

from astropy.io.votable import parse  # noqa: E402
from test_survey_labelling import clustered_store  # noqa: E402

from radioalign.survey import Survey  # noqa: E402
from radioalign.survey import labelling as L  # noqa: E402
from radioalign.survey.cli import main  # noqa: E402

PREDICTION_UCDS = {"user_label": "src.class", "predicted": "src.class", "prediction_set": "src.class",
                   "predicted_by": "meta.code", "cal_p_A": "stat.probability", "cal_p_B": "stat.probability"}  # fmt: skip


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *args) -> str:
    """Run a command that must be refused: exit 2, nothing on stdout, one line on stderr
    (no traceback); returns that line."""
    code, out, err = cli(capsys, *args)
    assert code == 2 and not out and err.count("\n") == 1 and "Traceback" not in err, (code, out, err)
    return err


@pytest.fixture
def synthetic(tmp_path):
    store, vectors, ids, classes, centres = clustered_store(tmp_path / "s", n=60)
    return {"path": tmp_path / "s", "store": store, "ids": ids, "classes": classes, "vectors": vectors}


def label_per_class(capsys, synthetic, per_class: int) -> dict[str, str]:
    """Label the first ``per_class`` sources of each cluster with `radioalign label ID=CLASS ...`."""
    ids, classes = synthetic["ids"], synthetic["classes"]
    chosen = {ids[i]: classes[i] for c in ("A", "B") for i in np.flatnonzero(classes == c)[:per_class]}
    code, _, err = cli(capsys, "label", "--store", synthetic["path"], *(f"{i}={c}" for i, c in chosen.items()))
    assert code == 0, err
    return chosen


# ---------------------------------------------------------------------------
# label


def test_label_by_id_and_name_replace_list_and_remove(capsys, synthetic):
    path, ids = synthetic["path"], synthetic["ids"]
    code, out, err = cli(capsys, "label", "--store", path, f"{ids[0]}=A", "src1=B", "--json")
    assert code == 0 and json.loads(out) == {"added": 2, "replaced": 0, "labelled": {"A": 1, "B": 1}}
    assert "2 labels added, 0 replaced; 2 labelled sources (A: 1, B: 1)" in err
    code, out, err = cli(capsys, "label", "--store", path, "src0=B", "--who", "ann")
    assert code == 0 and not out and "0 labels added, 1 replaced" in err
    assert L.user_labels(synthetic["store"]) == {ids[0]: "B", ids[1]: "B"}
    code, out, _ = cli(capsys, "label", "--store", path, "--list", "--format", "json")
    listed = json.loads(out)
    assert code == 0 and [(r["name"], r["class"]) for r in listed] == [("src0", "B"), ("src1", "B")]
    assert listed[0]["who"] == "ann" and listed[0]["origin"] == "user"
    code, out, _ = cli(capsys, "label", "--store", path, "--list", "--format", "csv")
    assert out.splitlines()[0] == "id,name,class,who,origin,created_at" and len(out.splitlines()) == 3
    code, out, err = cli(capsys, "label", "--store", path, "--remove", "src1", ids[2])
    assert code == 0 and "1 labels removed (1 of those sources had none)" in err and L.user_labels(synthetic["store"]) == {ids[0]: "B"}


def test_label_from_csv_by_name_and_votable_by_id_with_a_class_map(capsys, synthetic, tmp_path):
    from astropy.table import Table

    path, ids = synthetic["path"], synthetic["ids"]
    (tmp_path / "classes.csv").write_text("Name,Type\nsrc3,1\nsrc4,2\nnowhere,1\n")
    code, out, err = cli(capsys, "label", "--store", path, "--from", tmp_path / "classes.csv", "--name-col", "Name",
                         "--class-col", "Type", "--map", "1=A", "--map", "2=B", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["matched"] == 2 and json.loads(out)["unmatched"] == 1
    assert "2 of 3 rows matched a source" in err and "'nowhere'" in err
    assert L.user_labels(synthetic["store"]) == {ids[3]: "A", ids[4]: "B"}
    Table({"id": [ids[5], ids[6]], "class": ["B", "A"]}).write(tmp_path / "classes.vot", format="votable")
    code, _, err = cli(capsys, "label", "--store", path, "--from", tmp_path / "classes.vot")
    assert code == 0 and L.user_labels(synthetic["store"])[ids[5]] == "B" and "4 labelled sources (A: 2, B: 2)" in err


def test_label_refuses_bad_input_in_one_line(capsys, synthetic, tmp_path):
    path, ids = synthetic["path"], synthetic["ids"]
    assert "unknown source" in refused(capsys, "label", "--store", path, "nosuchsource=A", f"{ids[0]}=B")
    assert L.user_labels(synthetic["store"]) == {}, "nothing is written when one source is unknown"
    assert "ID=CLASS" in refused(capsys, "label", "--store", path, ids[0])
    assert "a class is a non-empty name without '|'" in refused(capsys, "label", "--store", path, f"{ids[0]}=A|B")
    assert "one of them" in refused(capsys, "label", "--store", path)
    assert "one of them" in refused(capsys, "label", "--store", path, f"{ids[0]}=A", "--remove", ids[1])
    assert "unknown source" in refused(capsys, "label", "--store", path, "--remove", "nosuchsource")
    (tmp_path / "other.csv").write_text("id,class\nJ9999,FR-I\nJ9998,FR-II\n")
    err = refused(capsys, "label", "--store", path, "--from", tmp_path / "other.csv")
    assert "no row of other.csv matches a source of the store" in err and "'J9999'" in err
    (tmp_path / "noclass.csv").write_text("id,flux\nx,1\n")
    assert "need a class column" in refused(capsys, "label", "--store", path, "--from", tmp_path / "noclass.csv")
    assert "no label file" in refused(capsys, "label", "--store", path, "--from", tmp_path / "missing.csv")
    assert "no survey store" in refused(capsys, "label", "--store", tmp_path / "nowhere", "a=B")


# ---------------------------------------------------------------------------
# classify --probe


def test_classify_probe_without_a_prior_needs_two_classes(capsys, synthetic):
    path, ids = synthetic["path"], synthetic["ids"]
    err = refused(capsys, "classify", "--store", path, "--probe", "--no-prior")
    assert "cannot train a probe: no labels yet" in err
    cli(capsys, "label", "--store", path, f"{ids[0]}=A")
    err = refused(capsys, "classify", "--store", path, "--probe", "--no-prior")
    assert "only one class is labelled (A: 1); a probe needs two" in err and "no prompt set to fall back on" in err
    cli(capsys, "label", "--store", path, f"{ids[2]}=A", f"{ids[4]}=A")
    assert "only one class is labelled (A: 3)" in refused(capsys, "classify", "--store", path, "--probe", "--no-prior")
    assert "--alpha must lie strictly between 0 and 1" in refused(capsys, "classify", "--store", path, "--probe", "--alpha", "1.5")
    assert "--no-prior goes with --probe" in refused(capsys, "classify", "--store", path, "--abstain", "--no-prior")


def test_classify_probe_predicts_every_source_and_abstains(capsys, synthetic):
    path, ids, classes = synthetic["path"], synthetic["ids"], synthetic["classes"]
    label_per_class(capsys, synthetic, 12)
    code, out, err = cli(capsys, "classify", "--store", path, "--probe", "--no-prior", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["model"] == "probe" and summary["sources"] == len(ids) and summary["labels"] == 24
    assert summary["cv_macro_f1"] > 0.9 and 0.0 <= summary["coverage"] <= 1.0 and summary["alpha"] == 0.1
    assert "probe: 60 sources" in err and "cross-validated macro F1" in err and "coverage" in err
    stored = L.predictions_of(synthetic["store"], ids)
    assert np.mean([stored[i]["predicted"] == c for i, c in zip(ids, classes)]) > 0.9
    code, out, err = cli(capsys, "classify", "--store", path, "--probe", "--no-prior", "--abstain", "--alpha", "0.05", "--json")
    summary = json.loads(out)
    stored = L.predictions_of(synthetic["store"], ids)
    open_sets = [r for r in stored.values() if "|" in r["prediction_set"]]
    assert code == 0 and summary["abstain"] and summary["open"] == len(open_sets) and f"{len(open_sets)} left open" in err
    assert all(r["predicted"] is None for r in open_sets) and all(r["alpha"] == pytest.approx(0.05) for r in stored.values())


# ---------------------------------------------------------------------------
# suggest


def test_suggest_lists_unlabelled_sources_by_uncertainty(capsys, synthetic):
    path = synthetic["path"]
    assert "nothing to rank sources by yet" in refused(capsys, "suggest", "--store", path, "--no-prior")
    assert "-n must be at least 1" in refused(capsys, "suggest", "--store", path, "--no-prior", "-n", "0")
    labelled = label_per_class(capsys, synthetic, 6)
    code, out, err = cli(capsys, "suggest", "--store", path, "--no-prior", "-n", "8", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 8 and not set(labelled) & {r["id"] for r in rows}
    assert {r["by"] for r in rows} == {"margin"} and all(r["best"] in ("A", "B") for r in rows)
    assert all(r["cal_p_A"] + r["cal_p_B"] == pytest.approx(1.0) for r in rows)
    assert "8 sources to label next (margin uncertainty)" in err
    probe = L.train_probe(synthetic["store"])
    unlabelled = [i for i, x in enumerate(synthetic["ids"]) if x not in labelled]
    margins = np.sort(L.uncertainty(probe.predict_proba(synthetic["vectors"][unlabelled])))[::-1]
    assert min(r["priority"] for r in rows) >= margins[L.pool_size(8) - 1] - 1e-9, "from the most uncertain"
    code, out, _ = cli(capsys, "suggest", "--store", path, "--no-prior", "-n", "3")
    assert code == 0 and out.splitlines()[0].split()[:5] == ["id", "name", "ra", "dec", "priority"] and len(out.splitlines()) == 4


# ---------------------------------------------------------------------------
# What the labels and predictions leave in exports, search results and deletions


def test_export_and_search_carry_labels_predictions_and_sets(capsys, synthetic, tmp_path):
    import pandas as pd

    path, ids = synthetic["path"], synthetic["ids"]
    labelled = label_per_class(capsys, synthetic, 10)
    assert cli(capsys, "classify", "--store", path, "--probe", "--no-prior", "--abstain")[0] == 0
    stored = L.predictions_of(synthetic["store"], ids)
    assert cli(capsys, "store", "export", "--store", path, "--out", tmp_path / "all.xml")[0] == 0
    votable = parse(str(tmp_path / "all.xml"), verify="exception")
    table = votable.get_first_table()
    assert {f.name: f.ucd for f in table.fields if f.name in PREDICTION_UCDS} == PREDICTION_UCDS
    infos = {i.name: i.value for i in votable.resources[0].infos}
    assert infos["predictions"] == "probe, conformal sets at alpha 0.1, abstaining on open sets"
    rows = {r["id"]: r for r in table.to_table()}
    for i in ids:
        assert (rows[i]["user_label"] or None) == labelled.get(i)
        assert rows[i]["prediction_set"] == stored[i]["prediction_set"] and rows[i]["predicted_by"] == "probe"
        assert (rows[i]["predicted"] or None) == stored[i]["predicted"]
        assert rows[i]["cal_p_B"] == pytest.approx(stored[i]["probabilities"]["B"], abs=1e-6)
    assert cli(capsys, "store", "export", "--store", path, "--out", tmp_path / "all.csv")[0] == 0
    frame = pd.read_csv(tmp_path / "all.csv").set_index("id")
    assert frame.loc[list(labelled), "user_label"].tolist() == list(labelled.values())
    assert (frame["prediction_set"] == [stored[i]["prediction_set"] for i in frame.index]).all()
    code, out, _ = cli(capsys, "search", "--store", path, "--like", ids[0], "-k", "4", "--format", "votable")
    hits = parse(io.BytesIO(out.encode()), verify="exception").get_first_table()
    assert code == 0 and {f.name: f.ucd for f in hits.fields if f.name in PREDICTION_UCDS} == PREDICTION_UCDS
    first = hits.to_table()[0]
    assert first["id"] == ids[0] and first["user_label"] == labelled[ids[0]] and first["prediction_set"] == stored[ids[0]]["prediction_set"]


def test_export_in_fits_and_parquet_keeps_whole_class_names(synthetic, tmp_path):
    from astropy.table import Table

    store, ids = synthetic["store"], synthetic["ids"]
    L.add_labels(store, {ids[0]: "a-long-class-name", ids[1]: "B", ids[2]: "B"})
    L.add_labels(store, {ids[4]: "a-long-class-name"})
    L.classify_probe(store, None, alpha=0.2)
    survey = Survey(store)
    assert survey.export(tmp_path / "all.fits") == len(ids) and survey.export(tmp_path / "all.parquet") == len(ids)
    fits_rows = {r["id"]: r for r in Table.read(tmp_path / "all.fits")}
    assert fits_rows[ids[0]]["user_label"] == "a-long-class-name"
    assert {frozenset(str(r["prediction_set"]).split("|")) for r in fits_rows.values()} <= {
        frozenset({"a-long-class-name"}), frozenset({"B"}), frozenset({"a-long-class-name", "B"})}  # fmt: skip
    assert any("|" in str(r["prediction_set"]) for r in fits_rows.values()), "the set of both classes, whole"
    import pyarrow.parquet as pq

    schema = pq.read_schema(tmp_path / "all.parquet")
    assert schema.field("cal_p_a_long_class_name").metadata[b"ucd"] == b"stat.probability"
    assert schema.field("prediction_set").metadata[b"ucd"] == b"src.class"


def test_delete_forgets_the_labels_and_predictions(capsys, synthetic):
    path, ids = synthetic["path"], synthetic["ids"]
    label_per_class(capsys, synthetic, 5)
    assert cli(capsys, "classify", "--store", path, "--probe", "--no-prior")[0] == 0
    gone = list(L.user_labels(synthetic["store"]))[:2]
    code, _, err = cli(capsys, "store", "delete", "--store", path, *gone)
    assert code == 0 and "2 sources deleted" in err
    assert not set(gone) & set(L.user_labels(synthetic["store"])) and L.predictions_of(synthetic["store"], gone) == {}
    assert len(L.predictions_of(synthetic["store"], ids)) == len(ids) - 2


def test_label_suggest_and_classify_have_help_with_examples(capsys):
    for command, words in (("label", ["--from", "--remove"]), ("suggest", ["--text", "-n"]), ("classify", ["--probe", "--abstain"])):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert info.value.code == 0 and "examples:" in out and f"radioalign {command} --store" in out
        assert all(f"radioalign {command} --store first.lance {w}" in out or f" {w} " in out for w in words)


# ---------------------------------------------------------------------------
# The whole loop with a model: the tiny SigLIP's zero-shot prior and text queries


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, tiny_siglip_dir):
    pytest.importorskip("reproject")
    from test_survey_cli import write_good_files

    root = tmp_path_factory.mktemp("labelcli")
    names = write_good_files(root / "cutouts", 8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADIOALIGN_MODELS_DIR", str(tiny_siglip_dir.parent))
        args = ["ingest", root / "cutouts", "--store", root / "store", "--model", "tiny", "--workers", "0", "--no-progress"]
        assert main([str(a) for a in args]) == 0
        yield {"store": root / "store", "names": names}


@pytest.mark.slow
def test_suggest_label_and_probe_with_the_prompts_prior(capsys, ingested, one_thread):
    store, names = ingested["store"], ingested["names"]
    code, out, err = cli(capsys, "suggest", "--store", store, "--text", "bent-tail radio galaxy", "-n", "4", "--format", "json")
    first = json.loads(out)
    assert code == 0 and len(first) == 4 and {r["by"] for r in first} == {"query"} and "closest to 'bent-tail radio galaxy'" in err
    assert first[0]["priority"] == max(r["priority"] for r in first), "the closest to the text first"
    assert cli(capsys, "label", "--store", store, f"{names[0]}=FR-II")[0] == 0
    code, out, err = cli(capsys, "classify", "--store", store, "--probe", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["model"] == "zeroshot" and summary["requested"] == "probe"
    assert "note: only one class is labelled (FR-II: 1); a probe needs two: the predictions are zero-shot (fr)" in err
    assert cli(capsys, "label", "--store", store, f"{names[1]}=FR-I", f"{names[2]}=FR-I", f"{names[3]}=FR-II")[0] == 0
    code, out, err = cli(capsys, "classify", "--store", store, "--probe", "--abstain", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["model"] == "probe" and summary["classes"] == ["FR-I", "FR-II"] and summary["sources"] == 8
    code, out, _ = cli(capsys, "suggest", "--store", store, "-n", "3", "--format", "json")
    picks = json.loads(out)
    assert code == 0 and len(picks) == 3 and {r["by"] for r in picks} == {"margin"} and not {r["name"] for r in picks} & set(names[:4])
    code, out, _ = cli(capsys, "search", "--store", store, "--text", "a double radio source", "-k", "8")
    hits = json.loads(out)
    assert code == 0 and {h["name"]: h["user_label"] for h in hits if h["user_label"]} == {
        names[0]: "FR-II", names[1]: "FR-I", names[2]: "FR-I", names[3]: "FR-II"}  # fmt: skip
    assert all(h["predicted_by"] == "probe" and h["prediction_set"] for h in hits)
