"""Caption audit: which radio-morphology attributes the captions state, and how they relate to the class.

Lexicon (:data:`ATTRIBUTES`)
----------------------------
Nine attributes, each a set of case-insensitive regular expressions with word
boundaries (so "asymmetric" is not "symmetric", "bright" is not "right"); a caption
has an attribute when at least one pattern matches **and is not negated**:

``core``            core(s), nucleus/nuclei, or a central source/component/centroid/
                    condensation/peak/point/knot ("central X", "X ... at/in/near the
                    center"); not "... associated with the central source", which names
                    the main object, not a core.
``jets``            jet(s), jet-like, jetted, collimated.
``lobes``           lobe(s), lobed, lobular.
``hotspots``        hotspots / edge-brightened (limb-brightened) ends: hot(-)spot(s);
                    edge-brightened; brighter/brightest ... at the (outer) ends/edges/tips;
                    bright centroids/knots/peaks at the ends or within the lobes;
                    "terminating/ending in/at ... bright/compact ... or centroids/knots/
                    peaks" (the curated prompt calls bright spots "centroids of flux");
                    centroids that define/mark the ends. Not "originating from or
                    ending at these centroids", which the curated captions use only
                    after "No lobes or jets are seen ...", beyond the negation window.
``core_brightened`` brightest near the core / edge-darkened: edge-(limb-)darkened;
                    brighter/brightest emission/flux/part/region (lies) near/at/toward
                    the core/center/base/nucleus, or "X, brightest at its core" (not
                    "the brightest at the center", which says which centroid is
                    brightest); a brighter central region;
                    fading outward(s)/away/with distance/into the background/toward the
                    ends; "before fading"; diminishing/decreasing/dimming outward.
``bent_tailed``     bent, bend(s/ing), curve(d/s/ing), tail(s/ed), head-tail, wide-angle,
                    narrow-angle, S/C/U/V/J-shaped, arc(s/ed), hook(ed), swept,
                    twisted, kink(ed/s), distorted.
``symmetric``       symmetric, symmetrical(ly), symmetry.
``extra_sources``   extra unrelated sources: other/additional/separate/unrelated/
                    unassociated/secondary/background/field/further/several/multiple/
                    numerous/scattered (up to three words) source(s)/object(s)/
                    galaxy/galaxies; unassociated; unrelated; not associated/related.
``position``        positional words: left, right, top, bottom, upper, lower, east(ern/
                    ward), west, north, south (also in north-east, upper-left, ...).
                    "center/centre" is left out on purpose: it marks the core.

Negation rule
-------------
A match is negated, and does not count, when

* one of ``no, not, without, lacks, lacking, lack, absent, neither, nor, none, never,
  cannot`` or a word ending in ``n't`` is among the **8 words before it in the same
  clause**: "no jets", "No distinct large-scale lobes or collimated jets", "does not
  terminate in a defined lobe", "neither jets nor lobes" are all negated; or
* the same clause goes on, within 40 characters, with "is/are/was/were/appear(s)/
  seem(s)/remain(s) not (clearly/readily/...) visible/seen/observed/present/evident/
  detected/apparent/discernible/identifiable/distinguishable/resolved/found" or
  "... absent/missing": "jets are not visible", "lobes are absent".

A clause starts after ``. ; : ! ? ( )`` or one of ``but, while, whereas, although,
though, however, yet, except``, so "No jets are visible, but two lobes ..." keeps its
lobes. Within a clause, commas split it into segments, and a negator's scope is its own
segment, extended over the segments that follow only while they form a list it governs
(:func:`_list_length`): short items (at most ``LIST_ITEM_WORDS`` words besides ``and``,
``or``, ``nor``) up to the item that closes the list, one starting with ``and/or/nor``
after at least one plain item ("no jets, lobes, or other sources") or one holding
``and/or/nor`` inside ("without jets, lobes or hotspots"). So "No distinct jets,
separate central source, or other emissions are observed" negates the core, while
"without jets, two lobes extend to the north" (a longer segment) and "no jets, and a
compact core" (a two-item "A, and B" is not a list) keep theirs. "The lobes are not
well-defined" still has lobes (poor definition is not absence).

Statistics
----------
* Frequency: the share of captions of a class (0 = FR-I, 1 = FR-II) stating the
  attribute.
* Odds ratio of FR-II: ``OR = ((a+.5)(d+.5)) / ((b+.5)(c+.5))`` with ``a``/``b`` the
  FR-II captions with/without the attribute and ``c``/``d`` the FR-I ones; the
  Haldane-Anscombe correction (+0.5 in every cell, always, not only with an empty
  cell) keeps it finite. Interval: Wald on the log scale, ``exp(log OR +- z SE)`` with
  ``SE = sqrt(1/(a+.5) + 1/(b+.5) + 1/(c+.5) + 1/(d+.5))`` (95 %: z = 1.96). OR > 1:
  the attribute goes with FR-II.
* Contradictions (:data:`CONTRADICTIONS`): an attribute that contradicts the label,
  FR-I: ``hotspots`` (edge-brightened ends are the FR-II definition); FR-II:
  ``core_brightened`` (brightest near the core / edge-darkened is the FR-I
  definition). The contradiction rate is the share of a class's captions with one.
* Truncation (:func:`truncation_audit`): the text tower sees ``max_length`` tokens. Each
  caption goes through ``radioalign.model.tokenize`` (the model's own path: same
  tokenizer, lower-casing rule, truncation and padding) and through the same tokenizer
  without truncation; a caption is cut when its untruncated length (special tokens
  included) exceeds ``max_length``. The cut-off text is recovered from the character
  offsets of the first dropped token (decoded tokens when the tokenizer gives no
  offsets) and searched with the lexicon: an attribute is *lost* when the full caption
  states it and the kept part does not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

CLASS_NAMES = {0: "FR-I", 1: "FR-II"}
NEGATORS = frozenset({"no", "not", "without", "lacks", "lacking", "lack", "absent", "neither", "nor", "none", "never", "cannot"})
NEGATION_WINDOW = 8  # words before a match, within its clause
LIST_ITEM_WORDS = 5  # words of a list item a negator's scope runs across commas for
LIST_JOINS = frozenset({"and", "or", "nor"})
_CLAUSE_BREAK = re.compile(r"[.;:!?()]|\b(?:but|while|whereas|although|though|however|yet|except)\b", re.I)
_WORDS = re.compile(r"[\w'’-]+")
_POST_NEGATION = re.compile(
    r"^[^.;:!?,()]{0,40}?\b(?:is|are|was|were|appears?|seems?|remains?)\s+(?:"
    r"not\s+(?:(?:clearly|readily|obviously|easily|really)\s+)?(?:visible|seen|observed|present|evident|detected|"
    r"apparent|discernible|identifiable|distinguishable|resolved|found)|absent|missing)\b",
    re.I,
)
_ENDS = r"(?:outer\s+|far\s+|extreme\s+|distal\s+)?(?:ends?|edges?|extremit(?:y|ies)|tips?|termin(?:us|i))"
_W = r"(?:[\w-]+,?\s+)"  # one word (and an optional comma) inside a pattern
_NEAR_CORE = r"(?:near|at|towards?|close\s+to|in)\s+(?:the|its|their)\s+(?:core|cent(?:er|re)|central\s+\w+|base|nucleus|origin)\b(?!-)"


@dataclass(frozen=True)
class Attribute:
    """One lexicon entry: ``patterns`` (regexes, case-insensitive); a match is dropped when
    the text just before it matches ``not_after`` (anchored at its end)."""

    name: str
    label: str
    patterns: tuple[str, ...]
    not_after: str | None = None

    def compiled(self) -> re.Pattern:
        return re.compile("|".join(f"(?:{p})" for p in self.patterns), re.I)


ATTRIBUTES: dict[str, Attribute] = {
    a.name: a
    for a in (
        Attribute(
            "core",
            "core",
            (
                r"\bcores?\b",
                r"\bnucle(?:us|i)\b",
                rf"\bcentral\s+{_W}{{0,3}}?(?:source|component|centroid|condensation|peak|point|knot)s?\b",
                rf"\b(?:source|component|centroid|condensation|peak|knot)s?\s+{_W}{{0,4}}?(?:at|in|near)\s+the\s+(?:image\s+|exact\s+|very\s+)?cent(?:er|re)\b(?!-)",
            ),
            not_after=r"(?:associated|related|connected|linked|belonging)\s+(?:with|to)\s+(?:the|this|that|a)\s+$",
        ),
        Attribute("jets", "jets", (r"\bjets?\b", r"\bjetted\b", r"\bcollimated\b")),
        Attribute("lobes", "lobes", (r"\blobes?\b", r"\blobed\b", r"\blobular\b")),
        Attribute(
            "hotspots",
            "hotspots / edge-brightened",
            (
                r"\bhot[\s-]?spots?\b",
                r"\b(?:edge|limb)[\s-]brightened\b",
                rf"\bbright(?:er|est)\s+{_W}{{0,3}}?(?:at|near|towards?|on)\s+(?:the|their|its|both|each)\s+{_ENDS}\b",
                rf"\bbright\w*\s+{_W}{{0,3}}?(?:centroids?|knots?|peaks?|spots?|regions?|condensations?)\s+{_W}{{0,2}}?(?:at|near|in|within|on|towards?)\s+(?:the|their|its|both|each)\s+{_W}{{0,2}}?(?:{_ENDS}|lobes?)\b",
                rf"\b(?:terminat\w*|end(?:s|ed|ing)?)\s+(?:in|at|with|on)\s+{_W}{{0,4}}?(?:bright\w*|compact|hot[\s-]?spots?|(?:flux\s+)?(?:centroids?|knots?|peaks?))\b",
                rf"\b(?:centroids?|knots?|peaks?)\s+{_W}{{0,2}}?(?:define|mark|sit\s+at|lie\s+at)\s+(?:the|their|its)\s+{_ENDS}",
            ),
            # "No lobes or jets are seen originating from or ending at these centroids": the
            # answer to the curated prompt's question, negated beyond the word window.
            not_after=r"\b(?:originat\w*|emanat\w*|extend\w*|arising)\s+(?:from|to)\s+or\s+$",
        ),
        Attribute(
            "core_brightened",
            "brightest near core / edge-darkened",
            (
                r"\b(?:edge|limb)[\s-]darkened\b",
                # emission brightest near the core, or predicative "(lobe,) brightest at its core";
                # not "the brightest at the center" (which centroid is brightest: a bright core
                # does not make an FR-I, the FR ratio leaves the core out).
                rf"\bbright(?:er|est)\s+(?:emission|flux|parts?|regions?|portions?)\s+(?:(?:lies|lie|is|are|sits?|located|found|appears?|remains?)\s+)?{_NEAR_CORE}",
                rf"(?<!the\s)\bbright(?:er|est)\s+{_NEAR_CORE}",
                r"\bbright(?:er|est)\s+central\s+(?:region|part|portion|emission|area)\b",
                rf"\bfad(?:e|es|ed|ing)\s+{_W}{{0,2}}?(?:outwards?|away|with\s+(?:increasing\s+)?distance|into\s+the\s+background|(?:at|towards?)\s+(?:the|its|their|both)\s+{_ENDS})",
                r"\bbefore\s+fading\b",
                rf"\b(?:diminish|decreas|declin|dimm)\w*\s+{_W}{{0,3}}?(?:outwards?|away\s+from|with\s+(?:increasing\s+)?distance)",
            ),
        ),
        Attribute(
            "bent_tailed",
            "bent or tailed",
            (
                r"\bbent\b",
                r"\bbend(?:s|ing)?\b",
                r"\bcurv(?:e|es|ed|ing)\b",
                r"\btail(?:s|ed)?\b",
                r"\bhead-tail\b",
                r"\b(?:wide|narrow)[\s-]angle\b",
                r"\b[scuvj]-shaped?\b",
                r"\barc(?:s|ed)?\b",
                r"\bhook(?:s|ed)?\b",
                r"\bswept\b",
                r"\btwisted\b",
                r"\bkink(?:s|ed)?\b",
                r"\bdistorted\b",
            ),
        ),
        Attribute("symmetric", "symmetric", (r"\bsymmetr(?:ic|ical|ically|y)\b",)),
        Attribute(
            "extra_sources",
            "extra unrelated sources",
            (
                rf"\b(?:other|additional|separate|unrelated|unassociated|secondary|background|field|further|several|multiple|numerous|scattered)\s+{_W}{{0,3}}?(?:sources?|objects?|galax(?:y|ies))\b",
                r"\bunassociated\b",
                r"\bunrelated\b",
                r"\bnot\s+(?:associated|related|connected)\b",
            ),
        ),
        Attribute(
            "position",
            "positional words",
            (r"\b(?:left|right|top|bottom|upper|lower)\b", r"\b(?:east|west|north|south)(?:ern|wards?)?\b"),
        ),
    )
}

#: label -> attributes that contradict it (see the module docstring)
CONTRADICTIONS: dict[int, tuple[str, ...]] = {0: ("hotspots",), 1: ("core_brightened",)}

_COMPILED = {name: (a.compiled(), re.compile(a.not_after, re.I) if a.not_after else None) for name, a in ATTRIBUTES.items()}


# --------------------------------------------------------------------------- lexicon


def _negates(words: Sequence[str]) -> bool:
    return any(w.lower() in NEGATORS or w.lower().endswith(("n't", "n’t")) for w in words[-NEGATION_WINDOW:])


def _list_length(segments: Sequence[str]) -> int:
    """How many of the comma-separated ``segments`` after a negator's own segment continue a
    list it governs (0: none): short items up to the closing one, which starts with
    ``and/or/nor`` (after at least one plain item) or holds one inside."""
    for k, segment in enumerate(segments):
        words = [w.lower() for w in _WORDS.findall(segment)]
        if not words or sum(w not in LIST_JOINS for w in words) > LIST_ITEM_WORDS:
            return 0
        if words[0] in LIST_JOINS:
            return k + 1 if k >= 1 else 0  # "no A, and B": a two-item list takes no comma
        if any(w in LIST_JOINS for w in words[1:]):
            return k + 1
    return 0


def is_negated(text: str, start: int, end: int) -> bool:
    """Whether the match ``text[start:end]`` is negated (the rule in the module docstring)."""
    before = text[:start]
    clause_start = max((m.end() for m in _CLAUSE_BREAK.finditer(before)), default=0)
    following = _CLAUSE_BREAK.search(text, end)
    clause_end = following.start() if following else len(text)
    segments = before[clause_start:].split(",")  # the last one ends at the match
    if _negates(_WORDS.findall(segments[-1])):
        return True
    whole = text[clause_start:clause_end].split(",")  # the clause's segments, the match's at len(segments) - 1
    here = len(segments) - 1
    for j in range(here - 1, -1, -1):
        if _negates(_WORDS.findall(whole[j])):
            return here - j <= _list_length(whole[j + 1 :])
    return bool(_POST_NEGATION.match(text[end:]))


def attribute_matches(caption: str, attribute: str) -> list[tuple[str, bool]]:
    """``(matched text, negated)`` for every match of one attribute in a caption."""
    pattern, cancel = _COMPILED[attribute]
    out = []
    for m in pattern.finditer(caption):
        if cancel is not None and cancel.search(caption[: m.start()]):
            continue
        out.append((m.group(0), is_negated(caption, m.start(), m.end())))
    return out


def has_attribute(caption: str, attribute: str) -> bool:
    """Whether the caption states the attribute (some match is not negated)."""
    return any(not negated for _, negated in attribute_matches(caption, attribute))


def _check_captions(captions: Sequence[str]) -> list[str]:
    if isinstance(captions, str):
        raise TypeError("captions must be a sequence of strings, not one string")
    captions = list(captions)
    bad = [i for i, c in enumerate(captions) if not isinstance(c, str)]
    if bad:
        raise TypeError(f"captions must be strings; items {bad[:5]} are not (drop failed captions first)")
    return captions


def caption_attributes(captions: Sequence[str]) -> pd.DataFrame:
    """One boolean per attribute (columns, in :data:`ATTRIBUTES` order) per caption (rows, in order)."""
    captions = _check_captions(captions)
    return pd.DataFrame(
        {name: [has_attribute(c, name) for c in captions] for name in ATTRIBUTES}, index=pd.RangeIndex(len(captions)), dtype=bool
    )


# ------------------------------------------------------------------------ statistics


def _labels(labels, n: int) -> np.ndarray | None:
    if labels is None:
        return None
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must hold one label per caption ({n}), got shape {y.shape}")
    if not set(np.unique(y).tolist()) <= set(CLASS_NAMES):
        raise ValueError(f"labels must be 0 (FR-I) or 1 (FR-II), got {sorted(set(np.unique(y).tolist()))}")
    return y.astype(np.int64)


def odds_ratio(a: int, b: int, c: int, d: int, level: float = 0.95) -> tuple[float, float, float]:
    """Haldane-Anscombe corrected odds ratio ``(a d) / (b c)`` and its Wald log-scale interval."""
    from scipy.stats import norm

    a, b, c, d = (x + 0.5 for x in (a, b, c, d))
    log_or = math.log(a * d / (b * c))
    se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    z = float(norm.ppf(0.5 + level / 2))
    return math.exp(log_or), math.exp(log_or - z * se), math.exp(log_or + z * se)


def attribute_table(attributes: pd.DataFrame, labels=None, level: float = 0.95) -> pd.DataFrame:
    """Per attribute (rows): counts and frequencies by class and overall, the FR-II odds ratio
    with its interval (``or_low``, ``or_high``). Without labels only ``count_all`` and ``all``."""
    y = _labels(labels, len(attributes))
    table = pd.DataFrame(index=pd.Index(attributes.columns, name="attribute"))
    table["label"] = [ATTRIBUTES[a].label if a in ATTRIBUTES else a for a in attributes.columns]
    table["count_all"] = attributes.sum().astype(int)
    table["all"] = attributes.mean() if len(attributes) else np.nan
    if y is None:
        return table
    for cls, name in CLASS_NAMES.items():
        part = attributes[y == cls]
        table[f"n_{name}"] = len(part)
        table[f"count_{name}"] = part.sum().astype(int)
        table[name] = part.mean() if len(part) else np.nan
    ors = [
        odds_ratio(table.at[a, "count_FR-II"], table.at[a, "n_FR-II"] - table.at[a, "count_FR-II"],
                   table.at[a, "count_FR-I"], table.at[a, "n_FR-I"] - table.at[a, "count_FR-I"], level)
        for a in table.index
    ]
    table["odds_ratio"], table["or_low"], table["or_high"] = (list(x) for x in zip(*ors))
    return table


def contradictions(attributes: pd.DataFrame, labels) -> pd.Series:
    """Per caption: whether it states an attribute that contradicts its label (:data:`CONTRADICTIONS`)."""
    y = _labels(labels, len(attributes))
    flags = np.zeros(len(attributes), dtype=bool)
    for cls, names in CONTRADICTIONS.items():
        flags |= (y == cls) & attributes[list(names)].any(axis=1).to_numpy()
    return pd.Series(flags, index=attributes.index, name="contradiction")


def contradiction_rates(attributes: pd.DataFrame, labels) -> dict[str, float]:
    """Contradiction rate per class (``FR-I``, ``FR-II``) and over all captions (``all``)."""
    y = _labels(labels, len(attributes))
    flags = contradictions(attributes, y).to_numpy()
    out = {name: float(flags[y == cls].mean()) if (y == cls).any() else math.nan for cls, name in CLASS_NAMES.items()}
    out["all"] = float(flags.mean())
    return out


# ------------------------------------------------------------------------ truncation


def _split_at_cut(caption: str, text: str, offsets, tok, ids: list[int], content: list[int], n_kept: int) -> tuple[str, str]:
    """``(kept, cut)`` text of one caption: sliced at the first dropped token's character offset,
    or, for a tokenizer without offsets, the decoded kept and dropped tokens."""
    if n_kept >= len(content):
        return caption, ""
    if offsets is not None:
        start = offsets[content[n_kept]][0]
        source = caption if len(caption) == len(text) else text  # offsets index the (lower-cased) text
        return source[:start], source[start:]
    kept = tok.decode([ids[j] for j in content[:n_kept]], skip_special_tokens=True)
    return kept, tok.decode([ids[j] for j in content[n_kept:]], skip_special_tokens=True)


def truncation_audit(captions: Sequence[str], processor, max_length: int = 64, *, lowercase: bool | None = None) -> pd.DataFrame:
    """Which captions the text tower's ``max_length`` cuts, and which attributes are lost in the cut.

    One row per caption: ``n_tokens`` (untruncated, special tokens included),
    ``truncated``, ``kept_text``, ``cut_text``, ``lost`` (attributes the full caption
    states but the kept part does not) and ``cut_attributes`` (attributes stated in
    the cut part alone). The kept ids are checked against ``radioalign.model.tokenize``,
    so the count is the one the model sees. ``lowercase`` as in ``tokenize``.
    """
    from ..model import expects_lowercase, tokenize

    captions = _check_captions(captions)
    tok = getattr(processor, "tokenizer", processor)
    if getattr(tok, "truncation_side", "right") != "right":
        raise ValueError(f"the tokenizer truncates on the {tok.truncation_side}; the audit expects right-side truncation, as SigLIP uses")
    columns = ["n_tokens", "truncated", "kept_text", "cut_text", "lost", "cut_attributes"]
    if not captions:
        return pd.DataFrame(columns=columns)
    lowercase = expects_lowercase(processor) if lowercase is None else lowercase
    texts = [c.lower() for c in captions] if lowercase else captions
    model_ids = tokenize(processor, captions, max_length, lowercase=lowercase).tolist()
    options = dict(add_special_tokens=True, padding=False, return_special_tokens_mask=True)
    if getattr(tok, "is_fast", False):
        options["return_offsets_mapping"] = True
    full = tok(texts, truncation=False, **options)
    kept = tok(texts, truncation=True, max_length=max_length, **options)
    rows = []
    for i, (caption, text) in enumerate(zip(captions, texts)):
        ids, kept_ids = full["input_ids"][i], kept["input_ids"][i]
        n = len(kept_ids)
        if list(kept_ids) not in (model_ids[i][:n], model_ids[i][len(model_ids[i]) - n :]):  # padded on the right or left
            raise RuntimeError(
                f"caption {i}: the tokenizer's truncated ids differ from radioalign.model.tokenize's; "
                "the audit would not count what the model sees"
            )
        content = [j for j, special in enumerate(full["special_tokens_mask"][i]) if not special]
        n_kept = sum(1 for special in kept["special_tokens_mask"][i] if not special)
        offsets = full["offset_mapping"][i] if "offset_mapping" in full else None
        kept_text, cut_text = _split_at_cut(caption, text, offsets, tok, ids, content, n_kept)
        # Truncation keeps the special tokens and drops content, so "cut" is "content dropped".
        rows.append({"n_tokens": len(ids), "truncated": n_kept < len(content), "kept_text": kept_text, "cut_text": cut_text})
    out = pd.DataFrame(rows)
    if (out["truncated"] != (out["n_tokens"] > max_length)).any():
        raise RuntimeError("truncation by the tokenizer disagrees with the untruncated token counts")
    full_attrs, kept_attrs = caption_attributes(captions), caption_attributes(out["kept_text"].tolist())
    cut_attrs = caption_attributes(out["cut_text"].tolist())
    names = list(ATTRIBUTES)
    out["lost"] = [tuple(a for a in names if full_attrs.at[i, a] and not kept_attrs.at[i, a]) for i in out.index]
    out["cut_attributes"] = [tuple(a for a in names if cut_attrs.at[i, a]) for i in out.index]
    return out[columns]


def lost_counts(truncation: pd.DataFrame) -> pd.Series:
    """Per attribute: how many captions lose it in the cut part."""
    counts = {name: int(sum(name in lost for lost in truncation["lost"])) for name in ATTRIBUTES}
    return pd.Series(counts, name="lost_in_cut")


# ------------------------------------------------------------------------- the audit


def edited_comparison(attributes: pd.DataFrame, edited, labels=None) -> pd.DataFrame:
    """Attribute frequencies of the hand-edited captions against the unedited ones.

    Rows: the attributes, then ``contradiction`` (with labels). Columns ``edited`` and
    ``unedited`` (frequencies), ``count_edited``, ``count_unedited``, ``difference``
    (edited - unedited); ``n_edited``/``n_unedited`` give the group sizes.
    """
    flags = np.asarray(edited, dtype=bool)
    if flags.shape != (len(attributes),):
        raise ValueError(f"edited must hold one flag per caption ({len(attributes)}), got shape {flags.shape}")
    table = attributes.copy()
    if labels is not None:
        table["contradiction"] = contradictions(attributes, labels).to_numpy()
    groups = {"edited": table[flags], "unedited": table[~flags]}
    out = pd.DataFrame(index=pd.Index(table.columns, name="attribute"))
    for name, part in groups.items():
        out[f"n_{name}"] = len(part)
        out[f"count_{name}"] = part.sum().astype(int)
        out[name] = part.mean() if len(part) else np.nan
    out["difference"] = out["edited"] - out["unedited"]
    return out


def audit_captions(
    captions: Sequence[str],
    labels=None,
    *,
    edited=None,
    processor=None,
    max_length: int = 64,
    lowercase: bool | None = None,
    level: float = 0.95,
) -> dict[str, Any]:
    """The audit of one caption set.

    Returns ``{"attributes"`` (per caption, boolean), ``"table"`` (per attribute:
    :func:`attribute_table` plus ``lost_in_cut`` with a processor), ``"summary"`` (n,
    class sizes, contradiction rates ``contradiction_FR-I``/``-FR-II``/``_all``,
    ``n_truncated``/``share_truncated``/``max_length``, edited counts),
    ``"truncation"`` (:func:`truncation_audit`, or None without a processor),
    ``"edited"`` (:func:`edited_comparison`, or None without flags)``}``.
    """
    captions = _check_captions(captions)
    attrs = caption_attributes(captions)
    y = _labels(labels, len(captions))
    table = attribute_table(attrs, y, level=level)
    summary: dict[str, Any] = {"n": len(captions)}
    if y is not None:
        summary.update({f"n_{name}": int((y == cls).sum()) for cls, name in CLASS_NAMES.items()})
        summary.update({f"contradiction_{k}": v for k, v in contradiction_rates(attrs, y).items()})
    truncation = None
    if processor is not None:
        truncation = truncation_audit(captions, processor, max_length, lowercase=lowercase)
        table["lost_in_cut"] = lost_counts(truncation).reindex(table.index).to_numpy()
        summary.update(
            max_length=int(max_length),
            n_truncated=int(truncation["truncated"].sum()),
            share_truncated=float(truncation["truncated"].mean()),
            n_losing_attributes=int((truncation["lost"].map(len) > 0).sum()),
        )
    comparison = None
    if edited is not None:
        comparison = edited_comparison(attrs, edited, y)
        summary.update(n_edited=int(comparison["n_edited"].iloc[0]), n_unedited=int(comparison["n_unedited"].iloc[0]))
        if truncation is not None:
            flags = np.asarray(edited, dtype=bool)
            summary.update(
                share_truncated_edited=float(truncation["truncated"][flags].mean()) if flags.any() else math.nan,
                share_truncated_unedited=float(truncation["truncated"][~flags].mean()) if (~flags).any() else math.nan,
            )
    return {"attributes": attrs, "table": table, "summary": summary, "truncation": truncation, "edited": comparison}


def audit_table(audits: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The per-attribute tables of several caption sets (``{set name: audit_captions(...)}``)
    stacked, with a ``caption_set`` column first."""
    parts = [a["table"].reset_index().assign(caption_set=name) for name, a in audits.items()]
    if not parts:
        raise ValueError("audit_table needs at least one audit")
    table = pd.concat(parts, ignore_index=True)
    return table[["caption_set"] + [c for c in table.columns if c != "caption_set"]]


def audit_summary(audits: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per caption set: its ``summary`` (contradiction rates, truncation, edits)."""
    return pd.DataFrame([{"caption_set": name, **a["summary"]} for name, a in audits.items()])


# ---------------------------------------------------------------------------- figure


def plot_attribute_frequency(table: pd.DataFrame, ax=None):
    """:func:`radioalign.plots.plot_attribute_frequency` (the drawing lives with the library's
    other figures; imported here on call, so the audit does not import matplotlib)."""
    from ..plots import plot_attribute_frequency as draw

    return draw(table, ax=ax)
