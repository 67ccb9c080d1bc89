"""The controls (issue 11) and their table beside Table 1.

Each control notebook writes its rows to ``results/<profile>/controls/<name>.csv``
(:func:`write_control`): at least ``evaluation.ROW_COLUMNS`` (model, tag, captions,
metric, modality, value, low, high, n, B), plus columns of its own (``transform``,
``encoder``, ``seed``, ...). :func:`write_controls_table` reads every CSV there and writes

* ``controls.csv``: all rows stacked, with a ``control`` column (the long format, as
  ``metrics.csv`` is for Table 1);
* ``controls.md`` / ``controls.tex``: the second table, one group per control, each
  group with its own few columns, every cell ``value [low, high]``, a short note per
  control below.

A group (:class:`Group`) picks and arranges its rows from one CSV (:data:`GROUPS`); a
CSV with no group of its own is shown by :func:`headline_cells` (its rows keyed by
tag and caption set, the Table 1 metrics it has as columns). Missing CSVs are left out,
so the table can be written after any control notebook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..provenance import stamp_line, write_stamp
from .bundles import parse_tag
from .evaluation import ROW_COLUMNS
from .layout import folder, results_dir
from .tables import _tex_escape


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile

Cells = pd.DataFrame  # columns: row, column, value, low, high[, sd, k] (one row per table cell)
CELL_COLUMNS = ["row", "column", "value", "low", "high"]
# A cell with ``sd`` and ``k`` is a spread over k seeds ("0.91 ± 0.02 sd, 5 seeds"), printed
# differently from an interval ("0.91 [0.88, 0.94]") so that the two are never confused.


def controls_dir(results: Path) -> Path:
    """``results/controls`` (``results``: a profile's results folder): one CSV per control."""
    return folder(results) / "controls"


def write_control(frame: pd.DataFrame, profile: Profile, name: str, **stamp) -> Path:
    """``results/<profile>/controls/<name>.csv``, with
    a stamp beside it (``stamp``: extra fields, e.g. ``notebook=``). ``frame`` must have
    ``ROW_COLUMNS``; other columns are kept after them."""
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"control {name!r} lacks the columns {missing}")
    path = controls_dir(results_dir(profile)) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[ROW_COLUMNS + [c for c in frame.columns if c not in ROW_COLUMNS]].to_csv(path, index=False, float_format="%.6f")
    write_stamp(path, profile=profile, rows=len(frame), **stamp)
    return path


def read_controls(results: Path) -> dict[str, pd.DataFrame]:
    """``{name: rows}`` for every ``controls/<name>.csv`` under ``results`` (sorted by name)."""
    where = controls_dir(results)
    return {p.stem: pd.read_csv(p, keep_default_na=True) for p in sorted(where.glob("*.csv"))} if where.is_dir() else {}


# ---------------------------------------------------------------------- the groups


def _cells(frame: pd.DataFrame, row: Callable[[pd.Series], str], column: Callable[[pd.Series], str],
           extra: Sequence[str] = ()) -> Cells:  # fmt: skip
    if frame.empty:
        return pd.DataFrame(columns=CELL_COLUMNS + list(extra))
    out = pd.DataFrame({"row": frame.apply(row, axis=1), "column": frame.apply(column, axis=1),
                        "value": frame["value"], "low": frame["low"], "high": frame["high"],
                        **{c: frame[c] for c in extra}})  # fmt: skip
    return out.drop_duplicates(["row", "column"], keep="first")


def _is(frame: pd.DataFrame, column: str, values) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame[column].isin(values if isinstance(values, (list, tuple, set)) else [values])


PROBE_COLUMNS = {"linear_probe_f1": "linear probe", "linear_probe_f1_sklearn": "sklearn probe", "knn_f1": "KNN"}
ENCODER_LABELS = {"tfidf": "TF-IDF", "minilm": "MiniLM"}


def text_baseline_cells(frame: pd.DataFrame, metrics: pd.DataFrame | None = None) -> Cells:
    """Rows per encoder and caption set (train -> test, the differences, then the
    cross-validation), columns the three probes; with ``metrics`` (metrics.csv) the frozen
    SigLIP text features' probes per caption set first, for reference."""
    parts = []
    if metrics is not None and len(metrics):
        ref = metrics[(metrics["model"] == "frozen") & (metrics["modality"] == "text") & _is(metrics, "metric", list(PROBE_COLUMNS))
                      & _is(metrics, "captions", list(frame["captions"].unique()))]  # fmt: skip
        parts.append(_cells(ref, lambda r: f"SigLIP frozen text (Table 1), {r['captions'].replace('-', ' − ')}",
                            lambda r: PROBE_COLUMNS[r["metric"]]))
    rows = frame[_is(frame, "metric", list(PROBE_COLUMNS))].copy()
    evaluation = rows["evaluation"] if "evaluation" in rows else pd.Series("train-test", index=rows.index)
    rows["_order"] = (evaluation != "train-test").astype(int) * 2 + rows["captions"].str.contains("-").astype(int)
    rows = rows.sort_values(["_order"], kind="stable")

    def label(r):
        name = ENCODER_LABELS.get(r["model"], r["model"])
        where = "" if r.get("evaluation", "train-test") == "train-test" else f" ({r.get('source', '')} {r.get('split', '')}, {r['evaluation']})"
        return f"{name}, {r['captions'].replace('-', ' − ')}{where}"

    parts.append(_cells(rows, label, lambda r: PROBE_COLUMNS[r["metric"]]))
    return pd.concat(parts, ignore_index=True)


AUDIT_COLUMNS = {("contradiction", ""): "contradicting the label", ("truncated", ""): "cut at the token limit",
                 ("odds_ratio", "hotspots"): "OR hotspots (FR-II)", ("odds_ratio", "core_brightened"): "OR core-brightened (FR-II)"}  # fmt: skip


def audit_cells(frame: pd.DataFrame) -> Cells:
    """Rows per caption set (and its edited / unedited captions where flagged), columns the
    contradiction rate, the share cut by the token limit and two attributes' FR-II odds ratios."""
    f = frame.copy()
    f["attribute"] = f["attribute"].fillna("") if "attribute" in f else ""
    f["group"] = f["group"].fillna("") if "group" in f else "all"
    keep = [(f["metric"] == m) & (f["attribute"] == a) for m, a in AUDIT_COLUMNS]
    f = f[np.logical_or.reduce(keep) & f["group"].isin(["all", "FR-II vs FR-I", "edited", "unedited"])]

    def label(r):
        where = f" ({r['source']} {r['split']})" if str(r.get("source", "")) not in ("", "nan") else ""
        group = f", {r['group']}" if r["group"] in ("edited", "unedited") else ""
        return f"{r['captions']}{where}{group}"

    return _cells(f, label, lambda r: AUDIT_COLUMNS[r["metric"], r["attribute"]])


ROTATION_COLUMNS = {("recall@1", "identity"): "Recall@1 upright", ("recall@1", "rotated-identity"): "Δ Recall@1",
                    ("class_recall@1", "rotated-identity"): "Δ class R@1", ("linear_probe_f1", "rotated-identity"): "Δ probe F1"}  # fmt: skip


def rotation_cells(frame: pd.DataFrame) -> Cells:
    """Rows per model and caption set; columns Recall@1 on the upright images and the change
    (mean of the 7 other transforms − identity) of Recall@1, class-level Recall@1, probe F1."""
    f = frame[[(m, t) in ROTATION_COLUMNS for m, t in zip(frame["metric"], frame["transform"])]]
    return _cells(f, lambda r: f"{r['tag']}, {r['captions']}", lambda r: ROTATION_COLUMNS[r["metric"], r["transform"]])


TTA_COLUMNS = {("linear_probe_f1", "none"): "probe F1", ("linear_probe_f1", "d4"): "probe F1, D4 mean",
               ("knn_f1", "none"): "KNN F1", ("knn_f1", "d4"): "KNN F1, D4 mean"}  # fmt: skip


def tta_cells(frame: pd.DataFrame) -> Cells:
    """Rows per model: image probe and KNN F1 without and with test-time D4 averaging, then
    the paired difference (row ``<tag>, D4 − none``)."""
    f = frame[_is(frame, "tta", ["none", "d4", "d4-none"]) & _is(frame, "modality", "image")
              & _is(frame, "metric", ["linear_probe_f1", "knn_f1"])]  # fmt: skip
    plain = f[f["tta"] != "d4-none"]
    diff = f[f["tta"] == "d4-none"]
    return pd.concat([
        _cells(plain, lambda r: f"{r['tag']}", lambda r: TTA_COLUMNS[r["metric"], r["tta"]]),
        _cells(diff, lambda r: f"{r['tag']}, D4 − none", lambda r: TTA_COLUMNS[r["metric"], "none"]),
    ], ignore_index=True)  # fmt: skip


HEADLINE = {("recall@1", "image-text"): "Recall@1", ("class_recall@1", "image-text"): "class R@1",
            ("linear_probe_f1", "image"): "probe F1, images", ("knn_f1", "image"): "KNN F1, images",
            ("linear_probe_f1", "text"): "probe F1, text"}  # fmt: skip
MAX_COLUMNS = 4


def headline_cells(frame: pd.DataFrame) -> Cells:
    """Any control's rows: one table row per tag and caption set (and any column of its own
    that varies, e.g. ``seed``), the Table 1 metrics present as columns (at most
    :data:`MAX_COLUMNS`; without any, its first metric/modality pairs)."""
    pairs = list(dict.fromkeys(zip(frame["metric"], frame["modality"])))
    chosen = [p for p in HEADLINE if p in pairs][:MAX_COLUMNS] or pairs[:MAX_COLUMNS]
    names = {p: HEADLINE.get(p, f"{p[0]} ({p[1]})") for p in chosen}
    own = [c for c in frame.columns if c not in ROW_COLUMNS and frame[c].nunique(dropna=True) > 1]
    f = frame[[(m, d) in names for m, d in zip(frame["metric"], frame["modality"])]]

    def label(r):
        extra = "".join(f", {c} {r[c]}" for c in own if not pd.isna(r[c]))
        return f"{r['tag']}, {r['captions']}{extra}"

    return _cells(f, label, lambda r: names[r["metric"], r["modality"]])


VARIANT_LABELS = {"paired": "true pairs", "withinclass": "shuffled within class", "across": "shuffled across classes",
                  "paired-minus-withinclass": "true − within class", "paired-minus-across": "true − across"}  # fmt: skip
SCOPE_LABELS = {"frozen": "Frozen", "vision": "Vision LoRA", "text": "Text LoRA", "full": "Full LoRA"}


def _text(value) -> str:
    return "" if pd.isna(value) else str(value)


def _run_label(r) -> str:
    return f"{SCOPE_LABELS.get(r['model'], r['model'])}, {_text(r['captions']).replace('-', ' − ')}"


def shuffled_training_cells(frame: pd.DataFrame) -> Cells:
    """The runs trained on shuffled captions beside the run on the true pairs they shuffle
    (each row with the epochs it trained: the same for a run and its controls) and the paired
    differences, all scored on the true test pairs; the chance levels."""
    f = frame.assign(variant=frame.get("variant", "paired"), evaluation=frame.get("evaluation", "paired"))
    f = f.assign(variant=f["variant"].fillna(""), evaluation=f["evaluation"].fillna(""))
    shuffled = [parse_tag(str(t)) for t in f.loc[~f["variant"].isin(["paired", ""]), "tag"]]
    bases = {str(replace(t, variant=None)) for t in shuffled if t is not None}
    keep = (f["evaluation"] == "paired") & (f["tag"].isin(bases) | ~f["variant"].isin(["paired", ""]))
    keep |= f["model"] == "chance"
    order = list(VARIANT_LABELS)
    f = f[keep].assign(_chance=f["model"] == "chance", _captions=f["captions"].fillna(""),
                       _variant=f["variant"].map(lambda v: order.index(v) if v in order else len(order)))
    f = f.sort_values(["_chance", "_captions", "_variant"], kind="stable")
    cells = _cells(f, lambda r: "chance (no pairing)" if r["model"] == "chance" else
                   f"{_run_label(r)}: {VARIANT_LABELS.get(r['variant'], r['variant'])}{_epochs(r)}",
                   lambda r: HEADLINE.get((r["metric"], r["modality"]), ""))  # fmt: skip
    return cells[cells["column"].isin([HEADLINE[k] for k in SHUFFLE_COLUMNS])]


def _epochs(r) -> str:
    """`` (N epochs)`` for a trained run's row (not for a difference: both runs trained alike)."""
    epochs = r.get("epochs", np.nan)
    if pd.isna(epochs) or "-minus-" in str(r.get("variant", "")):
        return ""
    return f" ({int(epochs)} epoch{'s' if int(epochs) != 1 else ''})"


SHUFFLE_COLUMNS = (("recall@1", "image-text"), ("class_recall@1", "image-text"), ("linear_probe_f1", "image"), ("knn_f1", "image"))
PERMUTED_COLUMNS = {("recall@1", "paired"): "R@1, true pairs", ("recall@1", "withinclass"): "R@1, within class",
                    ("recall@1", "across"): "R@1, across", ("class_recall@1", "paired"): "class R@1, true pairs",
                    ("class_recall@1", "withinclass"): "class R@1, within class", ("class_recall@1", "across"): "class R@1, across"}  # fmt: skip


def shuffled_test_cells(frame: pd.DataFrame) -> Cells:
    """Each Table 1 model's retrieval on its true test pairs (Table 1's values) and with its
    test captions permuted within class and across classes, a caption keeping its own class
    (the models trained on true pairs only)."""
    if "evaluation" not in frame.columns:
        return pd.DataFrame(columns=CELL_COLUMNS)
    f = frame[(frame["modality"] == "image-text") & ((frame.get("variant", "paired") == "paired") | (frame["model"] == "chance"))]
    f = f[[(m, e) in PERMUTED_COLUMNS for m, e in zip(f["metric"], f["evaluation"])]]
    f = f[~((f["model"] == "chance") & (f["evaluation"] == "paired"))]
    f = f[f["evaluation"].isin(["withinclass", "across"]).groupby(f["tag"]).transform("any")]  # models with a permuted test
    return _cells(f, lambda r: "chance (no pairing)" if r["model"] == "chance" else f"{r['tag']}, {_text(r['captions'])}",
                  lambda r: PERMUTED_COLUMNS[r["metric"], r["evaluation"]])


SEED_COLUMNS = (("linear_probe_f1", "image"), ("linear_probe_f1", "text"), ("recall@1", "image-text"), ("class_recall@1", "image-text"))


def seed_cells(frame: pd.DataFrame) -> Cells:
    """Per model and caption set (differences included): the mean over the training seeds
    with the sample sd and the number of seeds (cells print "mean ± sd sd, k seeds", not an
    interval; ``low``/``high`` hold the lowest and highest seed's value)."""
    if "seed" not in frame.columns:
        return headline_cells(frame)
    f = frame[[(m, d) in SEED_COLUMNS for m, d in zip(frame["metric"], frame["modality"])]]
    f = f[f.get("variant", pd.Series("paired", index=f.index)).fillna("paired") == "paired"]
    if f.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    g = f.groupby(["model", "captions", "metric", "modality"], sort=False)
    stats = g["value"].agg(value="mean", low="min", high="max", sd=lambda v: v.std(ddof=1) if len(v) > 1 else np.nan).reset_index()
    stats["k"] = g["seed"].nunique().to_numpy()
    return _cells(stats, _run_label, lambda r: HEADLINE.get((r["metric"], r["modality"]), r["metric"]), extra=("sd", "k"))


@dataclass(frozen=True)
class Group:
    """One group of the controls table: ``title``; the CSV (``controls/<source>.csv``) it reads;
    ``cells`` arranges its rows (``(frame) -> cells``); ``note`` says what it measures."""

    key: str
    title: str
    source: str
    notebook: str
    note: str
    cells: Callable[[pd.DataFrame], Cells] = headline_cells


GROUPS: tuple[Group, ...] = (
    Group("text_baselines", "Text-only baselines: do the captions carry the class by themselves?", "text_baselines",
          "07_text_controls",
          "Table 1's probes on caption features from encoders that never saw an image (TF-IDF on the training "
          "captions; MiniLM sentence embeddings), trained on the training captions and scored on the test captions; "
          "linear probes binary F1 (FR-II positive), KNN macro F1. 'a − b': paired difference. CV rows: stratified "
          "k-fold cross-validation on the labelled published test captions, mean over folds, [lowest, highest fold].",
          text_baseline_cells),
    Group("audit", "Caption audit: what the captions state", "audit", "07_text_controls",
          "Share of captions stating an attribute that contradicts the label (FR-I: hot spots / edge-brightened; "
          "FR-II: brightest near the core / edge-darkened), share cut by the text tower's token limit, and FR-II odds "
          "ratios (Haldane-corrected, Wald 95 % interval) of two attributes. Edited: the authors' hand-edited test captions.",
          audit_cells),
    Group("rotations", "Rotations and flips of the test images", "rotations", "09_rotations",
          "Retrieval against the true captions and the image probe (trained on upright training images) under the "
          "8 rotations and flips of the test images; Δ: the mean over the 7 transforms other than identity minus "
          "identity, paired over the same resamples. Curated captions state positions (left, right, top), "
          "which a rotation breaks.",
          rotation_cells),
    Group("tta", "Test-time D4 averaging of the image features", "tta", "09_rotations",
          "Image probe and KNN F1 on the mean embedding of the 8 rotations and flips of each image (train and test) "
          "against the plain embedding, and their paired difference.",
          tta_cells),
    Group("shuffled", "Fine-tuning on shuffled image–caption pairs", "shuffled", "08_pairs_and_seeds",
          "Full LoRA trained on captions permuted within class (the class words kept, the instance lost) or across "
          "classes (both lost) for as many epochs as the run on the true pairs (in parentheses; same learning-rate "
          "schedule, no early stopping), scored on the true test pairs, beside that run and the paired differences "
          "(true − shuffled). Chance: Recall@k = k/n, class R@1 = the class balance.",
          shuffled_training_cells),
    Group("permuted", "Retrieval on permuted test pairs", "shuffled", "08_pairs_and_seeds",
          "Each model trained on the true pairs, scored on its true test pairs (Table 1's values) and with its test "
          "captions permuted within class or across classes (derangements: no true pair left). A retrieved caption is "
          "judged by its own class, so class-level Recall@1 cannot change under any permutation (the same captions "
          "are retrieved): equal columns check the metric, they are not a finding. Recall@1 falls to chance (1/n) "
          "or below.",
          shuffled_test_cells),
    Group("seeds", "Seed robustness", "seeds", "08_pairs_and_seeds",
          "The LoRA runs trained with each seed of the profile: the mean over the seeds ± the sample sd, k seeds "
          "(a spread over seeds, not an interval over test items); 'curated − control' rows pair the runs of each "
          "seed. The paired t-tests, raw and Holm-adjusted, are in controls/seeds.md.",
          seed_cells),
)


def controls_frame(controls: dict[str, pd.DataFrame], metrics: pd.DataFrame | None = None,
                   groups: Sequence[Group] = GROUPS) -> list[tuple[Group, Cells]]:
    """``[(group, cells)]`` for the groups whose CSV is present, in :data:`GROUPS` order, then a
    default group for every CSV without one."""
    out = []
    for g in groups:
        if g.source in controls and len(controls[g.source]):
            cells = text_baseline_cells(controls[g.source], metrics) if g.cells is text_baseline_cells else g.cells(controls[g.source])
            if len(cells):
                out.append((g, cells))
    known = {g.source for g in groups}
    for name, frame in controls.items():
        if name not in known and len(frame):
            out.append((Group(name, name.replace("_", " ").capitalize(), name, "", f"Rows of controls/{name}.csv."), headline_cells(frame)))
    return out


# ------------------------------------------------------------------------ rendering


def _signed_cell(row: str, column: str) -> bool:
    """Differences print with a sign: columns named Δ..., rows named '... − ...'."""
    return column.startswith("Δ") or " − " in row


def format_cell(value: float, low: float, high: float, signed: bool = False, sd: float = np.nan, k: float = np.nan) -> str:
    """``value [low, high]`` at two decimals, or three significant digits when any of them
    reaches 100 (``–`` when missing; no interval when there is none); a spread over seeds
    (``k`` given) as ``value ± sd sd, k seeds``."""
    if pd.isna(value):
        return "–"
    if not pd.isna(k):
        fmt = "{:+.2f}" if signed else "{:.2f}"
        spread = "no spread" if pd.isna(sd) else f"± {sd:.2f} sd"
        return f"{fmt.format(value)} {spread}, {int(k)} seed{'s' if int(k) != 1 else ''}"
    wide = max(abs(x) for x in (value, low, high) if not pd.isna(x)) >= 100  # e.g. an odds ratio with an empty cell
    fmt = ("{:+.3g}" if signed else "{:.3g}") if wide else ("{:+.2f}" if signed else "{:.2f}")
    text = fmt.format(value)
    if not (pd.isna(low) or pd.isna(high)):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text


def group_table(group: Group, cells: Cells) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """``(column names, [(row label, formatted cells)])`` of one group: rows in first-seen
    order, columns in the order the groups define them (others after, as first seen)."""
    known = [*PROBE_COLUMNS.values(), *AUDIT_COLUMNS.values(), *ROTATION_COLUMNS.values(), *TTA_COLUMNS.values(),
             *PERMUTED_COLUMNS.values(), *HEADLINE.values()]
    columns = sorted(dict.fromkeys(cells["column"]), key=lambda c: known.index(c) if c in known else len(known))
    by = {(r.row, r.column): r for r in cells.itertuples(index=False)}
    rows = []
    for row in dict.fromkeys(cells["row"]):
        out = []
        for column in columns:
            r = by.get((row, column))
            out.append("–" if r is None else format_cell(r.value, r.low, r.high, _signed_cell(row, column),
                                                         getattr(r, "sd", np.nan), getattr(r, "k", np.nan)))  # fmt: skip
        rows.append((row, out))
    return columns, rows


def _notes(parts: list[tuple[Group, Cells]], B: int | None) -> list[str]:
    notes = [f"{g.title}: {g.note}" + (f" (notebooks/{g.notebook}.ipynb)" if g.notebook else "") for g, _ in parts]
    notes.append(f"Cells: value [95 % percentile bootstrap interval{f', {B} resamples' if B else ''} of the test items or "
                 "captions], unless a note says otherwise; 'mean ± sd sd, k seeds': a spread over training seeds, not an "
                 "interval; '–': not computed.")
    return notes


def render_markdown(parts: list[tuple[Group, Cells]], *, title: str = "", B: int | None = None) -> str:
    """The controls table in Markdown: per group a bold header row with its own columns."""
    lines = [f"**{title}**", ""] if title else []
    if not parts:
        return "\n".join(lines + ["No control has written its rows yet (results/<profile>/controls/ is empty).", ""])
    width = max(len(group_table(g, c)[0]) for g, c in parts)
    lines += ["| control | " + " | ".join([""] * width) + " |", "| --- |" + " --- |" * width]
    for g, cells in parts:
        columns, rows = group_table(g, cells)
        lines.append(f"| **{g.title}** | " + " | ".join([f"*{c}*" for c in columns] + [""] * (width - len(columns))) + " |")
        for row, values in rows:
            lines.append(f"| {row} | " + " | ".join(values + [""] * (width - len(values))) + " |")
    lines += [""] + [f"- {n}" for n in _notes(parts, B)]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    return _tex_escape(s)  # Table 1's escaping: Δ, −, – and the LaTeX specials


def render_latex(parts: list[tuple[Group, Cells]], *, caption: str = "", label: str = "tab:controls", B: int | None = None) -> str:
    """The controls table as a LaTeX ``table`` (booktabs, small type), notes below."""
    if not parts:
        return "\\emph{No control has written its rows yet.}\n"
    width = max(len(group_table(g, c)[0]) for g, c in parts)
    out = [r"\begin{table}[H]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}"]
    if caption:
        out += [r"\caption{" + _tex(caption) + "}", r"\label{" + label + "}"]
    out += [r"\begin{tabular}{p{5.2cm}" + "c" * width + "}", r"\toprule"]
    for k, (g, cells) in enumerate(parts):
        columns, rows = group_table(g, cells)
        if k:
            out.append(r"\midrule")
        head = [r"\textbf{" + _tex(g.title) + "}"] + [r"\emph{" + _tex(c) + "}" for c in columns] + [""] * (width - len(columns))
        out += [" & ".join(head) + r" \\", r"\cmidrule(l){2-" + str(width + 1) + "}"]
        for row, values in rows:
            cells_tex = [_tex(v) for v in values] + [""] * (width - len(values))
            out.append(r"\raggedright " + _tex(row) + " & " + " & ".join(cells_tex) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip",
            r"\begin{minipage}{0.97\linewidth}\footnotesize " + r" \par ".join(_tex(n) for n in _notes(parts, B)) + r"\end{minipage}",
            r"\end{table}"]  # fmt: skip
    return "\n".join(out) + "\n"


def _bootstrap_of(controls: dict[str, pd.DataFrame]) -> int | None:
    values = {int(b) for f in controls.values() if "B" in f for b in f["B"].dropna() if int(b) > 0}
    return values.pop() if len(values) == 1 else None


def merge_into_metrics(metrics: pd.DataFrame, stacked: pd.DataFrame, path: Path, profile: Profile) -> Path:
    """``metrics.csv`` with the control rows appended: Table 1's rows keep ``control`` empty;
    a control row names its control, and its extra columns (seed, transform, encoder...) are
    folded into ``detail`` as ``key=value; ...``. Rows of an earlier merge are replaced."""
    table1 = metrics[metrics["control"].isna()] if "control" in metrics else metrics
    extra = [c for c in stacked.columns if c not in ROW_COLUMNS and c != "control"]
    rows = stacked[["control", *ROW_COLUMNS]].copy()
    rows["detail"] = [
        "; ".join(f"{c}={v}" for c, v in zip(extra, values) if not pd.isna(v)) for values in stacked[extra].itertuples(index=False)
    ] if extra else ""
    merged = pd.concat([table1[ROW_COLUMNS].assign(control=None, detail=None), rows[[*ROW_COLUMNS, "control", "detail"]]],
                       ignore_index=True)  # fmt: skip
    merged.to_csv(path, index=False, float_format="%.6f")
    write_stamp(path, profile=profile, rows=len(merged), controls=sorted(stacked["control"].unique()) if len(stacked) else [])
    return path


def write_controls_table(profile: Profile, *, folder: Path | None = None) -> dict[str, Path]:
    """Write ``controls.csv``, ``controls.md`` and ``controls.tex`` (with stamps), and the control rows into ``metrics.csv``, under
    ``results/<profile>/`` from every ``controls/*.csv`` present (none present: the table
    says so). Table 1's frozen text probes come from ``metrics.csv`` when it exists."""
    results = results_dir(profile)
    folder = Path(folder) if folder else results
    folder.mkdir(parents=True, exist_ok=True)
    controls = read_controls(results)
    metrics_path = results / "metrics.csv"
    metrics = pd.read_csv(metrics_path) if metrics_path.is_file() else None
    if metrics is not None and "control" in metrics:
        metrics = metrics[metrics["control"].isna()]  # Table 1's rows, without an earlier merge's
    parts = controls_frame(controls, metrics)
    B = _bootstrap_of(controls)
    line = stamp_line(profile)
    title = f"Controls: do the captions carry the morphology? (profile {profile.name})"
    stacked = pd.concat([f.assign(control=name) for name, f in controls.items()], ignore_index=True) if controls else pd.DataFrame(columns=[*ROW_COLUMNS, "control"])
    stacked = stacked[["control", *ROW_COLUMNS] + [c for c in stacked.columns if c not in ROW_COLUMNS and c != "control"]]
    written = {
        "controls.md": f"<!-- {line} -->\n\n" + render_markdown(parts, title=title, B=B),
        "controls.tex": f"% {line}\n" + render_latex(parts, caption=title, B=B),
    }
    out = {}
    path = folder / "controls.csv"
    stacked.to_csv(path, index=False, float_format="%.6f")
    write_stamp(path, profile=profile, rows=len(stacked), controls=sorted(controls))
    out["controls.csv"] = path
    if metrics is not None:
        out["metrics.csv"] = merge_into_metrics(metrics, stacked, metrics_path, profile)
    for name, text in written.items():
        path = folder / name
        path.write_text(text)
        write_stamp(path, profile=profile, controls=sorted(controls))
        out[name] = path
    return out
