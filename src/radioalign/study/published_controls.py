"""The published-caption controls, measured once and committed: ``make controls-published``.

Notebook 07 runs the text-only baselines and the caption audit on whatever captions a
profile has; on the authors' 104 labelled published test captions (``../shared`` or the
downloaded files, sha256-checked) they need neither a GPU nor ``MiraBest_full``, so they are
measured here, offline, into ``paper/measurements/controls_published.json``, and the prose
of the README, ``paper/controls_text.md`` and the report is generated from that file
(:func:`markdown_block`, :func:`latex_block`; ``make notebooks-index`` writes them), so
every number quoted has a committed source.

What the file holds (definitions):

* ``text_baselines[encoder][captions][probe]``: stratified ``folds``-fold cross-validated F1
  (TF-IDF refitted on each training fold; MiniLM features computed once), repeated for each
  fold seed of ``fold_seeds`` (folds and probe initialisation drawn from that seed): the
  per-seed mean over folds (``per_seed``) and their ``mean``, ``sd`` (ddof 1), ``min`` and
  ``max`` over the seeds. Linear probes report binary F1 (FR-II positive), KNN macro F1.
  ``differences[encoder][probe]``: curated − control of the per-seed values (same folds).
* ``probe_init[captions]``: the paper probe on TF-IDF with the folds of seed 0 fixed and its
  initialisation drawn from each of ``fold_seeds``: what the probe's seed alone moves.
* ``audit[captions]``: per attribute the share of captions stating it, overall and by class,
  with 95 % percentile bootstrap intervals over the captions (B = ``bootstrap``, seed 0), and
  its FR-II odds ratio (Haldane-corrected, Wald interval); the contradiction rate likewise.
  ``audit["edited"]``: the authors' 23 hand-edited curated captions against the 81 others,
  per attribute and for contradictions: both shares and Fisher's exact two-sided p.
* ``captions``: per published file, the captions that ``.str.strip()`` changes and the
  captions shared verbatim (the only source of exact ties in retrieval ranks).
* ``comparators``: the paper's published Frozen image probe (``tables.PUBLISHED``) and the
  corrected text probe (SigLIP 2 text features, notebook 04's ``frozen``/``text`` row), which
  needs the paper profile and is null here.

    python -m radioalign.study.published_controls [--captions-dir DIR] [--seeds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..captions.audit import ATTRIBUTES, audit_captions
from ..paths import captions_dir, repo_root, shared_dir
from ..provenance import stamp
from ..text_baselines import cross_validated_f1, cross_validated_text_f1, text_only_features
from .text_controls import PROBE_METRICS, audit_rows, published_test_captions

PATH = Path(__file__).resolve().parents[3] / "paper" / "measurements" / "controls_published.json"
PROBE_LABELS = {"paper": "linear probe", "sklearn": "sklearn probe", "knn": "KNN"}
ENCODER_LABELS = {"tfidf": "TF-IDF", "minilm": "MiniLM"}


def caption_folders(extra: Sequence = ()) -> list[Path]:
    """Where the published caption files are looked for, first found wins."""
    shared = shared_dir()
    return [Path(f) for f in (*extra, captions_dir(), shared / "data" / "captions" if shared else None) if f is not None]


def _spread(values: Sequence[float]) -> dict:
    v = np.asarray(values, dtype=float)
    return {"per_seed": [round(float(x), 6) for x in v], "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "min": float(v.min()), "max": float(v.max())}  # fmt: skip


def cv_per_seed(texts: Sequence[str], labels, encoder: str, probe: str, seeds: Sequence[int], folds: int, features=None) -> list[float]:
    """The cross-validated F1 (Table 1's kind for ``probe``) for each fold seed."""
    f1 = PROBE_METRICS[probe][1]
    out = []
    for seed in seeds:
        if features is None:
            cv = cross_validated_text_f1(list(texts), labels, encoder=encoder, folds=folds, seed=int(seed), probe=probe)
        else:
            cv = cross_validated_f1(features, labels, folds=folds, seed=int(seed), probe=probe)
        out.append(float(cv["folds"][f1].mean()))
    return out


def text_baselines(texts: Mapping[str, Sequence[str]], labels, encoders, seeds, folds) -> tuple[dict, dict]:
    """``(baselines, differences)`` of the module docstring."""
    baselines, differences = {}, {}
    for encoder in encoders:
        per = {}
        for captions, items in texts.items():
            features = None if encoder == "tfidf" else text_only_features(list(items), encoder)
            per[captions] = {p: cv_per_seed(items, labels, encoder, p, seeds, folds, features) for p in PROBE_METRICS}
        baselines[encoder] = {c: {p: {"metric": PROBE_METRICS[p][0], "f1": PROBE_METRICS[p][1], **_spread(v)} for p, v in by.items()}
                              for c, by in per.items()}  # fmt: skip
        if {"curated", "control"} <= set(per):
            differences[encoder] = {p: _spread(np.subtract(per["curated"][p], per["control"][p])) for p in PROBE_METRICS}
    return baselines, differences


def probe_init(texts: Mapping[str, Sequence[str]], labels, seeds, folds) -> dict:
    """The paper probe on TF-IDF, folds of seed 0, initialisation from each seed."""
    out = {}
    for captions, items in texts.items():
        values = [cross_validated_text_f1(list(items), labels, "tfidf", folds=folds, seed=0, probe="paper", probe_seed=int(s))
                  ["folds"]["f1_binary"].mean() for s in seeds]  # fmt: skip
        out[captions] = _spread(values)
    return out


def _cell(row) -> dict:
    return {"value": float(row["value"]), "low": float(row["low"]), "high": float(row["high"])}


def audit_block(records: pd.DataFrame, captions: str, bootstrap: int) -> dict:
    """One caption set's audit figures (module docstring) from ``text_controls.audit_rows``."""
    labels = records["label"].to_numpy()
    edited = records["edited"].to_numpy() if records["edited"].any() else None
    audit = audit_captions(records["caption"].tolist(), labels, edited=edited)
    rows = audit_rows(audit, labels, captions=captions, edited=edited, bootstrap=bootstrap, seed=0)
    get = rows.set_index(["metric", "attribute", "group"])
    attributes = {}
    for name in ATTRIBUTES:
        odds = get.loc[("odds_ratio", name, "FR-II vs FR-I")]
        attributes[name] = {"share": _cell(get.loc[("share", name, "all")]), "FR-I": _cell(get.loc[("share", name, "FR-I")]),
                            "FR-II": _cell(get.loc[("share", name, "FR-II")]), "odds_ratio_FR-II": _cell(odds)}  # fmt: skip
    contradiction = {g: _cell(get.loc[("contradiction", "", g)]) for g in ("all", "FR-I", "FR-II")}
    return {"n": len(records), "attributes": attributes, "contradiction": contradiction, "_audit": audit}


def edited_block(audit: Mapping, labels, edited) -> dict:
    """Edited against unedited captions: shares and Fisher's exact two-sided p per attribute and for contradictions."""
    from scipy.stats import fisher_exact

    from ..captions.audit import contradictions

    from .seeds import holm

    flags = np.asarray(edited, dtype=bool)
    table = audit["attributes"].assign(contradiction=contradictions(audit["attributes"], labels).to_numpy())
    out = {"n_edited": int(flags.sum()), "n_unedited": int((~flags).sum())}
    for name in table.columns:
        a, b = table[name].to_numpy()[flags], table[name].to_numpy()[~flags]
        p = fisher_exact([[a.sum(), len(a) - a.sum()], [b.sum(), len(b) - b.sum()]]).pvalue
        out[name] = {"edited": float(a.mean()), "unedited": float(b.mean()), "count_edited": int(a.sum()),
                     "count_unedited": int(b.sum()), "fisher_p": float(p)}  # fmt: skip
    adjusted = holm([out[name]["fisher_p"] for name in table.columns])  # the family: every comparison made here
    for name, p in zip(table.columns, adjusted):
        out[name]["fisher_p_holm"] = float(p)
    return out


def caption_checks(folder: Path) -> dict:
    """Per published file: captions that ``.str.strip()`` changes, and captions shared verbatim."""
    from ..captions.published import FILES

    out = {}
    for (prompt, split), (name, _, _) in FILES.items():
        raw = pd.read_csv(folder / name, encoding="utf-8-sig", keep_default_na=False)["caption"].astype(str)
        out[f"{prompt}_{split}"] = {"file": name, "n": len(raw), "changed_by_strip": int((raw != raw.str.strip()).sum()),
                                    "verbatim_duplicates": int(raw.str.strip().duplicated(keep=False).sum())}  # fmt: skip
    return out


def measure(folders: Sequence = (), *, seeds: Sequence[int] = tuple(range(20)), folds: int = 5,
            encoders: Sequence[str] = ("tfidf", "minilm"), bootstrap: int = 1000) -> dict:  # fmt: skip
    """Every figure of the module docstring, as a JSON-ready dict (with ``summary`` and ``stamp``)."""
    from .tables import PUBLISHED

    published, where = published_test_captions(caption_folders(folders))
    if published is None:
        raise FileNotFoundError(f"no published test captions: {where}")
    labels = published["curated"]["label"].to_numpy()
    texts = {p: r["caption"].tolist() for p, r in published.items()}
    baselines, differences = text_baselines(texts, labels, encoders, seeds, folds)
    audit = {p: audit_block(r, p, bootstrap) for p, r in published.items()}
    curated = published["curated"]
    audit["edited"] = edited_block(audit["curated"].pop("_audit"), labels, curated["edited"].to_numpy())
    audit["control"].pop("_audit")
    data = {
        "settings": {"folds": folds, "fold_seeds": [int(s) for s in seeds], "encoders": list(encoders), "bootstrap": bootstrap,
                     "n": len(labels), "n_FR-I": int((labels == 0).sum()), "n_FR-II": int((labels == 1).sum()),
                     "captions_folder": _shown(where)},
        "text_baselines": baselines, "differences": differences, "probe_init": probe_init(texts, labels, seeds, folds),
        "audit": audit, "captions": caption_checks(Path(where)),
        "comparators": {"published_image_probe_frozen": PUBLISHED["Linear probe F1, images"]["frozen"][0],
                        "published_text_probe_frozen_image_features": PUBLISHED["Linear probe F1, text"]["frozen"][0],
                        "corrected_text_probe_frozen": None},
    }  # fmt: skip
    data["summary"] = summary(data)
    data["stamp"] = stamp(None, command="python -m radioalign.study.published_controls")
    return data


def _shown(where: str) -> str:
    """The captions folder as the file records it: relative to the repository where it can be
    (``../shared/data/captions``), so the file names no machine's paths."""
    try:
        return str(Path("..") / Path(where).resolve().relative_to(repo_root().resolve().parent))
    except ValueError:
        return Path(where).name


def load(path: Path | None = None) -> dict | None:
    """The committed measurement (None when absent)."""
    path = PATH if path is None else Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def write(data: Mapping, path: Path | None = None) -> Path:
    path = PATH if path is None else Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


# ---------------------------------------------------------------------------- prose


def spread_text(s: Mapping, signed: bool = False) -> str:
    """A spread over seeds, never in the ``[low, high]`` form of an interval:
    ``0.84 ± 0.02 sd (0.80 to 0.87)``."""
    f = "{:+.2f}" if signed else "{:.2f}"
    sd = "" if s.get("sd") is None else f" ± {s['sd']:.2f} sd"
    return f"{f.format(s['mean'])}{sd} ({f.format(s['min'])} to {f.format(s['max'])})"


def interval_text(c: Mapping, percent: bool = False) -> str:
    """A value with its 95 % interval: ``0.24 [0.11, 0.54]``, or ``85 % [78, 91]``."""
    if percent:
        return f"{100 * c['value']:.0f} % [{100 * c['low']:.0f}, {100 * c['high']:.0f}]"
    return f"{c['value']:.2f} [{c['low']:.2f}, {c['high']:.2f}]"


def summary(data: Mapping) -> str:
    """One line for the deviation registry and the stamp."""
    t = data["text_baselines"]["tfidf"]
    k = len(data["settings"]["fold_seeds"])
    return (f"TF-IDF linear probe, {data['settings']['folds']}-fold CV over {k} fold seeds: curated "
            f"{spread_text(t['curated']['paper'])}, control {spread_text(t['control']['paper'])}")


def _percent(c: Mapping) -> str:
    digits = 1 if max(c["value"], c["high"]) < 0.1 else 0
    return f"{100 * c['value']:.{digits}f} % [{100 * c['low']:.{digits}f}, {100 * c['high']:.{digits}f}]"


def baseline_rows(data: Mapping) -> list[list[str]]:
    """The cross-validation table: encoder, caption set (and curated − control), the three probes."""
    rows = []
    for encoder, by in data["text_baselines"].items():
        for captions, probes in by.items():
            rows.append([ENCODER_LABELS.get(encoder, encoder), captions] + [spread_text(probes[p]) for p in PROBE_LABELS])
        if encoder in data["differences"]:
            d = data["differences"][encoder]
            rows.append([ENCODER_LABELS.get(encoder, encoder), "curated − control"] + [spread_text(d[p], True) for p in PROBE_LABELS])
    return rows


def baseline_sentences(data: Mapping) -> tuple[str, str]:
    """``(before the table, after it)``: what was measured, then the comparators."""
    s, c = data["settings"], data["comparators"]
    tfidf = data["text_baselines"]["tfidf"]["curated"]["paper"]
    init = data["probe_init"]["curated"]
    before = (f"Stratified {s['folds']}-fold cross-validation on the {s['n']} labelled published test captions "
              f"({s['n_FR-I']} FR-I, {s['n_FR-II']} FR-II), repeated over {len(s['fold_seeds'])} fold seeds: mean ± sd over "
              "the seeds (lowest to highest seed), binary F1 for the linear probes (FR-II positive), macro F1 for KNN.")
    after = (f"The comparators are the published image probe on frozen SigLIP 2 features, {c['published_image_probe_frozen']:.2f} "
             "(the paper's Table 1, Frozen), and the corrected text probe, the same probe on SigLIP 2's text features (the "
             f"paper's \"text\" row, {c['published_text_probe_frozen_image_features']:.2f}, was an image probe), which needs the "
             "paper profile and is not measured yet. TF-IDF's linear probe on the curated captions, trained on about "
             f"{round(s['n'] * (s['folds'] - 1) / s['folds'])} captions per fold, lies "
             f"{c['published_image_probe_frozen'] - tfidf['mean']:.2f} below the published image probe (mean over the fold "
             f"seeds; its spread over fold seeds is {tfidf['sd']:.2f} sd, and the probe's initialisation alone, folds fixed, "
             f"moves it by {init['sd']:.3f} sd): the class is largely in the words. The curated − control rows are spreads "
             "over fold seeds, not tests.")  # fmt: skip
    return before, after


def _label(name: str) -> str:
    return ATTRIBUTES[name].label if name in ATTRIBUTES else name


def edited_sentence(ed: Mapping) -> str:
    """The hand-edited captions against the others, with the significance of each difference."""
    tests = {k: v for k, v in ed.items() if isinstance(v, dict)}
    c = tests["contradiction"]
    raw = [k for k, v in tests.items() if v["fisher_p"] < 0.05]
    listed = "; ".join(f"{_label(k)}: {100 * tests[k]['edited']:.0f} % against {100 * tests[k]['unedited']:.0f} %, "
                       f"p = {tests[k]['fisher_p']:.2f}, Holm-adjusted {tests[k]['fisher_p_holm']:.2f}" for k in raw)  # fmt: skip
    best = min(v["fisher_p_holm"] for v in tests.values())
    return (f"The {ed['n_edited']} hand-edited captions against the {ed['n_unedited']} others: contradictions "
            f"{100 * c['edited']:.1f} % against {100 * c['unedited']:.1f} % (Fisher's exact p = {c['fisher_p']:.2f}, not "
            f"significant). Of the {len(tests)} comparisons (attributes and contradictions), "
            + (f"{len(raw)} reach{'es' if len(raw) == 1 else ''} a raw p below 0.05 ({listed})" if raw else
               "none reaches a raw p below 0.05")
            + (f" and none survives Holm's adjustment (smallest adjusted p = {best:.2f})" if best >= 0.05 else
               f"; after Holm's adjustment the smallest p is {best:.2f}")
            + ": the edits are not shown to change what the captions state." * (best >= 0.05))  # fmt: skip


def audit_sentence(data: Mapping) -> str:
    """The audit's figures: positions, hot spots, the FR-I attributes, contradictions, the hand edits."""
    cur, con = data["audit"]["curated"], data["audit"]["control"]
    a, b = cur["attributes"], con["attributes"]
    return (f"On the {cur['n']} published test captions (shares with 95 % bootstrap intervals over the captions), the curated "
            f"captions state positions in {_percent(a['position']['share'])} of cases (control "
            f"{_percent(b['position']['share'])}) and hot spots in {_percent(a['hotspots']['share'])}; lobes (FR-II odds ratio "
            f"{interval_text(a['lobes']['odds_ratio_FR-II'])}) and bent or tailed shapes "
            f"({interval_text(a['bent_tailed']['odds_ratio_FR-II'])}) go with FR-I. "
            f"{_percent(cur['contradiction']['all'])} of the curated captions contradict their label (control "
            f"{_percent(con['contradiction']['all'])}). " + edited_sentence(data["audit"]["edited"]))  # fmt: skip


def source_line(data: Mapping) -> str:
    return (f"Measured by `make controls-published` into `paper/measurements/controls_published.json` "
            f"(commit {data['stamp']['commit'][:7]}); this paragraph is generated from it.")


def markdown_block(data: Mapping | None = None) -> str:
    """The README's and ``paper/controls_text.md``'s paragraph on the published captions."""
    data = load() if data is None else data
    if data is None:
        return "*No published-caption measurement yet: run `make controls-published`.*"
    before, after = baseline_sentences(data)
    head = "| encoder | captions | " + " | ".join(PROBE_LABELS.values()) + " |\n| --- | --- |" + " --- |" * len(PROBE_LABELS)
    table = "\n".join("| " + " | ".join(r) + " |" for r in baseline_rows(data))
    return (f"*Text-only baselines on the published captions.* {before}\n\n{head}\n{table}\n\n{after}\n\n"
            f"*Caption audit of the published captions.* {audit_sentence(data)}\n\n{source_line(data)}")


def latex_block(data: Mapping | None = None) -> str:
    """The same paragraphs for the report (``generated/controls_published.tex``)."""
    from .deviation_registry import _tex

    data = load() if data is None else data
    if data is None:
        return "\\emph{No published-caption measurement yet: run \\texttt{make controls-published}.}\n"
    before, after = baseline_sentences(data)
    rows = [" & ".join(_tex(x) for x in r) + r" \\" for r in baseline_rows(data)]
    table = ["\\begin{center}\\scriptsize", "\\begin{tabular}{llccc}", "\\toprule",
             "encoder & captions & " + " & ".join(PROBE_LABELS.values()) + r" \\", "\\midrule", *rows,
             "\\bottomrule", "\\end{tabular}", "\\end{center}"]  # fmt: skip
    prose = [f"\\paragraph{{Text-only baselines on the published captions.}} {_tex(before)}", *table, _tex(after), "",
             f"\\paragraph{{Caption audit of the published captions.}} {_tex(audit_sentence(data))}", "",
             _tex(source_line(data).replace("`", ""))]  # fmt: skip
    return "\n".join(prose) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.study.published_controls", description=__doc__.splitlines()[0])
    parser.add_argument("--captions-dir", default=None, help="folder with the published caption CSVs (default: the usual places)")
    parser.add_argument("--seeds", type=int, default=20, help="fold seeds 0..N-1 (at least 20 for the committed file)")
    parser.add_argument("--out", default=str(PATH))
    args = parser.parse_args(argv)
    data = measure([args.captions_dir] if args.captions_dir else [], seeds=tuple(range(args.seeds)))
    path = write(data, Path(args.out))
    print(f"{data['summary']}\n-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
