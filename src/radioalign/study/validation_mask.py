"""What the validation loss's attention mask changes: ``python -m radioalign.study.validation_mask``.

The authors' training passed the text attention mask (``model(**inputs)``), their
validation loss did not (``prediction_step`` passed ``pixel_values`` and ``input_ids``);
``train.FinetuneConfig.eval_attention_mask`` (False by default) follows them. The
validation loss decides early stopping (and, with ``restore_best``, the weights kept), so
the two choices can end a run at another epoch. For every LoRA run of a profile (its scopes
x caption sets) this trains the run twice, validation loss without and with the mask, and
records per run the validation losses, the best epoch, the epochs run and Table 1's rows
of the final model. Both runs' test features are embedded alike (ids only, the study's
evaluation), so a Table 1 difference comes from the training length alone.

Written to ``paper/measurements/validation_mask_<profile>.json`` (the deviation registry's
row reads it). The profile's splits and captions must exist (notebook 01; for ``smoke``,
``make paper PROFILE=smoke`` or its first notebook).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..provenance import stamp
from .deviation_registry import MEASUREMENTS
from .tables import TABLE1_ROWS


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile


def table1_values(bundle, captions: str, profile: Profile) -> dict[str, float]:
    """Table 1's rows (label -> value) of one bundle, evaluated as notebook 04 does (paper probe)."""
    from .evaluation import evaluate_bundle

    rows = evaluate_bundle(bundle, captions, bootstrap=0, seed=profile.seed, protocols=("paper",))
    by = rows.set_index(["metric", "modality"])["value"]
    return {label: float(by.get(key, np.nan)) for label, key in TABLE1_ROWS.items()}


def one_run(profile: Profile, scope: str, captions: str, mask: bool, data, model, processor, folder: Path) -> dict:
    """Train one run with the validation loss ``mask``ed or not; its history and Table 1 rows."""
    from ..train import finetune
    from .inputs import embed_study
    from .profiles import finetune_config

    train, test, texts = data
    config = replace(finetune_config(profile, scope, captions), eval_attention_mask=mask, eval_epochs=())
    result = finetune(model, processor, train.images, texts[captions]["train"], config=config, output_dir=folder,
                      stamp_profile=profile, progress=False)  # fmt: skip
    bundle = embed_study(result.model, processor, train, test, {captions: texts[captions]},
                         preprocessing=profile.preprocessing, dtype=profile.dtype, progress=False)  # fmt: skip
    return {"val_loss": [h["val_loss"] for h in result.history], "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "table1": table1_values(bundle, captions, profile)}  # fmt: skip


def measure(profile: Profile) -> dict:
    """Every run of the profile without and with the validation mask (module docstring)."""
    from ..model import load_siglip
    from .inputs import load_splits, study_captions

    train, test = load_splits(profile)
    data = (train, test, study_captions(profile, train, test))
    model, processor = load_siglip(profile.model)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scope in profile.scopes:
            for captions in profile.prompts:
                runs[f"{scope}-{captions}"] = {
                    label: one_run(profile, scope, captions, mask, data, model, processor, Path(tmp) / f"{scope}-{captions}-{label}")
                    for label, mask in (("without_mask", False), ("with_mask", True))
                }  # fmt: skip
    out = {"profile": profile.name, "runs": runs, "stamp": stamp(profile, command="python -m radioalign.study.validation_mask")}
    out["summary"] = summary(out)
    return out


def summary(data: dict) -> str:
    """One line: in how many runs the mask moved the best epoch, the length, and Table 1."""
    runs = data["runs"].values()
    best = sum(r["without_mask"]["best_epoch"] != r["with_mask"]["best_epoch"] for r in runs)
    length = sum(r["without_mask"]["epochs_run"] != r["with_mask"]["epochs_run"] for r in runs)
    deltas = [abs(r["with_mask"]["table1"][k] - r["without_mask"]["table1"][k]) for r in runs for k in TABLE1_ROWS
              if not (np.isnan(r["with_mask"]["table1"][k]) or np.isnan(r["without_mask"]["table1"][k]))]  # fmt: skip
    loss = max(abs(a - b) for r in runs for a, b in zip(r["with_mask"]["val_loss"], r["without_mask"]["val_loss"]))
    settings = data["stamp"].get("profile_settings", {})
    limits = f" (at most {settings['epochs']} epochs, patience {settings['patience']})" if settings else ""
    return (f"{data['profile']} profile{limits}, {len(data['runs'])} runs: the mask moves the validation loss by up to "
            f"{loss:.3f}, the best epoch in {best} and the epochs run in {length} of them; the largest Table 1 change "
            f"{max(deltas) if deltas else 0.0:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m radioalign.study.validation_mask", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", default=None, help="default: paper/measurements/validation_mask_<profile>.json")
    args = parser.parse_args(argv)
    from .profiles import get_profile

    data = measure(get_profile(args.profile))  # the command line is where a name becomes a Profile
    path = Path(args.out) if args.out else MEASUREMENTS / f"validation_mask_{args.profile}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{data['summary']}\n-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
