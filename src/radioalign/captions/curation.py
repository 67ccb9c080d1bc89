"""Curation: hand edits applied over a generated caption set, with the original kept.

The study checked the test captions by hand and edited some ("manually
controlled, and if need be, edited for the test set only"). A curation file
lists the edits; ``apply_curation`` appends one record per edit to the store
(``read_store`` then returns the edit, the last record winning) holding the
edited ``caption``, the generated ``original`` and the ``curation`` reason.

Curation file: CSV with columns ``id,caption,reason``, or JSON, either a list of
``{"id", "caption", "reason"}`` objects or ``{id: {"caption", "reason"}}``.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from .store import CaptionStore, utc_now


def load_curation(path: str | os.PathLike) -> pd.DataFrame:
    """The edits of a curation file as a table ``id, caption, reason`` (one row per id)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data = [{"id": k, **v} for k, v in data.items()]
        table = pd.DataFrame(data)
    elif path.suffix.lower() in (".csv", ".tsv"):
        table = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", encoding="utf-8-sig", dtype=str, keep_default_na=False)
    else:
        raise ValueError(f"a curation file is .csv, .tsv or .json, got {path}")
    return _check(table, str(path))


def _check(table: pd.DataFrame, where: str) -> pd.DataFrame:
    missing = {"id", "caption", "reason"} - set(table.columns)
    if missing:
        raise ValueError(f"{where}: curation needs columns id, caption, reason; missing {sorted(missing)}")
    table = table[["id", "caption", "reason"]].astype(str)
    table["caption"] = table["caption"].str.strip()
    if (table["caption"] == "").any():
        raise ValueError(f"{where}: empty edited captions for ids {table.loc[table['caption'] == '', 'id'].tolist()}")
    if (table["reason"].str.strip() == "").any():
        raise ValueError(f"{where}: every edit needs a reason (ids {table.loc[table['reason'].str.strip() == '', 'id'].tolist()})")
    dup = table["id"][table["id"].duplicated()].tolist()
    if dup:
        raise ValueError(f"{where}: ids edited twice: {dup}")
    return table.reset_index(drop=True)


def apply_curation(store: str | os.PathLike | CaptionStore, curation: str | os.PathLike | pd.DataFrame | Iterable[dict], *, editor: str | None = None) -> list[dict]:
    """Append one edit record per curated id whose current caption differs; return the records written.

    Every curated id must already have a successful caption in the store. Reapplying
    the same file writes nothing (idempotent).
    """
    store = store if isinstance(store, CaptionStore) else CaptionStore(store)
    if isinstance(curation, (str, os.PathLike)):
        source, table = str(curation), load_curation(curation)
    else:
        source, table = None, _check(pd.DataFrame(list(curation) if not isinstance(curation, pd.DataFrame) else curation), "curation")
    current = {i: r for i, r in store.latest().items() if r["status"] == "ok"}
    unknown = [i for i in table["id"] if i not in current]
    if unknown:
        raise KeyError(f"curation edits ids with no caption in {store.path}: {unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
    records = []
    for row in table.itertuples(index=False):
        prev = current[row.id]
        if prev["caption"] == row.caption:
            continue
        record = dict(prev)
        record.update(
            caption=row.caption,
            original=prev.get("original") or prev["caption"],  # always the generated text
            curation={"reason": row.reason, "previous": prev["caption"], "file": source, "editor": editor},
            created=utc_now(),
        )
        records.append(record)
    store.append(*records)
    return records


def diff_words(original: str, edited: str) -> str:
    """A word-level difference: ``[-removed-]`` and ``{+added+}`` (difflib)."""
    a, b = original.split(), edited.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.extend(a[i1:i2])
            continue
        if i2 > i1:
            out.append("[-" + " ".join(a[i1:i2]) + "-]")
        if j2 > j1:
            out.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(out)


def curation_table(store: str | os.PathLike | CaptionStore) -> pd.DataFrame:
    """The edits in a store, for review: ``id, reason, original, caption, diff`` (the last edit per id)."""
    store = store if isinstance(store, CaptionStore) else CaptionStore(store)
    rows = {}
    for r in store.records():
        if r["status"] == "ok" and r.get("original") and r.get("curation"):
            rows[r["id"]] = {
                "id": r["id"],
                "reason": r["curation"].get("reason"),
                "original": r["original"],
                "caption": r["caption"],
                "diff": diff_words(r["original"], r["caption"]),
            }
    return pd.DataFrame(list(rows.values()), columns=["id", "reason", "original", "caption", "diff"])
