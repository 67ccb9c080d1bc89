"""The study's LoRA runs: one profile, one scope, one caption set -> a run folder and its bundles."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ..captions.shuffle import SHUFFLE_MODES, shuffle_permutation
from ..model import load_siglip
from ..train import FinetuneResult, finetune
from .bundles import Tag, seed_suffix, write_bundle
from .inputs import logit_arrays, zero_shot_prompts
from .layout import results_dir, run_dir
from .profiles import Profile, finetune_config


def eval_sets(train, test, texts: Mapping[str, Mapping[str, Sequence[str]]]) -> dict[str, Any]:
    """What every run embeds at its saved stages: both image splits and every caption set."""
    sets: dict[str, Any] = {"image_train": train.images, "image_test": test.images, "text_prompts": zero_shot_prompts()[0]}
    for prompt, by_split in texts.items():
        for split, ds in (("train", train), ("test", test)):
            if len(by_split[split]) != len(ds.images):
                raise ValueError(f"{prompt} {split}: {len(by_split[split])} captions for {len(ds.images)} images")
            sets[f"text_{prompt}_{split}"] = list(by_split[split])
    return sets


def training_captions(texts: Sequence[str], labels: Sequence[int], variant: str | None, seed: int) -> tuple[list[str], list[int]]:
    """The captions a run trains on, in dataset order, and the permutation applied:
    ``texts`` itself for ``variant`` None, else ``texts`` shuffled by the shuffle mode
    ``variant`` (``radioalign.captions.shuffle``), drawn from ``seed`` alone, so every
    caption set of one training split gets the same permutation."""
    if variant is None:
        return list(texts), list(range(len(texts)))
    perm = shuffle_permutation(variant, labels, np.random.default_rng(seed))
    return [texts[j] for j in perm], perm.tolist()


def matched_epochs(profile: Profile, scope: str, captions: str, seed: int) -> tuple[str, int]:
    """``(run, epochs)`` of the run on the true pairs that a shuffled-caption run of ``scope``,
    ``captions`` and ``seed`` is compared with: its tag and the epochs it trained (its
    ``config.json``). A control must differ from its true run in the captions only, so the
    shuffled run trains as many epochs, whatever its own (shuffled) validation loss does."""
    run = Tag(scope, captions, seed=seed_suffix(seed, profile.seed)).run
    path = run_dir(results_dir(profile), run) / "config.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    if "epochs_run" not in record:
        raise FileNotFoundError(f"{path} has no finished run: train {run} (notebook 03) before its shuffled-caption controls")
    return run, int(record["epochs_run"])


def run_one(profile: Profile, scope: str, captions: str, *, train, test, texts, model=None, processor=None, progress: bool = True,
            seed: int | None = None, variant: str | None = None) -> FinetuneResult:
    """Fine-tune ``scope`` on the ``captions`` prompt set with the profile's settings and write
    the run folder ``layout.run_dir(layout.results_dir(profile), "<scope>-<captions>")`` and its bundles.

    ``train`` / ``test`` are datasets with ``.images``, ``.labels`` and ``.names``;
    ``texts[prompt][split]`` the captions in dataset order for every caption set (all are
    embedded, whichever one trains). ``model`` / ``processor`` default to
    ``load_siglip(profile.model)``. Bundles: ``<scope>-<captions>`` (final model) and
    ``<scope>-<captions>_epoch<k>`` (each of ``profile.eval_epochs`` reached).

    ``seed`` (None: the profile's) drives the run's LoRA initialisation, batch order and
    validation split; another seed than the profile's adds ``_s<seed>`` to the run's tag.
    ``variant``, a shuffle mode, trains on the training captions shuffled by that mode
    (:func:`training_captions`) and adds ``+<variant>`` to the tag. It trains exactly as many
    epochs as the run on the true pairs with the same scope, captions and seed
    (:func:`matched_epochs`, which must exist), with the same learning-rate schedule and no
    early stopping: its validation pairs are shuffled too, and stopping on them gave the
    controls other lengths than their true runs. The permutation and the matched epochs are
    written to ``shuffle.json`` in the run folder, the epochs also into ``config.json``'s
    stamp. The bundles always embed the true captions, so a shuffled run is evaluated on the
    true pairs.
    """
    if captions not in texts:
        raise ValueError(f"no {captions!r} captions among {sorted(texts)}")
    seed = profile.seed if seed is None else int(seed)
    if variant is not None and variant not in SHUFFLE_MODES:
        raise ValueError(f"unknown variant {variant!r}; choose a shuffle mode of {sorted(SHUFFLE_MODES)}")
    run = Tag(scope, captions, variant=variant, seed=seed_suffix(seed, profile.seed))
    config = finetune_config(profile, scope, captions, seed=seed)
    train_texts, perm = training_captions(texts[captions]["train"], train.labels, variant, seed)
    matched = {}
    if variant is not None:
        true_run, epochs = matched_epochs(profile, scope, captions, seed)
        config, matched = replace(config, fixed_epochs=epochs), {"matched_run": true_run, "matched_epochs": epochs}
        folder = run_dir(results_dir(profile), run.run)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"variant": variant, "description": SHUFFLE_MODES[variant], "seed": seed, **matched, "permutation": perm}
        (folder / "shuffle.json").write_text(json.dumps(record) + "\n")
    if model is None or processor is None:
        model, processor = load_siglip(profile.model)
    result = finetune(
        model, processor, train.images, train_texts, config=config,
        output_dir=run_dir(results_dir(profile), run.run), eval_sets=eval_sets(train, test, texts),
        stamp_profile=profile, stamp_extra=matched, progress=progress,
    )  # fmt: skip
    extras = dict(labels_train=train.labels, labels_test=test.labels, names_train=train.names, names_test=test.names)
    complete = {"curated", "control"} <= set(texts)  # the bundle contract's two caption sets
    # the zero-shot keys (radioalign.study.inputs): logit scale and bias are frozen in training
    zero_shot = dict(prompt_classes=zero_shot_prompts()[1], **logit_arrays(result.model))
    for stage, arrays in result.embeddings.items():
        epoch = None if stage == "final" else int(stage.removeprefix("epoch"))
        prompts = zero_shot if "text_prompts" in arrays else {}  # a stage saved before prompts were embedded
        write_bundle(profile, run.at_epoch(epoch), strict=complete, **arrays, **extras, **prompts)
    return result
