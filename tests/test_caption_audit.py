"""Caption audit: lexicon, negation, odds ratios, contradictions, truncation, figure (radioalign.captions.audit)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from radioalign.captions.audit import (
    ATTRIBUTES,
    CONTRADICTIONS,
    attribute_table,
    audit_captions,
    audit_summary,
    audit_table,
    caption_attributes,
    contradiction_rates,
    contradictions,
    edited_comparison,
    has_attribute,
    odds_ratio,
    plot_attribute_frequency,
    truncation_audit,
)

# (caption, attribute, stated?)
LEXICON_CASES = [
    ("A bright core with two lobes.", "core", True),
    ("Diffuse emission is unassociated with the central source.", "core", False),  # the main object, not a core
    ("A single bright centroid of flux at the center.", "core", True),
    ("Two collimated jets emanate from it.", "jets", True),
    ("No jets or lobes are visible.", "jets", False),
    ("No jets or lobes are visible.", "lobes", False),
    ("No distinct large-scale lobes or collimated jets are evident.", "jets", False),  # 7 words back
    ("No jets are visible, but two diffuse lobes extend outwards.", "lobes", True),  # new clause
    ("The jet does not terminate in a defined lobe.", "lobes", False),
    ("The lobes are not well-defined.", "lobes", True),  # poorly defined is not absent
    ("Jets are not clearly visible.", "jets", False),  # negation after the match
    ("A source without lobes.", "lobes", False),
    ("Neither jets nor lobes are seen.", "lobes", False),
    ("The brightest peaks sit at the outer ends: edge-brightened hotspots.", "hotspots", True),
    ("Two lobes terminating in bright, compact centroids.", "hotspots", True),
    ("No lobes are seen originating from or ending at these centroids.", "hotspots", False),
    ("Lobes terminating in diffuse plumes.", "hotspots", False),
    ("The brightest emission lies near the center and fades outward: edge-darkened jets.", "core_brightened", True),
    ("Two centroids: the brightest at the center, a fainter one to the left.", "core_brightened", False),
    ("A compact lobe, brightest at its core.", "core_brightened", True),
    ("A wide-angle tail bent to the north.", "bent_tailed", True),
    ("An S-shaped source.", "bent_tailed", True),
    ("Highly symmetrical lobes.", "symmetric", True),
    ("An asymmetric structure.", "symmetric", False),  # word boundary
    ("Several faint, unassociated point sources are scattered.", "extra_sources", True),
    ("No other sources are present in the image.", "extra_sources", False),
    ("There are no other distinct sources within the field.", "extra_sources", False),
    ("A compact source, not associated with the main galaxy.", "extra_sources", True),
    ("A bright source.", "position", False),  # "bright" is not "right"
    ("A fainter one to the upper-left.", "position", True),
    ("The western lobe is brighter.", "position", True),
    # clause-level scope: commas, "but", "without"
    ("No hotspots, but bright lobes.", "lobes", True),  # "but" opens a new clause
    ("No hotspots, but bright lobes.", "hotspots", False),
    ("No jets, lobes, or other sources are visible.", "lobes", False),  # a list across commas
    ("No jets, lobes, or other sources are visible.", "extra_sources", False),
    ("A bright core without jets, lobes or hotspots.", "hotspots", False),  # "A, B or C"
    ("A bright core without jets, lobes or hotspots.", "lobes", False),
    ("A bright core without jets, lobes or hotspots.", "core", True),  # before the negator
    ("No distinct jets, separate central source, or other emissions are observed.", "core", False),
    ("Without jets, two lobes extend to the north.", "lobes", True),  # a clause, not a list item
    ("No jets, and a compact core.", "core", True),  # "A, and B" is no list
    ("No jets, lobes", "lobes", True),  # nothing closes a list
    ("The core is compact, without jets, but with two lobes.", "lobes", True),
    ("The core is compact, without jets, but with two lobes.", "jets", False),
]


@pytest.mark.parametrize("caption, attribute, stated", LEXICON_CASES)
def test_lexicon_and_negation(caption, attribute, stated):
    assert has_attribute(caption, attribute) is stated


def test_caption_attributes_is_a_boolean_table_in_lexicon_order():
    table = caption_attributes(["A core.", "Two lobes and jets.", "Nothing to see."])
    assert list(table.columns) == list(ATTRIBUTES)
    assert table.shape == (3, len(ATTRIBUTES)) and (table.dtypes == bool).all()
    assert table.loc[1, ["lobes", "jets"]].all() and not table.loc[2].any()
    with pytest.raises(TypeError, match="not one string"):
        caption_attributes("A core.")


def test_odds_ratio_haldane_anscombe_and_wald_interval():
    a, b, c, d = 8, 2, 3, 7
    value, low, high = odds_ratio(a, b, c, d)
    expected = (8.5 * 7.5) / (2.5 * 3.5)
    se = math.sqrt(1 / 8.5 + 1 / 2.5 + 1 / 3.5 + 1 / 7.5)
    assert value == pytest.approx(expected)
    assert (low, high) == pytest.approx((expected * math.exp(-1.959964 * se), expected * math.exp(1.959964 * se)), rel=1e-5)
    swapped = odds_ratio(c, d, a, b)
    assert swapped[0] == pytest.approx(1 / value) and swapped[1] == pytest.approx(1 / high)
    assert np.isfinite(odds_ratio(5, 0, 0, 5)).all()  # an empty cell stays finite


def test_attribute_table_counts_by_class():
    captions = ["Edge-brightened hotspots.", "Hotspots and lobes.", "A bent tail.", "Lobes."]
    labels = [1, 1, 0, 0]
    table = attribute_table(caption_attributes(captions), labels)
    assert table.loc["hotspots", ["count_FR-II", "count_FR-I", "FR-II", "FR-I"]].tolist() == [2, 0, 1.0, 0.0]
    assert table.loc["lobes", "all"] == 0.5
    assert table.loc["hotspots", "odds_ratio"] > 1 > table.loc["bent_tailed", "odds_ratio"]
    assert (table["or_low"] <= table["odds_ratio"]).all() and (table["odds_ratio"] <= table["or_high"]).all()
    unlabelled = attribute_table(caption_attributes(captions))
    assert "FR-I" not in unlabelled.columns and unlabelled.loc["lobes", "count_all"] == 2


def test_contradictions_follow_the_documented_rules():
    assert CONTRADICTIONS == {0: ("hotspots",), 1: ("core_brightened",)}
    captions = ["Edge-brightened hotspots.", "Edge-darkened jets.", "Edge-brightened hotspots.", "Edge-darkened jets."]
    labels = [0, 0, 1, 1]
    attrs = caption_attributes(captions)
    assert contradictions(attrs, labels).tolist() == [True, False, False, True]
    assert contradiction_rates(attrs, labels) == {"FR-I": 0.5, "FR-II": 0.5, "all": 0.5}
    with pytest.raises(ValueError, match="0 \\(FR-I\\) or 1"):
        contradictions(attrs, [0, 1, 2, 1])


def test_edited_comparison_splits_the_groups():
    attrs = caption_attributes(["Two lobes.", "Two lobes.", "A core.", "Edge-brightened hotspots."])
    table = edited_comparison(attrs, [True, True, False, False], labels=[1, 1, 0, 0])
    assert table.loc["lobes", ["edited", "unedited", "difference"]].tolist() == [1.0, 0.0, 1.0]
    assert table.loc["contradiction", "unedited"] == 0.5  # the FR-I caption with hotspots
    assert table["n_edited"].iloc[0] == 2


# ------------------------------------------------------------------------ truncation


def test_truncation_uses_the_model_tokenizer_and_finds_lost_attributes(tiny):
    from radioalign.captions.stats import token_lengths
    from radioalign.model import tokenize

    _, processor = tiny
    long = "a bright core with two lobes " + "and " * 70 + "a wide-angle tail to the left."
    short = "a bright core with two lobes."
    table = truncation_audit([long, short], processor, max_length=64)
    lengths = token_lengths([long, short], processor)
    assert table["n_tokens"].tolist() == lengths.tolist()
    assert table["truncated"].tolist() == [True, False]
    assert "wide-angle tail" in table.at[0, "cut_text"] and table.at[1, "cut_text"] == ""
    assert long.startswith(table.at[0, "kept_text"]) and table.at[0, "kept_text"] + table.at[0, "cut_text"] == long
    assert set(table.at[0, "lost"]) == {"bent_tailed", "position"}
    assert table.at[1, "lost"] == ()
    # The kept part is exactly what the model's tokenize keeps.
    kept_ids = tokenize(processor, [table.at[0, "kept_text"].rstrip()], 64)
    assert (kept_ids[0, :-1] == tokenize(processor, [long], 64)[0, :-1]).all()


class _NoOffsets:
    """A tokenizer without character offsets (a slow tokenizer): the cut text is decoded instead."""

    is_fast = False

    def __init__(self, tok):
        object.__setattr__(self, "_tok", tok)

    def __getattr__(self, name):  # padding_side, pad_token_id, ... of the real tokenizer
        return getattr(self._tok, name)

    def __setattr__(self, name, value):
        setattr(self._tok, name, value)

    def __call__(self, texts, **options):
        options.pop("return_offsets_mapping", None)
        return self._tok(texts, **options)

    def decode(self, ids, **options):
        return self._tok.decode(ids, **options)


def test_truncation_without_offsets_decodes_the_cut_tokens(tiny):
    _, processor = tiny
    long = "a bright core with two lobes " + "and " * 70 + "a wide-angle tail to the left"
    table = truncation_audit([long], _NoOffsets(processor.tokenizer), max_length=64)
    assert table.at[0, "truncated"] and table.at[0, "cut_text"].endswith("tail to the left")
    assert set(table.at[0, "lost"]) == {"bent_tailed", "position"}


def test_audit_captions_bundles_everything(tiny):
    _, processor = tiny
    captions = ["Edge-brightened hotspots " + "and " * 70 + "a bent tail.", "Edge-darkened jets.", "Two lobes.", "A core."]
    audit = audit_captions(captions, [1, 0, 1, 0], edited=[True, False, False, False], processor=processor)
    assert set(audit) == {"attributes", "table", "summary", "truncation", "edited"}
    summary = audit["summary"]
    assert summary["n_truncated"] == 1 and summary["share_truncated_edited"] == 1.0
    assert audit["table"].loc["bent_tailed", "lost_in_cut"] == 1
    assert summary["contradiction_all"] == 0.0


# ----------------------------------------------------------------------------- figure


def _tables() -> pd.DataFrame:
    audits = {
        "curated": audit_captions(["Edge-brightened hotspots.", "A bent tail."], [1, 0]),
        "unlabelled": audit_captions(["Two lobes.", "A core."]),
    }
    return audit_table(audits)


def test_plot_attribute_frequency_draws_one_bar_per_set_class_attribute():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _tables()
    assert list(table.columns[:2]) == ["caption_set", "attribute"]
    ax = plot_attribute_frequency(table)
    bars = [p for p in ax.patches]
    assert len(bars) == len(ATTRIBUTES) * 3  # curated: FR-I and FR-II; unlabelled: all
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["FR-I", "FR-II", "all", "curated", "unlabelled"]
    plt.close(ax.figure)


# --------------------------------------------------------------------- real captions


@pytest.fixture(scope="module")
def published(published_captions_dir):
    from radioalign.captions.published import load_published_records

    curated = load_published_records("curated", "test", published_captions_dir)
    control = load_published_records("control", "test", published_captions_dir)
    return curated, control


@pytest.mark.shared
def test_audit_of_both_published_prompts(published, tiny, tmp_path):
    """Both prompts' test captions (the control rows share the curated file's labels: row i
    is item i of the same Confident test split), with the 23 hand-edited captions compared."""
    from radioalign.captions.stats import token_lengths

    curated, control = published
    _, processor = tiny
    labels = curated["label"].to_numpy()
    audits = {
        "curated": audit_captions(curated["caption"], labels, edited=curated["edited"], processor=processor),
        "control": audit_captions(control["caption"], labels, processor=processor),
    }
    table, summary = audit_table(audits), audit_summary(audits).set_index("caption_set")
    assert len(table) == 2 * len(ATTRIBUTES) and table[["FR-I", "FR-II", "odds_ratio"]].notna().all().all()
    edited = audits["curated"]["edited"]
    assert edited["n_edited"].iloc[0] == 23 and edited["n_unedited"].iloc[0] == 81
    assert "contradiction" in edited.index
    for name, records in (("curated", curated), ("control", control)):
        # Truncation counted through the model's tokenizer path agrees with the tokenizer's own lengths.
        assert summary.at[name, "n_truncated"] == int((token_lengths(records["caption"], processor) > 64).sum())
    assert summary.at["curated", "n_truncated"] > summary.at["control", "n_truncated"]  # curated captions are longer
    # Captions are not random words: some attribute goes with the class in each set.
    assert (table["or_high"] < 1).any() or (table["or_low"] > 1).any()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[["caption_set", "attribute", "FR-I", "FR-II", "odds_ratio", "or_low", "or_high", "lost_in_cut"]].round(2))
        print(summary.T)
        print(edited[["edited", "unedited", "difference"]].round(2))


@pytest.mark.shared
@pytest.mark.slow
def test_attribute_figure_curated_control_catalogue(published, mirabest_f_archive, tmp_path):
    """The figure with the catalogue captions of the MiraBest_F test images (their own labels:
    F's test items are not the published captions' items)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from radioalign.captions import catalog_caption
    from radioalign.data import load_mirabest

    shutil.copy(mirabest_f_archive, tmp_path / mirabest_f_archive.name)  # extract in tmp, never in ../shared
    f_test = load_mirabest("test", version="F", root=tmp_path, download=False)
    catalogue = [catalog_caption(image, "curated") for image in f_test.images]
    curated, control = published
    labels = curated["label"].to_numpy()
    audits = {
        "curated": audit_captions(curated["caption"], labels),
        "control": audit_captions(control["caption"], labels),
        "catalogue": audit_captions(catalogue, f_test.labels),
    }
    table = audit_table(audits)
    cat = table[table["caption_set"] == "catalogue"].set_index("attribute")
    assert cat.at["hotspots", "FR-II"] > cat.at["hotspots", "FR-I"]  # the catalogue measures the FR ratio
    ax = plot_attribute_frequency(table)
    assert len(ax.patches) == 3 * 2 * len(ATTRIBUTES)
    ax.figure.savefig(tmp_path / "attributes.png")
    assert (tmp_path / "attributes.png").stat().st_size > 0
    print(audit_summary(audits).round(3).to_string())
    plt.close(ax.figure)
