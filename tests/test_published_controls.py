"""The published-caption controls (issue 19): the committed measurement, its recomputation from
../shared (tests marked ``shared`` skip visibly without it), and the prose generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from radioalign.study import published_controls as PC

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- notebooks-index:controls-published -->\n(.*?)\n<!-- /notebooks-index:controls-published -->", re.S)


@pytest.fixture(scope="module")
def committed() -> dict:
    data = PC.load()
    assert data is not None, "paper/measurements/controls_published.json is committed (make controls-published)"
    return data


def test_the_committed_file_records_the_fold_seed_spread(committed):
    seeds = committed["settings"]["fold_seeds"]
    assert len(seeds) >= 20 and committed["settings"]["n"] == 104
    assert set(committed["text_baselines"]) >= {"tfidf"} and "tfidf" in committed["differences"]
    for encoder, by in committed["text_baselines"].items():
        for captions in ("curated", "control"):
            for probe, s in by[captions].items():
                v = np.asarray(s["per_seed"])
                assert len(v) == len(seeds), (encoder, captions, probe)
                assert s["mean"] == pytest.approx(v.mean(), abs=1e-6) and s["sd"] == pytest.approx(v.std(ddof=1), abs=1e-6)
                assert (s["min"], s["max"]) == pytest.approx((v.min(), v.max()), abs=1e-6)
                assert 0.5 < s["mean"] <= 1.0, "captions carry the class"
    for captions in ("curated", "control"):
        for name, a in committed["audit"][captions]["attributes"].items():
            for part in ("share", "FR-I", "FR-II", "odds_ratio_FR-II"):
                c = a[part]
                assert c["low"] - 1e-9 <= c["value"] <= c["high"] + 1e-9, (captions, name, part)
    edited = committed["audit"]["edited"]
    assert (edited["n_edited"], edited["n_unedited"]) == (23, 81)
    assert edited["contradiction"]["fisher_p_holm"] >= edited["contradiction"]["fisher_p"]


def test_the_prose_is_generated_from_the_file(committed):
    """README and paper/controls_text.md hold exactly the rendering of the committed file, and
    outside it the control paragraphs quote no measured number (decimals or percentages)."""
    block = PC.markdown_block(committed)
    readme = (ROOT / "README.md").read_text()
    for text in (readme, (ROOT / "paper" / "controls_text.md").read_text()):
        assert BLOCK.search(text).group(1) == block
    assert "± " in block and " sd (" in block and "Fisher's exact p" in block and "Holm" in block
    assert "0.90 (the paper's Table 1, Frozen)" in block and "corrected text probe" in block
    section = readme[readme.index("## Controls: do the captions") : readme.index("## Layout")]
    for text in (section, (ROOT / "paper" / "controls_text.md").read_text(), (ROOT / "paper" / "controls_pairs.md").read_text()):
        outside = BLOCK.sub("", text)
        assert re.findall(r"\d+\.\d+|\d+(?:\.\d+)?\s?%", outside) == [], "a hand-typed measured number"
    tex = PC.latex_block(committed)
    assert "\\begin{tabular}" in tex and "$\\pm$" in tex and "%" not in tex.replace("\\%", "")


def test_spreads_and_intervals_print_differently():
    spread = PC.spread_text({"mean": 0.91, "sd": 0.02, "min": 0.88, "max": 0.94})
    interval = PC.interval_text({"value": 0.91, "low": 0.88, "high": 0.94})
    assert spread == "0.91 ± 0.02 sd (0.88 to 0.94)" and interval == "0.91 [0.88, 0.94]"


@pytest.mark.shared
def test_recomputed_from_the_published_captions(committed, published_captions_dir):
    """Two fold seeds of TF-IDF, the audit and the caption checks, recomputed from ../shared."""
    from radioalign.study.text_controls import published_test_captions

    published, _ = published_test_captions([published_captions_dir])
    labels = published["curated"]["label"].to_numpy()
    texts = {p: r["caption"].tolist() for p, r in published.items()}
    seeds = committed["settings"]["fold_seeds"][:2]
    for captions, items in texts.items():
        for probe in PC.PROBE_LABELS:
            again = PC.cv_per_seed(items, labels, "tfidf", probe, seeds, committed["settings"]["folds"])
            pinned = committed["text_baselines"]["tfidf"][captions][probe]["per_seed"][:2]
            assert again == pytest.approx(pinned, abs=1e-3), (captions, probe)
    audit = PC.audit_block(published["curated"], "curated", committed["settings"]["bootstrap"])
    for name, a in committed["audit"]["curated"]["attributes"].items():
        for part, c in a.items():
            assert audit["attributes"][name][part] == pytest.approx(c, abs=1e-9), (name, part)
    edited = PC.edited_block(audit["_audit"], labels, published["curated"]["edited"].to_numpy())
    for key, value in committed["audit"]["edited"].items():
        assert edited[key] == (pytest.approx(value, abs=1e-9) if isinstance(value, dict) else value), key
    assert PC.caption_checks(published_captions_dir) == committed["captions"]
    assert committed["captions"]["curated_test"]["changed_by_strip"] == 3


@pytest.mark.shared
@pytest.mark.slow
def test_minilm_rows_recomputed(committed, published_captions_dir):
    from radioalign.study.text_controls import published_test_captions
    from radioalign.text_baselines import text_only_features

    if "minilm" not in committed["text_baselines"]:
        pytest.skip("the committed file has no MiniLM rows")
    published, _ = published_test_captions([published_captions_dir])
    labels = published["curated"]["label"].to_numpy()
    items = published["curated"]["caption"].tolist()
    features = text_only_features(items, "minilm")
    again = PC.cv_per_seed(items, labels, "minilm", "knn", [committed["settings"]["fold_seeds"][0]], 5, features)
    assert again[0] == pytest.approx(committed["text_baselines"]["minilm"]["curated"]["knn"]["per_seed"][0], abs=1e-3)
