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
        "training passes everything the processor returns to model(**inputs), the mask included; the validation "
        "loss (their prediction_step, which early stopping watches) and the test features pass pixel_values and "
        "input_ids only",
        "the same: training passes the mask (train_attention_mask=None: when the processor returns one); the "
        "validation loss and the evaluation embeddings use ids only (eval_attention_mask=False; True masks both)",
        "validation_mask",  # filled from paper/measurements/validation_mask_<profile>.json
    ),
    (
        "Ties in retrieval ranks",
        "not stated",
        "argmax / topk on the similarity matrix: a tie goes to the lowest index (argmax) or to topk's order, so "
        "a caption shared by several images can be retrieved by luck",
        "ties count against the pair: the pair's rank is the number of candidates scoring at least its score "
        "(within 1e-6); class-level Recall@1 is a hit only if every tied top item has the query's class",
        "ties",  # filled from paper/measurements/controls_published.json
    ),
    (
        "Linear-probe seeding",
        "not stated",
        "torch.nn.Linear drawn from torch's global generator, never seeded for the probe: after the Trainer's "
        "set_seed(42) and whatever training consumed (fine-tuning runs), or torch's start-up state (--evaluate); "
        "the 'text' probe is the next draw",
        "the layer torch.manual_seed(seed); nn.Linear(D, 2) draws (metrics.torch_linear_init), seed = the "
        "profile's (42), the authors' image-feature 'text' probe at seed + 1; each seed of the seed-robustness "
        "control reseeds every probe",
        "probe_init",  # filled from paper/measurements/controls_published.json
    ),
    (
        "Caption whitespace",
        "not stated",
        "pd.read_csv(file)['caption'] as stored: surrounding whitespace kept",
        "captions .str.strip()'ed when the published files are read (captions.published)",
        "strip",  # filled from paper/measurements/controls_published.json
    ),
    (
        "t-SNE settings",
        "not stated (Figures 4 and 5)",
        "not in the published code",
        "scikit-learn TSNE on L2-normalised embeddings: perplexity 30 (clipped to (n - 1)/3 for small sets), "
        "init 'pca', random_state = the profile's seed (42), 1000 iterations (plots.tsne_embed, notebook 06)",
        "the layout only: the neighbour-agreement tables beside Figures 4 and 5 are computed in the embedding "
        "space and do not depend on these settings",
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
        "queries and gallery together, re-ranks, and recentres the replicates on the point value (bias correction)",
        "n = 104: the interval of an F1 near 0.9 is about ±0.06; in a known-truth simulation the corrected Recall@1 "
        "intervals covered the truth 90 to 96.5 % of the time at nominal 95 % (the plain percentile interval: 75 to 91 %; "
        "metrics.retrieval, test_retrieval_interval_covers_the_truth)",
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


def _read(name: str) -> tuple[dict | None, str]:
    """A committed measurement and its path relative to the repository (None when absent)."""
    path = MEASUREMENTS / f"{name}.json"
    return (json.loads(path.read_text()) if path.is_file() else None), str(path.relative_to(MEASUREMENTS.parents[1]))


def _measured_effect(key: str) -> str:
    data, where = _read(key)
    if data is None:
        return f"{NOT_MEASURED} (run `python -m radioalign.study.precision`)"
    return data.get("summary", NOT_MEASURED) + f" ({where})"


def _mask_effect() -> str:
    smoke, where = _read("validation_mask_smoke")
    cpu, cpu_where = _read("validation_mask_cpu")
    head = (f"{smoke['summary']} ({where})" if smoke else
            f"{NOT_MEASURED} on smoke (run `python -m radioalign.study.validation_mask --profile smoke`)")  # fmt: skip
    tail = (f"{cpu['summary']} ({cpu_where})" if cpu else
            "cpu and paper profiles: not measured (they need the SigLIP 2 checkpoint and MiraBest_full, absent offline)")  # fmt: skip
    return f"{head}; {tail}"


def _published_effect(key: str) -> str:
    """The effects read off the published-caption measurement (``published_controls``)."""
    data, where = _read("controls_published")
    if data is None:
        return f"{NOT_MEASURED} (run `make controls-published`)"
    files = data["captions"].values()
    if key == "ties":
        shared = sum(f["verbatim_duplicates"] for f in files)
        return (f"exact ties need identical embeddings: {shared} of the {sum(f['n'] for f in files)} published captions "
                f"are shared verbatim within their file, so on them the rule changes nothing beyond float ties ({where})")
    if key == "strip":
        changed = {k: f["changed_by_strip"] for k, f in data["captions"].items() if f["changed_by_strip"]}
        listed = ", ".join(f"{n} of the {data['captions'][k]['n']} {k.replace('_', ' ')} captions" for k, n in changed.items())
        return (f"stripping changes {listed or 'no caption'} (trailing spaces; {where}); what SigLIP 2's tokenizer "
                "makes of them is not measured (the tokenizer is not available offline)")
    init, k = data["probe_init"]["curated"], len(data["settings"]["fold_seeds"])
    return (f"the initialisation alone moves the TF-IDF linear probe's {data['settings']['folds']}-fold CV F1 on the "
            f"published curated test captions by {init['sd']:.3f} sd over {k} seeds ({init['min']:.2f} to {init['max']:.2f}; "
            f"{where}); on SigLIP features not measured apart from the training seed")


_EFFECTS = {"bf16_vs_fp32": lambda: _measured_effect("bf16_vs_fp32"), "validation_mask": _mask_effect,
            "ties": lambda: _published_effect("ties"), "strip": lambda: _published_effect("strip"),
            "probe_init": lambda: _published_effect("probe_init")}  # fmt: skip


def deviations() -> pd.DataFrame:
    """The deviation registry: one row per difference, columns ``topic, paper,
    authors_code, radioalign, effect``."""
    rows = []
    for topic, paper, code, ours, effect in _ROWS:
        effect = _EFFECTS[effect]() if effect in _EFFECTS else effect
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
