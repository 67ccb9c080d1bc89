"""People's labels in a store: the ``user_labels`` table, added, imported, removed, listed.

Labels from people (or a catalogue's classifications), for any survey store, not only
MiraBest. The table (created in the store on first write, beside ``sources`` and the
zero-shot ``labels``):

``user_labels``        one row per labelled source: ``id``, ``class`` (a free string; a
                       prompt set's classes are offered first), ``who``, ``origin``
                       (``user`` | ``import``) and ``created_at``. Labelling a source again
                       replaces its row; :func:`remove_labels` deletes it.

A source is given by its id or its name (:func:`resolve_sources`); a class is any
non-empty name without ``|``, the separator of the prediction sets
(:func:`check_class`). :func:`forget` drops a deleted source's label and predictions
(``probe_predictions``, written by :mod:`.probe`). Everything the labelling modules
cannot use as given raises :class:`LabellingError`.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .store import SOURCES, Store, in_list, now, open_store

USER_LABELS, PREDICTIONS = "user_labels", "probe_predictions"
ORIGINS = ("user", "import")
SEPARATOR = "|"
ID_COLUMNS = ("id", "source_id")
NAME_COLUMNS = ("name", "source_name", "source", "object", "designation", "main_id")
CLASS_COLUMNS = ("class", "label", "classification", "type", "morphology", "fr_class")
_CHUNK = 500


class LabellingError(ValueError):
    """Labels or a request that cannot be used as given; the message says why."""


# -------------------------------------------------------------------- table


def user_labels_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("class", pa.string()),
            pa.field("who", pa.string()),
            pa.field("origin", pa.string()),
            pa.field("created_at", pa.timestamp("us", tz="UTC")),
        ]
    )


# ------------------------------------------------------------- store: labels


def _who(who: str | None) -> str:
    if who:
        return str(who)
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


def _chunks(values: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _few(values: Sequence, k: int = 5) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:k])
    return shown + (f" and {len(values) - k} more" if len(values) > k else "")


def resolve_sources(store: Store, keys: Sequence[str]) -> tuple[dict[str, str], list[str], dict[str, list[str]]]:
    """``(found, unknown, ambiguous)`` for keys that are source ids or names: ``{key: id}``,
    the keys matching nothing, and ``{name: [ids]}`` for names shared by several sources."""
    keys = list(dict.fromkeys(str(k) for k in keys))
    found = {}
    for chunk in _chunks(keys):
        found.update({r["id"]: r["id"] for r in store.rows_where(in_list("id", chunk), ["id"])})
    by_name: dict[str, list[str]] = {}
    rest = [k for k in keys if k not in found]
    for chunk in _chunks(rest):
        for r in store.rows_where(in_list("name", chunk), ["id", "name"]):
            by_name.setdefault(r["name"], []).append(r["id"])
    ambiguous = {k: v for k, v in by_name.items() if len(v) > 1}
    found.update({k: v[0] for k, v in by_name.items() if len(v) == 1})
    unknown = [k for k in rest if k not in by_name]
    return found, unknown, ambiguous


def check_class(value) -> str:
    """A class name: a non-empty string without ``|`` (the prediction sets' separator)."""
    name = str(value).strip()
    if not name or SEPARATOR in name:
        raise LabellingError(f"a class is a non-empty name without {SEPARATOR!r}, not {value!r}")
    return name


def _resolve_or_fail(store: Store, keys: Sequence[str]) -> dict[str, str]:
    if not store.has(SOURCES):
        raise LabellingError(f"the store at {store.path} has no sources yet (run `radioalign ingest` first)")
    found, unknown, ambiguous = resolve_sources(store, keys)
    if unknown:
        raise LabellingError(f"{len(unknown)} unknown source(s), neither an id nor a name in the store: {_few(unknown)}")
    if ambiguous:
        raise LabellingError(f"names shared by several sources (give their ids): {_few(sorted(ambiguous))}")
    return found


def _write_labels(store: Store, labels: Mapping[str, str], who: str, origin: str) -> dict:
    import pyarrow as pa

    created = now()
    rows = [{"id": i, "class": c, "who": who, "origin": origin, "created_at": created} for i, c in labels.items()]
    with store.writing():
        table = store._create(USER_LABELS, user_labels_schema())
        before = set(user_labels_of(store, list(labels)))
        for chunk in _chunks(rows, 10_000):
            data = pa.Table.from_pylist(list(chunk), schema=user_labels_schema())
            table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(data)
    return {"added": len(rows) - len(before), "replaced": len(before)}


def add_labels(store: Store | str | os.PathLike, labels: Mapping[str, str], *, who: str | None = None,
               origin: str = "user") -> dict:  # fmt: skip
    """Label sources: ``labels`` maps a source id or name to its class. A source labelled
    before gets the new class. Returns ``{"added", "replaced"}``. Unknown ids or names,
    names shared by several sources and bad classes raise :class:`LabellingError`."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    if origin not in ORIGINS:
        raise LabellingError(f"origin must be one of {ORIGINS}, not {origin!r}")
    if not labels:
        return {"added": 0, "replaced": 0}
    classes = {str(k): check_class(v) for k, v in labels.items()}
    found = _resolve_or_fail(store, list(classes))
    return _write_labels(store, {found[k]: c for k, c in classes.items()}, _who(who), origin)


def remove_labels(store: Store | str | os.PathLike, keys: Sequence[str]) -> dict:
    """Remove the labels of sources given by id or name: ``{"removed", "not_labelled"}``.
    Unknown ids or names raise :class:`LabellingError`."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    found = _resolve_or_fail(store, list(keys))
    ids = sorted(set(found.values()))
    labelled = set(user_labels_of(store, ids))
    if labelled:
        with store.writing():
            for chunk in _chunks(sorted(labelled)):
                store.table(USER_LABELS).delete(in_list("id", chunk))
    return {"removed": len(labelled), "not_labelled": len(ids) - len(labelled)}


def user_labels(store: Store | str | os.PathLike, *, details: bool = False) -> dict:
    """Every user label: ``{id: class}``, or with ``details`` ``{id: {class, who, origin, created_at}}``."""
    store = store if isinstance(store, Store) else open_store(store)
    out = {}
    for batch in store.scan(["id", "class", "who", "origin", "created_at"], 65536, table=USER_LABELS):
        for r in batch.to_pylist():
            out[r["id"]] = {k: v for k, v in r.items() if k != "id"} if details else r["class"]
    return out


def user_labels_of(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """The user labels of ``ids`` that have one: ``{id: class}``."""
    if not ids or not store.has(USER_LABELS):
        return {}
    out = {}
    for chunk in _chunks(list(ids)):
        out.update({r["id"]: r["class"] for r in store.rows_where(in_list("id", chunk), ["id", "class"], USER_LABELS)})
    return out


def forget(store: Store, ids: Sequence[str]) -> None:
    """Delete the user labels and predictions of sources (e.g. deleted from the store)."""
    with store.writing():
        for name in (USER_LABELS, PREDICTIONS):
            if store.has(name):
                for chunk in _chunks(list(ids)):
                    store.table(name).delete(in_list("id", chunk))


# ------------------------------------------------------------ store: import


def read_label_table(path: str | os.PathLike, format: str | None = None):
    """An astropy ``Table`` from CSV, TSV, ECSV, VOTable or FITS (by extension unless ``format``)."""
    from astropy.table import Table

    path = Path(path).expanduser()
    if not path.is_file():
        raise LabellingError(f"no label file at {path}")
    suffix = path.suffix.lower()
    guess = {".csv": "ascii.csv", ".tsv": "ascii.tab", ".ecsv": "ascii.ecsv", ".vot": "votable", ".xml": "votable"}
    try:
        return Table.read(str(path), format=format or guess.get(suffix))
    except Exception as err:  # astropy raises many kinds for a file it cannot read
        raise LabellingError(f"cannot read {path.name} as a table (CSV, TSV, ECSV, VOTable or FITS): {err}") from None


def _column(table, given: str | None, candidates: Sequence[str], what: str) -> str | None:
    names = {n.lower(): n for n in table.colnames}
    if given is not None:
        if given not in table.colnames and given.lower() not in names:
            raise LabellingError(f"the file has no {what} column {given!r}; its columns: {_few(table.colnames, 12)}")
        return given if given in table.colnames else names[given.lower()]
    return next((names[c] for c in candidates if c in names), None)


def _cell(value) -> str | None:
    if value is None or np.ma.is_masked(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip()
    return text or None


@dataclass
class ImportSummary:
    """What :func:`import_labels` did: rows read, matched (labelled), unmatched, ambiguous
    (a name of several sources), blank (no key or class), and a few unmatched keys."""

    rows: int = 0
    matched: int = 0
    unmatched: int = 0
    ambiguous: int = 0
    blank: int = 0
    added: int = 0
    replaced: int = 0
    examples: list = field(default_factory=list)

    def line(self) -> str:
        extra = f" (e.g. {_few(self.examples, 3)})" if self.unmatched else ""
        return (f"labels: {self.matched} of {self.rows} rows matched a source ({self.added} new, {self.replaced} replaced); "
                f"{self.unmatched} unmatched{extra}, {self.ambiguous} ambiguous, {self.blank} blank")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


def import_labels(store: Store | str | os.PathLike, path: str | os.PathLike, id_col: str | None = None,
                  name_col: str | None = None, class_col: str | None = None, *, class_map: Mapping | None = None,
                  who: str | None = None, format: str | None = None) -> ImportSummary:  # fmt: skip
    """Label sources from a table file (e.g. a catalogue's classifications): each row's
    source by id (``id_col``, default a column ``id``) or else by name (``name_col``,
    default the first of :data:`NAME_COLUMNS`), its class from ``class_col`` (default the
    first of :data:`CLASS_COLUMNS`), mapped through ``class_map`` when given (e.g.
    ``{0: "FR-I", 1: "FR-II"}``). Origin ``import``. A file none of whose rows matches a
    source raises :class:`LabellingError`."""
    store = store if isinstance(store, Store) else open_store(store, must_exist=True)
    table = read_label_table(path, format)
    ids, names = _column(table, id_col, ID_COLUMNS, "id"), _column(table, name_col, NAME_COLUMNS, "name")
    classes = _column(table, class_col, CLASS_COLUMNS, "class")
    if classes is None or (ids is None and names is None):
        raise LabellingError(f"{Path(path).name}: need a class column ({', '.join(CLASS_COLUMNS)}) and an id or name "
                             f"column ({', '.join(ID_COLUMNS + NAME_COLUMNS)}); its columns: {_few(table.colnames, 12)}")  # fmt: skip
    mapping = {str(k): v for k, v in (class_map or {}).items()}
    summary, wanted = ImportSummary(rows=len(table)), []
    for row in table:
        key = _cell(row[ids]) if ids else None
        key = key or (_cell(row[names]) if names else None)
        label = _cell(row[classes])
        if key is None or label is None:
            summary.blank += 1
            continue
        wanted.append((key, check_class(mapping.get(label, label))))
    found, unknown, ambiguous = resolve_sources(store, [k for k, _ in wanted]) if store.has(SOURCES) else ({}, [k for k, _ in wanted], {})
    labels = {found[k]: c for k, c in wanted if k in found}
    summary.matched = sum(k in found for k, _ in wanted)
    summary.ambiguous = sum(k in ambiguous for k, _ in wanted)
    summary.unmatched, summary.examples = len(wanted) - summary.matched - summary.ambiguous, unknown[:5]
    if not labels:
        columns = " or ".join(f"{w} ({c})" for w, c in (("id", ids), ("name", names)) if c)
        raise LabellingError(f"no row of {Path(path).name} matches a source of the store by {columns}: "
                             f"e.g. {_few([k for k, _ in wanted], 3) or 'no rows with a key and a class'}")  # fmt: skip
    written = _write_labels(store, labels, _who(who), "import")
    summary.added, summary.replaced = written["added"], written["replaced"]
    return summary


# ------------------------------------------------------------- store: listing


def labelled_sources(store: Store) -> list[dict]:
    """Every user label with its source's name: ``{id, name, class, who, origin, created_at}``, by name."""
    labels = user_labels(store, details=True)
    names = {}
    for chunk in _chunks(sorted(labels)):
        names.update({r["id"]: r["name"] for r in store.rows_where(in_list("id", chunk), ["id", "name"])})
    rows = [{"id": i, "name": names.get(i), **v} for i, v in labels.items()]
    return sorted(rows, key=lambda r: (r["name"] or "", r["id"]))
