"""The ``published`` backend: the authors' Gemini captions, pinned and verified.

The four CSV files of ``elastufka/mirabest_captioned`` at commit
``ceb190b70cab9f4282abf52e89874ac2b64f2f0e`` are fetched with pooch and checked
against their sha256 (``data/captions/PROVENANCE.md`` of the shared folder).

Alignment (PROVENANCE): row *i* belongs to item *i* of the Confident
``MiraBest_full`` split, whose names in ``radioalign.data`` are
``full-<split>-<i:04d>``. The files' ``index`` column is broken (empty in rows 0
and 50, off by one in rows 1-100) and is ignored; the curated test file is
UTF-8 with a BOM and carries the authors' ``edited?`` flag (23 captions
corrected by hand).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from ..paths import captions_dir
from .prompts import get_prompt
from .store import CaptionStore, make_record

REPOSITORY = "elastufka/mirabest_captioned"
COMMIT = "ceb190b70cab9f4282abf52e89874ac2b64f2f0e"
BASE_URL = f"https://raw.githubusercontent.com/{REPOSITORY}/{COMMIT}/"
PAPER_MODEL = "gemini-2.5-flash-preview-05-20"

#: (prompt, split) -> (file name, sha256, rows)
FILES: dict[tuple[str, str], tuple[str, str, int]] = {
    ("curated", "train"): ("gemini_captions_train.csv", "18c9ac81be8386fcd05f9442659cb8f8113384a76cc4db0976674cf7a6e0c0a4", 729),
    ("curated", "test"): ("gemini_captions_test.csv", "5c8dd5383460ad89a8a4b0b058d28ac55626b70318c1017b0b92b3a0aacc497e", 104),
    ("control", "train"): ("gemini_train_captions_blind.csv", "c8f610ea9bf3a556f46f6f65ec0cf2c54d125eb7d4cdca51b4f34204540afd9b", 729),
    ("control", "test"): ("gemini_test_captions_blind.csv", "bc56d51153ddfe7a289e2f25a6bf1a5de3506ad6c621816631b9bd352401fa2e", 104),
}

_ID = re.compile(r"^full-(train|test)-(\d{4})$")


class PublishedCaptionsError(RuntimeError):
    """The published captions cannot be found, fetched or verified, or cannot be paired with the given ids."""


def _spec(prompt: str, split: str) -> tuple[str, str, int]:
    get_prompt(prompt)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return FILES[(prompt, split)]


def published_id(split: str, row: int) -> str:
    """The ``MiraBest_full`` name of a caption row: ``full-<split>-<row:04d>``."""
    return f"full-{split}-{row:04d}"


def fetch_published(prompt: str, split: str, root: str | os.PathLike | None = None) -> Path:
    """The verified local path of one published file, downloading it into ``root`` when absent.

    ``root`` defaults to ``radioalign.paths.captions_dir()``. A file already there is
    checked against its sha256 and never rewritten (``root`` may be read-only).
    """
    import pooch

    name, sha256, _ = _spec(prompt, split)
    root = Path(root) if root is not None else captions_dir()
    path = root / name
    url = BASE_URL + name
    if path.is_file():
        found = pooch.file_hash(str(path), alg="sha256")
        if found != sha256:
            raise PublishedCaptionsError(
                f"{path} has sha256 {found}, expected {sha256} ({REPOSITORY}@{COMMIT[:7]}): "
                f"the file is not the authors' published one; delete it to download {url}"
            )
        return path
    try:
        return Path(pooch.retrieve(url, known_hash=f"sha256:{sha256}", fname=name, path=root, progressbar=False))
    except Exception as err:  # network down, proxy, HTTP error, or a hash mismatch
        raise PublishedCaptionsError(
            f"cannot get the published captions file {name} from {url} into {root} "
            f"({type(err).__name__}: {err}). Offline? Copy the file into {root} "
            f"(or set RADIOALIGN_CAPTIONS_DIR to a folder holding it) and rerun."
        ) from err


def load_published_records(prompt: str, split: str, root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per caption, in file (= ``MiraBest_full`` Confident) order.

    Columns: ``row``, ``id`` (``full-<split>-NNNN``), ``caption``, ``edited`` (the
    authors' hand-edit flag; only the curated test file has one, elsewhere ``False``),
    and, for the curated test file, ``label`` (its ``true label`` column, 0 = FR-I).
    """
    name, _, rows = _spec(prompt, split)
    path = fetch_published(prompt, split, root)
    raw = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False)  # utf-8-sig drops the BOM
    if len(raw) != rows or "caption" not in raw.columns:
        raise PublishedCaptionsError(f"{path}: expected {rows} rows with a 'caption' column, got {len(raw)} rows and {list(raw.columns)}")
    out = pd.DataFrame(
        {
            "row": range(rows),
            "id": [published_id(split, i) for i in range(rows)],
            "caption": raw["caption"].astype(str).str.strip(),
            "edited": _flags(raw["edited?"], path) if "edited?" in raw.columns else False,
        }
    )
    if "true label" in raw.columns:
        out["label"] = raw["true label"].astype(int)
    if (out["caption"] == "").any():
        raise PublishedCaptionsError(f"{path}: empty captions in rows {list(out.index[out['caption'] == ''])}")
    return out


def _flags(column: pd.Series, path: Path) -> pd.Series:
    """The ``edited?`` column: "1" = edited, empty (or "0") = not."""
    values = column.astype(str).str.strip()
    bad = sorted(set(values) - {"", "0", "1"})
    if bad:
        raise PublishedCaptionsError(f"{path}: unexpected 'edited?' values {bad}")
    return values == "1"


def load_published_captions(prompt: str, split: str, root: str | os.PathLike | None = None) -> list[str]:
    """The authors' captions for ``prompt`` ("control" | "curated") and ``split``, in row order."""
    return load_published_records(prompt, split, root)["caption"].tolist()


def _rows_for(ids: list[str], split: str | None, nrows_of) -> tuple[str, list[int]]:
    """Map ids to caption rows: ``full-<split>-NNNN`` names, or positions when ``split`` is given."""
    if split is not None:
        n = nrows_of(split)
        if len(ids) > n:
            raise PublishedCaptionsError(f"{len(ids)} images given for split {split!r}, which has {n} published captions")
        return split, list(range(len(ids)))
    matches = [_ID.match(i) for i in ids]
    if not all(matches):
        bad = [i for i, m in zip(ids, matches) if not m][:3]
        raise PublishedCaptionsError(
            f"cannot pair ids such as {bad} with the published captions. They are aligned by row with the "
            "Confident MiraBest_full splits (ids 'full-train-0000' ..., as radioalign.data.load_mirabest("
            "version='full') names them), not with MiraBest_F, whose order and test membership differ: "
            "pairing F images with these rows gives wrong image-caption pairs. Use version='full' images, "
            "or pass split='train'|'test' with the images in MiraBest_full row order."
        )
    splits = {m.group(1) for m in matches}
    if len(splits) != 1:
        raise PublishedCaptionsError(f"ids mix splits {sorted(splits)}: caption one split per store")
    return splits.pop(), [int(m.group(2)) for m in matches]


def caption_published(
    items: list[tuple[str, object]],
    prompt: str,
    store: CaptionStore,
    *,
    split: str | None = None,
    root: str | os.PathLike | None = None,
    progress: bool = True,
) -> None:
    """Store the published captions for ``items`` (``(id, image)`` pairs; images are not read)."""
    ids = [i for i, _ in items]
    split, rows = _rows_for(ids, split, lambda s: _spec(prompt, s)[2])
    table = load_published_records(prompt, split, root)
    if max(rows, default=-1) >= len(table):
        raise PublishedCaptionsError(f"row {max(rows)} is beyond the {len(table)} published {split} captions")
    name = FILES[(prompt, split)][0]
    spec = get_prompt(prompt)
    records = []
    for i, row in zip(ids, rows):
        r = table.iloc[row]
        records.append(
            make_record(
                i,
                caption=r["caption"],
                backend="published",
                model=PAPER_MODEL,
                prompt=prompt,
                prompt_sha256=spec.sha256,
                source=f"{REPOSITORY}@{COMMIT}/{name}#row={row}",
                split=split,
                edited_by_authors=bool(r["edited"]),
            )
        )
    store.append(*records)

