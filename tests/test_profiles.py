"""Profiles: one object flows everywhere, overrides reach the stamps, learning rates in one place."""

from __future__ import annotations

import json

import pytest
import torch

from radioalign.embed import resolve_dtype
from radioalign.provenance import stamp, write_stamp
from radioalign.study.profiles import PAPER_LEARNING_RATES, finetune_config, get_profile


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_paper_profile_embeds_in_float32_on_every_device(device):
    # resolve_dtype needs no GPU for a named dtype: the profile, not the hardware, decides
    assert resolve_dtype(get_profile("paper").dtype, device) == torch.float32
    assert finetune_config(get_profile("paper"), "full", "curated").embed_dtype == "float32"
    assert get_profile("cpu").dtype == "auto", "the cpu profile opts into bf16 where fast"


def test_learning_rates_are_decided_by_the_profile_alone():
    P = get_profile("paper")
    assert {k: P.learning_rate(*k.split("-")) for k in PAPER_LEARNING_RATES} == PAPER_LEARNING_RATES
    assert P.learning_rate("text", "catalog") == 2.5e-5, "a run the authors did not log takes the default"
    Q = get_profile("paper", learning_rates={"full-curated": 1e-4})
    assert Q.learning_rate("full", "curated") == 1e-4 and Q.learning_rate("text", "control") == 5e-6
    assert finetune_config(Q, "full", "curated").lr == 1e-4
    with pytest.raises(ValueError, match="run tags"):
        get_profile("paper", learning_rates={"curated": 1e-4})


def test_a_bad_setting_fails_when_the_config_is_built():
    with pytest.raises(ValueError, match="preprocessing"):
        finetune_config(get_profile("smoke", preprocessing="imagenet"), "vision", "curated")
    with pytest.raises(ValueError, match="scope"):
        finetune_config(get_profile("smoke"), "both", "curated")


def test_overrides_reach_the_stamps(tmp_path):
    P = get_profile("smoke", epochs=7, scopes="vision,text", learning_rates={"vision-curated": 3e-4})
    record = stamp(P)
    assert record["profile"] == "smoke" and record["profile_note"] == P.note
    settings = record["profile_settings"]
    assert settings["epochs"] == 7 and settings["scopes"] == ["vision", "text"]
    assert settings["learning_rates"]["vision-curated"] == 3e-4
    path = write_stamp(tmp_path / "fig.png", P, notebook="05_similarity")
    on_disk = json.loads(path.read_text())
    assert on_disk["profile_settings"] == json.loads(json.dumps(settings)) and on_disk["notebook"] == "05_similarity"
    assert stamp("smoke")["profile"] == "smoke" and "profile_settings" not in stamp("smoke")
    with pytest.raises(TypeError):
        stamp(42)


def test_table_stamps_carry_the_profile_with_its_overrides(tmp_path, monkeypatch):
    from radioalign.study.evaluation import evaluate_bundle, synthetic_bundle
    from radioalign.study.tables import write_metrics, write_tables

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    P = get_profile("smoke", bootstrap=20)
    rows = evaluate_bundle(synthetic_bundle(30, 12, 4), "curated", tag="frozen", bootstrap=20, protocols=("paper",))
    path = write_metrics(rows, P)
    assert path == tmp_path / "smoke" / "metrics.csv"
    assert json.loads(path.with_name("metrics.csv.stamp.json").read_text())["profile_settings"]["bootstrap"] == 20
    written = write_tables(rows, P, B=20)
    stamp_ = json.loads(written["table1.md"].with_name("table1.md.stamp.json").read_text())
    assert stamp_["profile"] == "smoke" and stamp_["profile_settings"]["bootstrap"] == 20
    assert "profile smoke" in written["table1.md"].read_text()


def test_the_layout_takes_a_profile_then_its_folder(tmp_path, monkeypatch):
    """``results_dir`` is where a Profile becomes a folder; a name there, or a name where the
    folder is due, fails loudly instead of writing to a relative path."""
    from radioalign.study import layout

    monkeypatch.setenv("RADIOALIGN_RESULTS_DIR", str(tmp_path))
    results = layout.results_dir(get_profile("smoke", seed=3))
    assert results == tmp_path / "smoke"
    assert layout.run_dir(results, "full-curated") == tmp_path / "smoke" / "runs" / "full-curated"
    assert layout.captions_store(results, "catalog", "curated", "test") == results / "captions" / "catalog" / "curated_test.jsonl"
    with pytest.raises(TypeError, match="takes a Profile"):
        layout.results_dir("smoke")
    with pytest.raises(TypeError, match="results folder"):
        layout.embeddings_file("smoke", "frozen")
