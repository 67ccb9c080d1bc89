"""Notebook 01's steps: the splits captioned into the stores, extra sets, curation, statistics.

The caption statistics and lengths too.

Each function is one cell's work; the notebook calls it and shows what it returns. The
stores are ``layout.captions_store(...)``: ``results/<profile>/captions/<source>/<prompt>_<split>.jsonl``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..captions import apply_curation, caption_images, caption_stats, curation_table, read_records
from ..data import MiraBest, images_by_name
from .layout import captions_store, results_dir


if TYPE_CHECKING:  # annotations only: importing profiles loads the model (and torch)
    from .profiles import Profile


def caption_splits(profile: Profile, data: Mapping[str, MiraBest], source: str, **options) -> tuple[dict, pd.DataFrame, list[str]]:
    """Caption every split of ``data`` with each of ``profile.prompts`` through ``source``
    into its store (``options`` go to ``captions.caption_images``).

    Returns ``captions`` (``{(prompt, split): [caption or None, in dataset order]}``), one
    row per prompt and split (images, captioned, failed, the model of the store's last
    record), and the text of every warning raised on the way, in order (a failed caption
    warns; the notebook prints them rather than letting them scroll past)."""
    captions, rows, messages = {}, [], []
    for prompt in profile.prompts:
        for split, ds in data.items():
            store = captions_store(results_dir(profile), source, prompt, split)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                got = caption_images(images_by_name(ds), prompt, source, store, progress=False, **options)
            messages += [str(w.message) for w in caught]
            captions[prompt, split] = [got.get(name) for name in ds.names]
            records = read_records(store)
            rows.append({"prompt": prompt, "split": split, "images": len(ds), "captioned": len(got),
                         "failed": len(ds) - len(got), "model": records[-1]["model"] if records else None})  # fmt: skip
    return captions, pd.DataFrame(rows), messages


def caption_extra_sets(profile: Profile, data: Mapping[str, MiraBest], source: str) -> list[str]:
    """Caption every split with the curated prompt of each of ``profile.extra_captions``
    other than ``source`` (a further caption condition, e.g. the catalogue's); one line per
    set and split saying how many items got a caption."""
    lines = []
    for extra in (e for e in profile.extra_captions if e != source):
        for split, ds in data.items():
            store = captions_store(results_dir(profile), extra, "curated", split)
            got = caption_images(images_by_name(ds), "curated", extra, store, progress=False)
            lines.append(f"{extra} curated {split}: {len(got)} of {len(ds)} captioned")
    return lines


def curate(profile: Profile, source: str, curation_file: str | Path) -> list[tuple[str, pd.DataFrame]]:
    """Apply ``curation_file``'s hand edits over each prompt's test captions: per prompt,
    a line saying how many edits are new and the store's review table (``id, reason, diff``)."""
    out = []
    for prompt in profile.prompts:
        store = captions_store(results_dir(profile), source, prompt, "test")
        written = apply_curation(store, curation_file)
        out.append((f"{prompt}: {len(written)} new edits", curation_table(store)[["id", "reason", "diff"]]))
    return out


def authors_edits(profile: Profile, source: str) -> int:
    """How many of the stored curated test captions the authors edited by hand (the
    published captions carry the flag)."""
    records = read_records(captions_store(results_dir(profile), source, "curated", "test"))
    return sum(bool(r.get("edited_by_authors", False)) for r in records)


def caption_statistics(captions: Mapping[tuple[str, str], Sequence[str | None]], tokenizer=None) -> dict:
    """``captions.caption_stats`` of every ``(prompt, split)`` set with at least one caption
    (failed captions, ``None``, left out)."""
    stats = {}
    for key, texts in captions.items():
        texts = [t for t in texts if t]
        if texts:
            stats[key] = caption_stats(texts, tokenizer=tokenizer)
    return stats


def caption_lengths_by_prompt(stats: Mapping, captions: Mapping, prompts: Sequence[str], splits: Sequence[str],
                              source: str, *, tokens: bool) -> dict[str, list[int]]:  # fmt: skip
    """``{"<prompt> (<source>)": lengths}`` over ``splits``: token lengths from ``stats``
    when ``tokens`` (a tokenizer was used), else words per caption."""
    lengths = {}
    for prompt in prompts:
        values = []
        for split in splits:
            if (prompt, split) in stats:
                if tokens:
                    values += stats[prompt, split]["token_lengths"]
                else:
                    values += [len(t.split()) for t in captions[prompt, split] if t]
        lengths[f"{prompt} ({source})"] = values
    return lengths
