"""Every known difference between the paper, the authors' code and radioalign, in one table.

``deviations()`` returns it as a DataFrame with the columns ``topic, paper, authors_code,
radioalign, effect``. The report's deviations section (``generated/deviations.tex``) and
the README's section are rendered from it (:func:`render_markdown`, :func:`render_latex`),
so nothing is written twice. ``effect`` says what the difference does to the numbers where
it has been measured, and where the measurement lives; "not measured" otherwise.

Sources: the paper (Lastufka, Drozdova & Voloshynovskiy 2025), the authors' repository
``elastufka/mirabest_captioned`` at ``ceb190b``, and ../shared/REFERENCE.md §3-§7.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

COLUMNS = ["topic", "paper", "authors_code", "radioalign", "effect"]
NOT_MEASURED = "not measured"

# Where measurements that fill the ``effect`` column are stored (committed, stamped).
MEASUREMENTS = Path(__file__).resolve().parents[3] / "paper" / "measurements"

_ROWS = [
    (
        "LoRA rank",
        "R = 8",
        "r = 4 (code default, every logged command; the paper's trainable fractions 0.17/0.16/0.33 % are r = 4)",
        "r = 4 (profile field lora_r)",
        "r = 4 reproduces the published trainable fractions (0.165/0.157/0.322 %, measured on the base architecture)",
    ),
    (
        "Pixel range",
        "not stated",
        "[0, 1] pixels: the processor's rescale and normalisation switched off",
        "'paper' preprocessing = [0, 1] (default); 'siglip' = the checkpoint's [-1, 1]",
        NOT_MEASURED,
    ),
    (
        "Text linear probe",
        "'Linear probe F1, text' row",
        "the 'text' probe is trained and tested on image features (their log: image and text F1 both 0.9170)",
        "the real text probe on text features; the authors' variant kept as its own row",
        "see Table 1: the two rows differ wherever text and image features differ",
    ),
    (
        "Feature precision",
        "not stated",
        "test features from get_image_features / get_text_features in float32, outside the fp16 Trainer",
        "float32 features in the paper profile on every device; bf16 only where a profile says so (cpu)",
        "bf16_vs_fp32",  # filled from paper/measurements/bf16_vs_fp32.json when present
    ),
    (
        "Validation order",
        "'~100 samples' held out",
        "random_split(729, [620, 109], seed 42); the Trainer evaluates the Subset in that random order",
        "the same indices in the same order (sorted order would put one class per batch: other negatives, another loss)",
        "changes the validation loss and so possibly the early-stopping epoch; not measured on the real checkpoint",
    ),
    (
        "Probe learning rate, Full-control",
        "not stated (0.01 elsewhere)",
        "logged control-full command has --linear_lr 0001, which argparse reads as 1.0",
        "lr 0.01 as in every other run, plus an extra row at lr 1.0 'as the authors' log ran it'",
        "see the extra Full-control row of Table 1",
    ),
    (
        "Attention mask in text inputs",
        "not stated",
        "training passes everything the processor returns to model(**inputs); evaluation passes input_ids only",
        "explicit settings: training and evaluation each take the authors' choice by default",
        NOT_MEASURED,
    ),
    (
        "Lower-casing",
        "not stated",
        "the checkpoint's processor keeps case (SigLIP-2 was trained on lower-cased text)",
        "case kept by default, as the authors; lowercase=True is one setting away",
        NOT_MEASURED,
    ),
    (
        "Model evaluated",
        "not stated",
        "the last model after early stopping (Trainer without load_best_model_at_end)",
        "the last model (restore_best=False); restore_best=True keeps the best",
        NOT_MEASURED,
    ),
    (
        "Uncertainty",
        "none reported",
        "none",
        "95 % percentile bootstrap over test items (B = 1000), paired across models; retrieval resamples "
        "queries and gallery together and re-ranks",
        "n = 104: the interval of an F1 near 0.9 is about ±0.06",
    ),
    (
        "LoRA learning rates",
        "2.5e-5",
        "2.5e-5 for curated vision/text and control vision; 5e-6 for control text and control full; "
        "the curated both-towers command is not in the log",
        "the logged rate per run, 2.5e-5 (the paper's) for curated full (Profile.learning_rate)",
        NOT_MEASURED,
    ),
    (
        "MiraBest version",
        "MiraBest (first version)",
        "MiraBest_full through inigoval/fixmatch's MBFRConfident",
        "MiraBest_full in the paper profile; MiraBest_F for tests and other work (different test membership)",
        "published captions align only with MiraBest_full; F-version names are refused",
    ),
    (
        "Caption model",
        "gemini-2.5-flash-preview-05-20",
        "same",
        "the authors' published captions by default; new captions record the modelVersion the API returns",
        "the preview model is retired: new Gemini captions cannot be byte-identical",
    ),
]


def _measured_effect(key: str) -> str:
    path = MEASUREMENTS / f"{key}.json"
    if not path.is_file():
        return f"{NOT_MEASURED} (run `python -m radioalign.study.precision`)"
    data = json.loads(path.read_text())
    return data.get("summary", NOT_MEASURED) + f" ({path.relative_to(MEASUREMENTS.parents[1])})"


def deviations() -> pd.DataFrame:
    """The deviation registry: one row per difference, columns ``topic, paper,
    authors_code, radioalign, effect``."""
    rows = []
    for topic, paper, code, ours, effect in _ROWS:
        if effect == "bf16_vs_fp32":
            effect = _measured_effect(effect)
        rows.append(dict(zip(COLUMNS, (topic, paper, code, ours, effect))))
    return pd.DataFrame(rows, columns=COLUMNS)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(table: pd.DataFrame | None = None) -> str:
    """The registry as a Markdown table (the README's section)."""
    table = deviations() if table is None else table
    header = "| topic | paper | authors' code | radioalign | effect |\n| --- | --- | --- | --- | --- |\n"
    return header + "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in table[COLUMNS].itertuples(index=False))


def _tex(text: str) -> str:
    out = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"),
                 ("~", r"\textasciitilde{}"), ("±", r"$\pm$"), ("≈", r"$\approx$"), ("–", "--"), ("−", "$-$")):  # fmt: skip
        out = out.replace(a, b)
    return out


def render_latex(table: pd.DataFrame | None = None) -> str:
    """The registry as a LaTeX description list (the report's deviations section)."""
    table = deviations() if table is None else table
    lines = [r"\begin{description}"]
    for row in table[COLUMNS].itertuples(index=False):
        lines.append(
            rf"  \item[{_tex(row.topic)}] \emph{{Paper:}} {_tex(row.paper)}. \emph{{Authors' code:}} {_tex(row.authors_code)}. "
            rf"\emph{{radioalign:}} {_tex(row.radioalign)}. \emph{{Effect:}} {_tex(row.effect)}."
        )
    lines.append(r"\end{description}")
    return "\n".join(lines) + "\n"
