"""Table 1: every metric of every available model, rendered beside the published values.

``collect_metrics(results)`` evaluates the embedding bundles under
``results/<profile>/embeddings`` (``frozen`` with each caption set; ``<scope>-<captions>``
with the captions it was trained on, as the study did) into a long frame, adds paired
differences ``<captions>-control`` (same test items, same bootstrap resamples, so the
difference gets its own interval), and ``write_tables`` renders:

* ``metrics.csv``: model, tag, captions, metric, modality, value, low, high, n, B (the control
  notebooks later append their rows, with ``control`` and ``detail`` columns);
* ``table1.md`` / ``table1.tex``: the study's rows (REFERENCE §5) by Frozen / Vision /
  Text / Full, the curated value with (curated − control) in parentheses, the best per
  row in bold, and under each value its 95 % interval and the difference's interval;
* ``comparison.md`` / ``comparison.tex``: ours beside the published values, with the
  differences and whether the published value lies inside our interval.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics import difference_row
from ..provenance import stamp_line, write_stamp
from .bundles import available_bundles, caption_sets, load_bundle, parse_tag, tag
from .evaluation import AUTHORS_LR_METRIC, ROW_COLUMNS, evaluate_bundle
from .layout import folder, results_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

COLUMNS = {"frozen": "Frozen", "vision": "Vision", "text": "Text", "full": "Full"}
BASELINE = "control"

# The study's rows: label -> (metric, modality) in evaluation.evaluate_bundle's rows.
TABLE1_ROWS = {
    "Linear probe F1, images": ("linear_probe_f1", "image"),
    "Linear probe F1, text": ("linear_probe_f1", "text"),
    "Linear probe F1, concatenated": ("linear_probe_f1", "concat"),
    "Mean image-text cosine similarity": ("mean_cosine", "image-text"),
    "Recall@1": ("recall@1", "image-text"),
    "Top-5 Recall": ("recall@5", "image-text"),
    "Class-level Recall@1": ("class_recall@1", "image-text"),
    "KNN-classifier F1, images": ("knn_f1", "image"),
    "KNN-classifier F1, text": ("knn_f1", "text"),
    "KNN-classifier F1, concatenated": ("knn_f1", "concat"),
}
# Rows the paper does not have: the authors' defective text probe and the standard probe.
DEFECT_ROW = "Linear probe F1, text as the authors computed it (image features)"
# The authors' logged Full-control command ran its probes at lr 1.0 (`--linear_lr 0001`):
# these rows give the Full column's difference against that control probe.
AUTHORS_PROBE_LR = 1.0
AUTHORS_LR_RUN = tag("full", "control")
AUTHORS_LR_ROWS = {
    "Linear probe F1, images; Δ against the control probe at lr 1.0 (as logged)": (AUTHORS_LR_METRIC, "image"),
    "Linear probe F1, text (image features); Δ against the control probe at lr 1.0 (as logged)": (AUTHORS_LR_METRIC, "text_authors"),
    "Linear probe F1, concatenated; Δ against the control probe at lr 1.0 (as logged)": (AUTHORS_LR_METRIC, "concat"),
}
# Zero-shot F1 of the test images with the survey tool's FR prompts (evaluation.zero_shot_rows):
# no captions enter, so the Frozen column's difference is 0 by construction.
ZERO_SHOT_ROW = "Zero-shot F1 (FR prompts), images"
EXTRA_ROWS = {
    DEFECT_ROW: ("linear_probe_f1", "text_authors"),
    **AUTHORS_LR_ROWS,
    "Linear probe F1 (sklearn), images": ("linear_probe_f1_sklearn", "image"),
    "Linear probe F1 (sklearn), text": ("linear_probe_f1_sklearn", "text"),
    "Linear probe F1 (sklearn), concatenated": ("linear_probe_f1_sklearn", "concat"),
    ZERO_SHOT_ROW: ("zero_shot_f1", "image"),
}

# REFERENCE §5, Table 1 of the paper: curated value and (curated - control); None where
# the paper printed no parentheses.
PUBLISHED = {
    "Linear probe F1, images": {"frozen": (0.90, -0.01), "vision": (0.93, 0.03), "text": (0.89, -0.01), "full": (0.93, 0.05)},
    "Linear probe F1, text": {"frozen": (0.90, 0.01), "vision": (0.92, 0.03), "text": (0.89, None), "full": (0.92, 0.03)},
    "Linear probe F1, concatenated": {"frozen": (0.88, 0.01), "vision": (0.88, -0.01), "text": (0.87, None), "full": (0.88, 0.02)},
    "Mean image-text cosine similarity": {"frozen": (0.14, None), "vision": (0.13, -0.01), "text": (0.13, -0.01), "full": (0.13, None)},
    "Recall@1": {"frozen": (0.01, -0.03), "vision": (0.03, -0.08), "text": (0.03, None), "full": (0.07, -0.01)},
    "Top-5 Recall": {"frozen": (0.06, -0.12), "vision": (0.13, -0.23), "text": (0.23, 0.04), "full": (0.23, -0.18)},
    "Class-level Recall@1": {"frozen": (0.53, -0.05), "vision": (0.66, -0.12), "text": (0.69, 0.11), "full": (0.77, None)},
    "KNN-classifier F1, images": {"frozen": (0.81, None), "vision": (0.86, None), "text": (0.81, None), "full": (0.88, 0.03)},
    "KNN-classifier F1, text": {"frozen": (0.69, -0.02), "vision": (0.69, -0.02), "text": (0.73, 0.02), "full": (0.70, -0.08)},
    "KNN-classifier F1, concatenated": {"frozen": (0.79, None), "vision": (0.83, -0.04), "text": (0.74, -0.05), "full": (0.81, -0.04)},
}

NOISE_NOTE = (
    "With n = {n} test items a difference of 0.01 is noise: one test item moves a one-way "
    "Recall@1 by 1/n = {step:.3f}, and the median 95 % interval in this table is ±{half:.2f}; "
    "read the intervals before the digits."
)
# ------------------------------------------------------------------------- metrics


def collect_metrics(
    results: Path,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    protocols: Sequence[str] = ("paper", "sklearn"),
    baseline: str = BASELINE,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate every available final bundle under ``results`` (a profile's results folder)
    into one long frame (``ROW_COLUMNS``).

    ``frozen`` is evaluated with every caption set it holds; ``<scope>-<c>`` with the
    captions ``c`` it was trained on. Rows with ``captions = "<c>-<baseline>"`` hold the
    paired difference (model trained and evaluated on ``c``) − (on ``baseline``), with a
    paired bootstrap interval (same test items, same resamples).
    """
    from tqdm.auto import tqdm

    bundles = available_bundles(results)
    jobs = []
    for name, path in bundles.items():
        info = parse_tag(name)
        bundle = load_bundle(path)
        sets = caption_sets(bundle) if info.scope == "frozen" else [info.captions]
        jobs += [(name, bundle, c) for c in sets]
    frames, names = [], {}
    for tag_, bundle, captions in tqdm(jobs, desc="evaluating", disable=not progress):
        names[tag_] = tuple(np.asarray(bundle.get("names_test", np.arange(len(bundle["labels_test"])))).tolist())
        lr = AUTHORS_PROBE_LR if tag_ == AUTHORS_LR_RUN else None
        frames.append(
            evaluate_bundle(bundle, captions, tag=tag_, bootstrap=bootstrap, seed=seed, protocols=protocols,
                            authors_probe_lr=lr, return_replicates=True)  # fmt: skip
        )
    if not frames:
        return pd.DataFrame(columns=ROW_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    diffs = paired_differences(df, names, baseline=baseline)
    logged = authors_lr_differences(df, names)
    out = pd.concat([f for f in (df, diffs, logged) if len(f)], ignore_index=True)
    return out.drop(columns="replicates")[ROW_COLUMNS]


def authors_lr_differences(df: pd.DataFrame, names: dict[str, tuple] | None = None) -> pd.DataFrame:
    """The Full column's curated − control difference as the authors' log ran it: the
    curated probe at lr 0.01 against the control probe at lr 1.0 (rows of metric
    ``AUTHORS_LR_METRIC``: the curated value, copied, and the paired difference)."""
    control = df[(df["tag"] == AUTHORS_LR_RUN) & (df["metric"] == AUTHORS_LR_METRIC)]
    if control.empty:
        return pd.DataFrame()
    curated = df[(df["tag"] == tag("full", "curated")) & (df["metric"] == "linear_probe_f1")]
    rows = []
    for _, c in control.iterrows():
        mine = curated[curated["modality"] == c["modality"]]
        if mine.empty or (names and names.get(mine.iloc[0]["tag"]) != names.get(c["tag"])):
            continue
        o = mine.iloc[0]
        rows.append({**o.to_dict(), "metric": AUTHORS_LR_METRIC})
        rows.append(difference_row(o, c, keep=True, model=o["model"], tag=f"{o['tag']}|{c['tag']}",
                                   captions=f"{o['captions']}-{BASELINE}", metric=AUTHORS_LR_METRIC))  # fmt: skip
    return pd.DataFrame(rows)


def paired_differences(df: pd.DataFrame, names: dict[str, tuple] | None = None, baseline: str = BASELINE) -> pd.DataFrame:
    """Rows ``<c>-<baseline>`` per model, metric and modality: value and paired-bootstrap
    interval of the difference. Pairs whose test items differ (``names``) are skipped."""
    rows = []
    base = df[df["captions"] == baseline]
    for _, b in base.iterrows():
        others = df[
            (df["model"] == b["model"])
            & (df["metric"] == b["metric"])
            & (df["modality"] == b["modality"])
            & (df["captions"] != baseline)
            & ~df["captions"].str.contains("-")
        ]
        for _, o in others.iterrows():
            if names and names.get(o["tag"]) != names.get(b["tag"]):
                continue  # different test items: no pairing
            tag_ = o["tag"] if o["tag"] == b["tag"] else f"{o['tag']}|{b['tag']}"
            rows.append(difference_row(o, b, keep=True, model=b["model"], tag=tag_, captions=f"{o['captions']}-{baseline}"))
    return pd.DataFrame(rows)


def read_metrics(results: Path, *, controls: bool = False) -> pd.DataFrame | None:
    """``results/metrics.csv`` (``results``: a profile's results folder; None when absent):
    Table 1's rows only, unless ``controls`` (then the control rows the control notebooks
    appended as well)."""
    path = folder(results) / "metrics.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    if not controls and "control" in df:
        df = df[df["control"].isna()].drop(columns=["control", "detail"], errors="ignore")
    return df


def write_metrics(df: pd.DataFrame, profile: Profile, path: Path | None = None) -> Path:
    """``results/<profile>/metrics.csv`` with a stamp beside it (the profile's settings,
    overrides included)."""
    path = Path(path) if path else results_dir(profile) / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    df[ROW_COLUMNS].to_csv(path, index=False, float_format="%.6f")
    write_stamp(path, profile=profile, rows=len(df))
    return path


# --------------------------------------------------------------------------- Table 1


def _lookup(df: pd.DataFrame, model: str, captions: str, metric: str, modality: str):
    hit = df[(df["model"] == model) & (df["captions"] == captions) & (df["metric"] == metric) & (df["modality"] == modality)]
    if len(hit) > 1:
        raise ValueError(f"{len(hit)} rows for {model}/{captions}/{metric}/{modality}: expected one")
    return None if hit.empty else hit.iloc[0]


def table1_frame(
    df: pd.DataFrame, captions: str = "curated", baseline: str = BASELINE, *, extra_rows: bool = True
) -> pd.DataFrame:
    """Table 1 as data: one row per (row, column) with value, low, high, diff, diff_low, diff_high, n, best."""
    rows_spec = {**TABLE1_ROWS, **(EXTRA_ROWS if extra_rows else {})}
    records = []
    for label, (metric, modality) in rows_spec.items():
        for model, column in COLUMNS.items():
            r = _lookup(df, model, captions, metric, modality)
            d = _lookup(df, model, f"{captions}-{baseline}", metric, modality)
            records.append(
                dict(
                    row=label,
                    column=column,
                    value=np.nan if r is None else r["value"],
                    low=np.nan if r is None else r["low"],
                    high=np.nan if r is None else r["high"],
                    diff=np.nan if d is None else d["value"],
                    diff_low=np.nan if d is None else d["low"],
                    diff_high=np.nan if d is None else d["high"],
                    n=np.nan if r is None else r["n"],
                    extra=label not in TABLE1_ROWS,
                )
            )
    t = pd.DataFrame(records)
    # Best per row at the printed precision: ties at two decimals are all bold.
    shown = t["value"].round(2)
    compared = shown.notna().groupby(t["row"]).transform("sum") >= 2  # a lone value is not "best"
    t["best"] = shown.eq(shown.groupby(t["row"]).transform("max")) & shown.notna() & compared
    return t


def _num(x: float) -> str:
    return "–" if pd.isna(x) else f"{x:.2f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}"


def _cells(t: pd.DataFrame, bold, line_break, delta="Δ") -> dict[tuple[str, str], str]:
    cells = {}
    for _, r in t.iterrows():
        if pd.isna(r["value"]):
            cells[r["row"], r["column"]] = "–"
            continue
        head = bold(_num(r["value"])) if r["best"] else _num(r["value"])
        if not pd.isna(r["diff"]):
            head += f" ({_signed(r['diff'])})"
        lines = [head]
        if not pd.isna(r["low"]):
            lines.append(f"[{_num(r['low'])}, {_num(r['high'])}]")
        if not pd.isna(r["diff_low"]):
            lines.append(f"{delta} [{_signed(r['diff_low'])}, {_signed(r['diff_high'])}]")
        cells[r["row"], r["column"]] = line_break(lines)
    return cells


def table_notes(t: pd.DataFrame, captions: str = "curated", baseline: str = BASELINE, *, B: int | None = None, note: str = "") -> str:
    """The caption under Table 1 (plain text)."""
    n = int(t["n"].dropna().max()) if t["n"].notna().any() else 104
    parts = [
        f"Values: {captions} captions; in parentheses {captions} − {baseline} (paired, same test items). "
        "Bold: best in row at two decimals. Below each value: its 95 % bootstrap percentile interval "
        f"({B or 'B'} resamples of the {n} test items) and Δ, the interval of the difference (paired bootstrap).",
        NOISE_NOTE.format(n=n, step=1.0 / n, half=float(np.nanmedian((t["high"] - t["low"]) / 2)) if t["low"].notna().any() else float("nan")),
        "Linear probe: the authors' protocol (one linear layer, full-batch Adam, lr 0.01, 100 steps, mean test F1 "
        "over the last 10, FR-II positive) on the raw features; the text probe is trained on text features. "
        "The authors' code trained its \"text\" probe on image features: the row marked as theirs reproduces that.",
        "Retrieval: ties count against the pair; Recall@k is the mean of image→text and text→image; its "
        "intervals resample queries and gallery together, re-rank within each resample and recentre the "
        "replicates on the value (at k = 1 raw replicates lean upwards: a resample can leave out the items "
        "that outrank a pair), so an interval need not be centred on its value. "
        "Rows marked 'as logged': the Full column's difference against the control probe at lr 1.0, "
        "as the authors' logged Full-control command ran it. '–': no bundle for that model.",
        "Zero-shot: each test image takes the class (FR-I or FR-II) of highest SigLIP probability against the "
        "ensembled FR prompts of the survey tool; no training data, no captions (Frozen Δ is 0 by construction).",
    ]
    if note:
        parts.append(note)
    return " ".join(parts)


def render_markdown(t: pd.DataFrame, *, notes: str = "", title: str = "") -> str:
    """Table 1 as a Markdown table (cells broken with ``<br>``), notes below."""
    cells = _cells(t, bold=lambda s: f"**{s}**", line_break="<br>".join)
    columns = list(dict.fromkeys(t["column"]))
    lines = [f"**{title}**", ""] if title else []
    lines += ["| metric | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for label in dict.fromkeys(t["row"]):
        lines.append(f"| {label} | " + " | ".join(cells[label, c] for c in columns) + " |")
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        s = s.replace(a, b)
    return s.replace("Δ", r"$\Delta$").replace("−", "$-$").replace("→", r"$\to$").replace("–", "--").replace("±", r"$\pm$")


def render_latex(t: pd.DataFrame, *, notes: str = "", caption: str = "", label: str = "tab:table1") -> str:
    """Table 1 as a LaTeX ``table`` (booktabs), interval lines in small type, notes below."""

    def stack(lines):
        head, rest = lines[0], lines[1:]
        if not rest:
            return head
        small = r"\\ ".join(r"{\scriptsize " + _tex_escape(x) + "}" for x in rest)
        return r"\begin{tabular}[t]{@{}c@{}}" + head + r"\\ " + small + r"\end{tabular}"

    cells = _cells(t, bold=lambda s: r"\textbf{" + s + "}", line_break=stack)
    columns = list(dict.fromkeys(t["column"]))
    out = [r"\begin{table}[H]", r"\centering", r"\small"]
    if caption:
        out.append(r"\caption{" + _tex_escape(caption) + "}")
        out.append(r"\label{" + label + "}")
    out += [r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule", "metric & " + " & ".join(columns) + r" \\", r"\midrule"]
    extra_started = False
    for label_, extra in dict(zip(t["row"], t["extra"])).items():
        if extra and not extra_started:
            out.append(r"\midrule")
            extra_started = True
        row_cells = ["--" if cells[label_, c] == "–" else cells[label_, c] for c in columns]
        out.append(r"\parbox[t]{4.2cm}{\raggedright " + _tex_escape(label_) + "} & " + " & ".join(row_cells) + r" \\[2pt]")
    out += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        out += [r"\par\smallskip", r"\begin{minipage}{0.95\linewidth}\footnotesize " + _tex_escape(notes) + r"\end{minipage}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------- comparison


def comparison_frame(df: pd.DataFrame, captions: str = "curated", baseline: str = BASELINE) -> pd.DataFrame:
    """Ours beside the published Table 1, one row per (row, model) with a published value.

    Columns: row, model, ours, low, high, published, ours_minus_published, inside (the
    published value lies in our 95 % interval), ours_diff, diff_low, diff_high,
    published_diff. The authors' defective text probe is compared with the published
    text row as well, and for the Full column the probes against the control probe at
    lr 1.0, as the authors' log ran it (:data:`AUTHORS_LR_ROWS`).
    """
    t = table1_frame(df, captions, baseline, extra_rows=True).set_index(["row", "column"])
    records = []
    published_of = dict(zip(AUTHORS_LR_ROWS, ("Linear probe F1, images", "Linear probe F1, text", "Linear probe F1, concatenated")))
    pairs = [(label, label) for label in PUBLISHED] + [(DEFECT_ROW, "Linear probe F1, text")] + list(published_of.items())
    for ours_label, pub_label in pairs:
        for model, column in COLUMNS.items():
            if ours_label in AUTHORS_LR_ROWS and model != "full":
                continue  # only the Full-control run was logged with lr 1.0
            pub, pub_diff = PUBLISHED[pub_label][model]
            r = t.loc[(ours_label, column)]
            records.append(
                dict(
                    row=ours_label,
                    model=column,
                    ours=r["value"],
                    low=r["low"],
                    high=r["high"],
                    published=pub,
                    ours_minus_published=r["value"] - pub,
                    inside=bool(r["low"] <= pub <= r["high"]) if not pd.isna(r["low"]) else None,
                    ours_diff=r["diff"],
                    diff_low=r["diff_low"],
                    diff_high=r["diff_high"],
                    published_diff=np.nan if pub_diff is None else pub_diff,
                )
            )
    return pd.DataFrame(records)


def _comparison_rows(c: pd.DataFrame) -> list[list[str]]:
    rows = []
    for _, r in c.iterrows():
        rows.append(
            [
                r["row"],
                r["model"],
                _num(r["ours"]),
                "–" if pd.isna(r["low"]) else f"[{_num(r['low'])}, {_num(r['high'])}]",
                _num(r["published"]),
                "–" if pd.isna(r["ours_minus_published"]) else _signed(r["ours_minus_published"]),
                "–" if r["inside"] is None else ("yes" if r["inside"] else "no"),
                "–" if pd.isna(r["ours_diff"]) else _signed(r["ours_diff"]),
                "–" if pd.isna(r["diff_low"]) else f"[{_signed(r['diff_low'])}, {_signed(r['diff_high'])}]",
                "–" if pd.isna(r["published_diff"]) else _signed(r["published_diff"]),
            ]
        )
    return rows


COMPARISON_HEADER = [
    "metric",
    "model",
    "ours",
    "95 % interval",
    "published",
    "ours − published",
    "published inside",
    "ours Δ",
    "Δ interval",
    "published Δ",
]


# Short headers keep the LaTeX table within the text width.
COMPARISON_HEADER_TEX = ["metric", "model", "ours", "95 % int.", "publ.", "ours − publ.", "inside", "ours Δ", "Δ int.", "publ. Δ"]


def comparison_markdown(c: pd.DataFrame, *, notes: str = "") -> str:
    lines = ["| " + " | ".join(COMPARISON_HEADER) + " |", "|" + " --- |" * len(COMPARISON_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _comparison_rows(c)]
    if notes:
        lines += ["", notes]
    return "\n".join(lines) + "\n"


def comparison_latex(c: pd.DataFrame, *, notes: str = "", caption: str = "") -> str:
    out = [r"\begin{table}[H]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}"]
    if caption:
        out += [r"\caption{" + _tex_escape(caption) + "}", r"\label{tab:comparison}"]
    out += [r"\begin{tabular}{llcccccccc}", r"\toprule", " & ".join(_tex_escape(h) for h in COMPARISON_HEADER_TEX) + r" \\", r"\midrule"]
    previous = None
    for r in _comparison_rows(c):
        label = r"\parbox[t]{3.3cm}{\raggedright " + _tex_escape(r[0]) + "}" if r[0] != previous else ""
        if previous is not None and r[0] != previous:
            out.append(r"\addlinespace")
        previous = r[0]
        out.append(" & ".join([label] + [_tex_escape(x) for x in r[1:]]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if notes:
        out += [r"\par\smallskip", r"\begin{minipage}{0.95\linewidth}\footnotesize " + _tex_escape(notes) + r"\end{minipage}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def comparison_notes(c: pd.DataFrame) -> str:
    n_in = int(sum(x is True for x in c["inside"]))
    n_known = int(sum(x is not None for x in c["inside"]))
    return (
        "Published: the paper's Table 1 (curated captions; Δ = curated − control, '–' where the paper printed none). "
        f"The published value lies inside our 95 % interval in {n_in} of {n_known} cells with a value. "
        "The row marked as the authors' text probe is their image-feature probe, compared with the published "
        "text row it produced."
    )


# -------------------------------------------------------------------------- writing


def write_tables(df: pd.DataFrame, profile: Profile, *, note: str = "", B: int | None = None, folder: Path | None = None) -> dict[str, Path]:
    """Write ``table1.{md,tex}`` and ``comparison.{md,tex}`` (with stamps) for ``profile``.

    Table 1 holds the curated table, and a catalog table when catalog rows exist.
    """
    name = profile.name
    folder = Path(folder) if folder else results_dir(profile)
    folder.mkdir(parents=True, exist_ok=True)
    line = stamp_line(profile)
    md, tex = [f"<!-- {line} -->", ""], [f"% {line}"]
    for captions in [c for c in ("curated", "catalog") if (df["captions"] == c).any()] or ["curated"]:
        t = table1_frame(df, captions)
        notes = table_notes(t, captions, B=B, note=note)
        title = f"Table 1 ({captions} captions), profile {name}"
        md += [render_markdown(t, notes=notes, title=title), ""]
        tex.append(render_latex(t, notes=notes, caption=title, label=f"tab:table1-{captions}"))
    c = comparison_frame(df)
    written = {
        "table1.md": "\n".join(md),
        "table1.tex": "\n".join(tex),
        "comparison.md": f"<!-- {line} -->\n\n" + comparison_markdown(c, notes=comparison_notes(c)),
        "comparison.tex": f"% {line}\n" + comparison_latex(c, notes=comparison_notes(c), caption=f"Ours beside the published Table 1, profile {name}"),
    }
    out = {}
    for name, text in written.items():
        path = folder / name
        path.write_text(text)
        write_stamp(path, profile=profile)
        out[name] = path
    return out
