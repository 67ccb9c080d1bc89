"""The survey tool as a Python API: a store opened once, searched, described, exported.

::

    from radioalign.survey import Survey

    survey = Survey.open("first.lance")                  # the store's own model, loaded at the first text/image query
    hits = survey.search("a bent-tail radio galaxy", k=10, cone=("12:56:47", "+12:36:00", "10arcmin"))
    hits.to_table()                                      # astropy Table: UCDs, ra/dec in deg (SkyCoord(t["ra"], t["dec"]))
    hits.to_pandas()                                     # a DataFrame
    survey.search(like="J125647+123600", k=5)            # the neighbours of a stored source (id or name)
    survey.search(image="my_cutout.fits")                # ... of a FITS/PNG/JPEG file, or a 2-D array (row 0 north)
    survey.info()                                        # sources, errors, labels, model, index, size on disk ...
    survey.errors()                                      # the inputs that failed: path, reason, when
    survey.export("first.parquet", vectors=True)         # every source once (votable, csv, parquet, fits)
    survey.delete(where_name="J12*")                     # sources, with their labels and file records

:class:`Results` is a list of dicts (``id, name, ra, dec, score, source``, and ``label,
probability, p_<class>`` once the store is classified with the survey's prompt set), so
code that takes ``search.search``'s lists keeps working. ``radioalign search`` and
``radioalign store ...`` call this API; :func:`radioalign.survey.search.search` is
:meth:`Survey.search`.

Exports stream: the store is read a page of rows at a time from one committed version
(an ingest running meanwhile changes nothing in the file), the zero-shot labels are
joined from sorted numpy arrays (some 30 bytes per source, against the 3 KB of a 768-d
vector), and every writer appends page by page (Parquet row groups, CSV lines, VOTable
TABLEDATA rows, FITS rows through ``astropy.io.fits.StreamingHDU``), so memory stays
bounded whatever the store's size.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import re
import threading
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import votable
from .cone import Cone
from .query import RESULT_FIELDS, file_image, nearest, stored_vector
from .store import ERRORS, FILES, LABELS, SOURCES, Store, StoreError, in_list, open_store, quote

EXPORT_FORMATS = ("votable", "csv", "parquet", "fits")
SUFFIXES = {".xml": "votable", ".vot": "votable", ".votable": "votable", ".csv": "csv", ".parquet": "parquet",
            ".pq": "parquet", ".fits": "fits", ".fit": "fits", ".fts": "fits"}  # fmt: skip
SOURCE_COLUMNS = ("id", "name", "ra", "dec", "source", "created_at", "flags", "preprocessing")
LABEL_FIELDS = ("label", "probability")
ERROR_FIELDS = ("path", "reason", "when")
FLOAT_FIELDS = frozenset({"ra", "dec", "score", "probability", "distance"})
CONE_LIMIT = 10_000  # sources a query by position alone returns at most (the cone search's MAXREC)
BATCH_SIZE = 8192  # rows per page read from the store (and per Parquet row group)
PAGE_BYTES = 2 << 20  # ... at most this many bytes of vectors per page (LanceDB holds several pages per read)
ROW_GROUP_BYTES = 16 << 20  # a Parquet row group: BATCH_SIZE rows or this many bytes
CHUNK = 1000  # ids per SQL IN (...) filter


def _is_float_column(name: str) -> bool:
    return name in FLOAT_FIELDS or votable.is_probability(name)


def _iso(value) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else value


# ---------------------------------------------------------------------------
# Results


class Results(list):
    """Rows as a list of dicts, with their ``columns`` (in order) and the zero-shot
    ``classes`` of their ``p_<class>`` columns; :meth:`to_table`, :meth:`to_pandas`,
    :meth:`to_votable` (bytes), :meth:`to_csv` and :meth:`to_json` (text)."""

    def __init__(self, rows: Iterable[dict] = (), columns: Sequence[str] | None = None, classes: Sequence[str] = (),
                 infos: dict[str, str] | None = None, predicted: Sequence[str] = ()):  # fmt: skip
        super().__init__(rows)
        self.predicted = list(predicted)  # the classes of the cal_p_<class> columns (stored predictions)
        self.columns = list(columns) if columns is not None else columns_of(self)
        self.classes = list(classes) or [c[len(votable.PROBABILITY_PREFIX) :] for c in self.columns
                                         if c.startswith(votable.PROBABILITY_PREFIX)]  # fmt: skip
        self.infos = dict(infos or {})

    def to_table(self):
        """An ``astropy.table.Table``: UCDs, units and descriptions (:mod:`.votable`),
        ``ra``/``dec`` in deg and masked where unknown, so ``SkyCoord(t["ra"], t["dec"])``."""
        from astropy.table import Table

        table = Table()
        for name in self.columns:
            table[name] = _column(name, [row.get(name) for row in self])
        table.meta.update(self.infos)
        return votable.describe(table, self.classes, self.predicted)

    def to_pandas(self):
        """A ``pandas.DataFrame`` of the rows (NaN where a number is unknown)."""
        import pandas as pd

        frame = pd.DataFrame(list(self), columns=self.columns)
        for name in self.columns:
            if _is_float_column(name):
                frame[name] = pd.to_numeric(frame[name]).astype(float)
        return frame

    def to_votable(self) -> bytes:
        """A VOTable 1.4 (UCDs, units; ``astropy.io.votable.parse(..., verify="exception")`` accepts it)."""
        return votable.votable_bytes(self.to_table(), infos=self.infos)

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _iso(v) for k, v in row.items()} for row in self)
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps(list(self), indent=2, default=str) + "\n"


def columns_of(rows: Sequence[dict], default: Sequence[str] = RESULT_FIELDS) -> list[str]:
    """The keys of ``rows`` in order of first appearance (``default`` when there are none)."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen) if seen else list(default)


def _column(name: str, values: list):
    from astropy.table import MaskedColumn

    mask = [v is None for v in values]
    if _is_float_column(name):
        data = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        return MaskedColumn(data, mask=np.isnan(data))  # None and NaN: unknown
    if any(isinstance(v, (list, tuple, np.ndarray)) for v in values):
        return np.asarray(values, dtype=np.float32)  # vectors: one 1-D array per row
    text = ["" if v is None else str(_iso(v)) for v in values]
    return MaskedColumn(np.array(text, dtype=str) if text else np.array([], dtype="U1"), mask=mask)


# ---------------------------------------------------------------------------
# The API


class Survey:
    """A survey store and the model that queries it (see the module for examples).

    ``prompts`` names the prompt set whose zero-shot labels results carry (``fr``, or a
    YAML file given to ``classify``: its stem). The model is the store's own unless
    ``encoder`` (a loaded :class:`~.encoder.Encoder`), ``model`` or ``adapter`` is given;
    it is loaded at the first query that needs it and must match the store's
    fingerprint (``ModelMismatchError``)."""

    def __init__(self, store: Store | str | os.PathLike, *, encoder=None, model=None, adapter=None, device=None,
                 prompts: str | os.PathLike = "fr"):  # fmt: skip
        self.store = store if isinstance(store, Store) else open_store(store, must_exist=True)
        self.prompt_spec = prompts
        self.prompts = Path(str(prompts)).stem if str(prompts).endswith((".yaml", ".yml")) else str(prompts)
        self._encoder, self._model, self._adapter, self._device = encoder, model, adapter, device
        self._named = encoder is not None or model is not None or adapter is not None
        self._checked = False
        self.lock = threading.RLock()  # a model forward is not shared between threads

    @classmethod
    def open(cls, path: str | os.PathLike, *, model=None, adapter=None, device=None, encoder=None,
             prompts: str | os.PathLike = "fr") -> "Survey":  # fmt: skip
        """The store at ``path`` (``StoreError`` when there is none)."""
        return cls(open_store(path, must_exist=True), encoder=encoder, model=model, adapter=adapter, device=device,
                   prompts=prompts)  # fmt: skip

    @property
    def path(self) -> Path:
        return self.store.path

    def __repr__(self) -> str:
        return f"Survey({str(self.path)!r}, prompts={self.prompts!r})"

    @property
    def encoder(self):
        """The query model: loaded once, checked against the store's fingerprint once."""
        from .encoder import encoder_for_store

        with self.lock:
            if self._encoder is None:
                self._encoder = encoder_for_store(self.store.meta(), self._model, self._adapter, device=self._device)
            if not self._checked:
                self.store.check_model(self._encoder.fingerprint, "query")
                self._checked = True
        return self._encoder

    # -- search -------------------------------------------------------------

    def search(self, text: str | None = None, *, like: str | os.PathLike | None = None, image=None, k: int = 10,
               cone: Cone | Sequence | None = None) -> Results:  # fmt: skip
        """The ``k`` sources nearest to exactly one of ``text``, ``like`` (a source id or
        name in the store; a file path is taken as ``image``) or ``image`` (a FITS/PNG/JPEG
        path, or a 2-D array in display order: row 0 north), best first, within ``cone``
        (a :class:`~.search.Cone`, ``(ra, dec, radius_arcsec)`` numbers, or strings as
        typed: ``("12:56:47", "+12:36:00", "10arcmin")``). A source named by ``like``
        comes first with score 1."""
        if sum(x is not None for x in (text, like, image)) != 1:
            raise ValueError("give exactly one of text=, like= or image=")
        cone = as_cone(cone)
        vector = self._query_vector(text, like, image)
        return self.labelled(nearest(self.store, vector, k, cone))

    def _query_vector(self, text, like, image) -> np.ndarray:
        if like is not None:
            vector = stored_vector(self.store, str(like))
            if vector is not None:
                if self._named:
                    self.encoder  # noqa: B018 - a model the caller names must be the store's
                return vector
            if isinstance(like, np.ndarray) or not Path(like).is_file():
                raise StoreError(f"{like!r} is neither a source id or name in {self.path} nor an image file")
            image = like
        if image is not None:
            pixels = model_input(image)  # a bad file fails before the model loads
            encoder = self.encoder
            with self.lock:
                return encoder.images(pixels[None])[0]
        encoder = self.encoder
        with self.lock:
            return encoder.texts([text])[0]

    def within(self, cone: Cone | Sequence, *, limit: int = CONE_LIMIT, columns: Sequence[str] = ("name",),
               labels: bool = True) -> Results:  # fmt: skip
        """Every source within ``cone`` (no query: by position alone), nearest first (then by
        id), with ``distance`` from its centre in degrees, at most ``limit`` of them; when
        there were more, ``results.infos["QUERY_STATUS"]`` is ``OVERFLOW`` (else ``OK``).
        ``columns`` are read besides ``id, ra, dec``; ``labels`` adds what :meth:`labelled`
        adds. The store's Dec band and RA window (:func:`.cone.cone_where`) are read in
        batches and the exact separation keeps those inside: memory bounded by ``limit``."""
        import heapq

        from .cone import cone_where, separation_arcsec

        cone = as_cone(cone)
        wanted = list(dict.fromkeys(("id", "ra", "dec", *columns)))
        query = self.store.table(SOURCES).search().where(cone_where(cone)).select(wanted)
        kept: list[tuple[float, str, dict]] = []
        total = 0
        for batch in query.to_batches(batch_size=8192):
            rows = batch.to_pylist()
            if not rows:
                continue
            arcsec = separation_arcsec(cone.ra, cone.dec, [r["ra"] for r in rows], [r["dec"] for r in rows])
            inside = [(float(a) / 3600.0, r["id"], r) for a, r in zip(arcsec, rows) if a <= cone.radius_arcsec]
            total += len(inside)
            kept.extend(inside)
            if len(kept) > 4 * (limit + 1):
                kept = heapq.nsmallest(limit + 1, kept, key=lambda t: t[:2])
        kept.sort(key=lambda t: t[:2])
        rows = [{**row, "distance": distance} for distance, _, row in kept[:limit]]
        status = {"QUERY_STATUS": "OVERFLOW" if total > limit else "OK"}
        if not labels:
            return Results(rows, columns=[*wanted, "distance"], infos={**self._infos(), **status})
        found = self.labelled([])
        for start in range(0, len(rows), CHUNK):  # a chunk of ids per lookup
            found = self.labelled(rows[start : start + CHUNK])
        columns = [c for c in [*wanted, "distance", *found.columns] if c not in RESULT_FIELDS or c in wanted]
        return Results(rows, columns=list(dict.fromkeys(columns)), classes=found.classes,
                       infos={**found.infos, **status}, predicted=found.predicted)  # fmt: skip

    def labelled(self, rows: list[dict]) -> Results:
        """``rows`` with ``label``, ``probability`` and ``p_<class>`` (None where a source
        has no label) when the store holds labels of the survey's prompt set, then
        ``user_label`` and the stored predictions (``predicted``, ``prediction_set``,
        ``predicted_by``, ``cal_p_<class>``: :class:`~.labelling.Annotations`) when it has them."""
        from .labelling import Annotations
        from .zeroshot import labels_of

        labels = labels_of(self.store, [r["id"] for r in rows], self.prompts)
        classes = list(next(iter(labels.values()))["probabilities"]) if labels else label_classes(self.store, self.prompts)
        names = [votable.probability_column(c) for c in classes]
        for row in rows if classes else ():
            got = labels.get(row["id"])
            row["label"] = got["label"] if got else None
            row["probability"] = float(got["score"]) if got else None
            for cls, name in zip(classes, names):
                row[name] = got["probabilities"].get(cls) if got else None
        # the person's label and the stored predictions (``radioalign label``, ``classify --probe``)
        notes = Annotations.of(self.store)
        notes.annotate(self.store, rows)
        columns = [*RESULT_FIELDS, *((*LABEL_FIELDS, *names) if classes else ()), *notes.names()]
        return Results(rows, columns=columns, classes=classes, infos={**self._infos(), **notes.infos()}, predicted=notes.classes)

    def thumbnails(self, ids: Sequence[str]) -> list[np.ndarray | None]:
        """The stored thumbnails (150 x 150 ``uint8``, north up) of ``ids``, None where absent."""
        from .images import png_image

        found = {}
        for chunk in _chunks(list(ids)):
            for row in self.store.rows_where(in_list("id", chunk), ["id", "thumbnail"]):
                found[row["id"]] = png_image(row["thumbnail"]) if row["thumbnail"] else None
        return [found.get(i) for i in ids]

    def classify(self, prompts: str | os.PathLike | None = None):
        """Label every source zero-shot (:func:`~.zeroshot.classify`) with this survey's
        model; ``prompts`` defaults to the survey's prompt set."""
        from .zeroshot import classify

        encoder = self.encoder
        with self.lock:
            return classify(self.store, prompts or self.prompt_spec, encoder=encoder)

    # -- labelling (:mod:`.labelling`) ---------------------------------------

    def label(self, labels: dict[str, str], *, who: str | None = None) -> dict:
        """Label sources (``{id or name: class}``): ``{"added", "replaced"}``."""
        from .labelling import add_labels

        return add_labels(self.store, labels, who=who)

    def unlabel(self, keys: Sequence[str]) -> dict:
        """Remove the user labels of sources (ids or names): ``{"removed", "not_labelled"}``."""
        from .labelling import remove_labels

        return remove_labels(self.store, keys)

    def import_labels(self, path: str | os.PathLike, **options):
        """Label sources from a table file (:func:`~.labelling.import_labels`)."""
        from .labelling import import_labels

        return import_labels(self.store, path, **options)

    def user_labels(self, *, details: bool = False) -> dict:
        """Every user label: ``{id: class}`` (with ``details``, who, origin and when too)."""
        from .labelling import user_labels

        return user_labels(self.store, details=details)

    def prior(self):
        """The zero-shot :class:`~.labelling.Prior` of the survey's prompt set under its model
        (loaded once; the probe's prior and its fallback)."""
        from .labelling import zero_shot_prior

        encoder = self.encoder
        with self.lock:
            if getattr(self, "_prior", None) is None:
                self._prior = zero_shot_prior(self.store, self.prompt_spec, encoder=encoder)
            return self._prior

    def classify_probe(self, *, model: str = "probe", alpha: float = 0.1, abstain: bool = False, prior: bool = True,
                       **options):  # fmt: skip
        """Train the probe on the user labels (``model="zeroshot"``: calibrate zero-shot) and
        store every source's prediction and conformal set (:func:`~.labelling.classify_probe`);
        ``prior=False`` trains on the labels alone, with no model loaded."""
        from .labelling import classify_probe

        return classify_probe(self.store, self.prior() if prior else None, model=model, alpha=alpha, abstain=abstain, **options)

    def suggest(self, n: int = 20, *, text: str | None = None, prior: bool = True, kind: str = "margin") -> Results:
        """The ``n`` unlabelled sources worth labelling next (:func:`~.labelling.suggest`),
        ranked by the probe's uncertainty, or by closeness to ``text`` before any label:
        ``id, name, ra, dec``, ``priority`` (the uncertainty, or the cosine to ``text``),
        ``by`` (``margin``, ``entropy`` or ``query``), ``best`` (the most probable class) and
        ``cal_p_<class>`` (None when ranked by the query)."""
        from .labelling import query_vector, suggest

        query = None
        if text is not None:
            encoder = self.encoder
            with self.lock:
                query = query_vector(self.store, text, encoder=encoder)
        found = suggest(self.store, n, query_vector=query, prior=self.prior() if prior else None, kind=kind)
        classes = list(found[0]["probabilities"] or {}) if found else []
        rows = [{"id": r["id"], "name": r["name"], "ra": _number(r["ra"]), "dec": _number(r["dec"]), "priority": r["score"],
                 "by": r["by"], "best": r["best"], **{votable.calibrated_column(c): (r["probabilities"] or {}).get(c) for c in classes}}
                for r in found]  # fmt: skip
        columns = ["id", "name", "ra", "dec", "priority", "by", "best", *(votable.calibrated_column(c) for c in classes)]
        return Results(rows, columns=columns, infos=self._infos(), predicted=classes)

    # -- the store ----------------------------------------------------------

    def info(self) -> dict:
        """What the store holds: counts (sources, errors, labels per prompt set), model,
        adapter and vector dimension, the vector index and whether every row is in it,
        the preprocessing recipe, size on disk and the first and last ingest times."""
        meta = self.store.meta()
        first, last = _time_range(self.store)
        return {
            "store": str(self.path), "sources": self.store.count(SOURCES), "errors": self.store.count(ERRORS),
            "labels": _label_counts(self.store), "model": meta.get("model"), "adapter": meta.get("adapter") or None,
            "fingerprint": meta.get("fingerprint"), "dim": int(meta["dim"]) if meta.get("dim") else None,
            "model_input": meta.get("model_input"), "index": index_state(self.store), "recipe": meta.get("recipe"),
            "created": meta.get("created"), "size_bytes": disk_size(self.path), "first_ingest": first, "last_ingest": last,
        }  # fmt: skip

    def errors(self) -> Results:
        """One row per input that failed: ``path`` (or catalogue#name), ``reason``, ``when``."""
        rows = [{"path": r["source"], "reason": r["reason"], "when": _iso(r["created_at"])}
                for batch in self.store.scan(["source", "reason", "created_at"], table=ERRORS) for r in batch.to_pylist()]  # fmt: skip
        return Results(sorted(rows, key=lambda r: (r["when"] or "", r["path"] or "")), columns=ERROR_FIELDS)

    def sources(self, *, vectors: bool = False) -> Results:
        """Every source once, as :meth:`export` writes it, in memory (for a small store;
        :meth:`export` streams a large one)."""
        snap = Snapshot(self.store, self.prompts)
        rows = [{k: _iso(v) for k, v in row.items()} for batch in snap.batches(vectors) for row in batch.to_pylist()]
        return Results(rows, columns=snap.schema(vectors).names, classes=snap.classes, infos=self._infos())

    def export(self, out: str | os.PathLike, format: str | None = None, *, vectors: bool = False,
               batch_size: int = BATCH_SIZE) -> int:  # fmt: skip
        """Write every source once to ``out``: ``id, name, ra, dec, source`` (the last path
        seen), ``created_at``, ``flags``, ``preprocessing``, and ``label, probability,
        p_<class>`` when classified; ``vectors`` adds the embedding (Parquet and FITS
        only). ``format`` (votable, csv, parquet, fits) defaults to ``out``'s suffix.
        Streams in batches of ``batch_size``; the file appears whole or not at all.
        Returns the number of sources written."""
        out = Path(out)
        format = format or SUFFIXES.get(out.suffix.lower())
        if format not in EXPORT_FORMATS:
            raise ValueError(f"export format {format!r}: choose one of {', '.join(EXPORT_FORMATS)} (or name the file .xml/.csv/.parquet/.fits)")
        if vectors and format in ("csv", "votable"):
            raise ValueError(f"--vectors: {format} holds one value per cell; export the vectors as parquet or fits")
        snap = Snapshot(self.store, self.prompts)
        part = out.with_name(f".{out.name}.part")
        part.unlink(missing_ok=True)
        try:
            n = WRITERS[format](part, snap, vectors, batch_size, {**self._infos(), **snap.notes.infos()})
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
        return n

    def delete(self, ids: Sequence[str] = (), where_name: str | None = None, errors: bool = False) -> int:
        """Remove the sources ``ids`` and those whose name matches the glob ``where_name``
        (``fnmatch``, case-sensitive), with their zero-shot and user labels, predictions and ``files``
        rows; with ``errors``, clear the errors table. Returns how many rows went
        (sources plus errors). The ``files`` rows go too, so a later ``radioalign
        ingest`` of the same folder adds a deleted source again if its file is still
        there (delete the file, or ingest elsewhere, to keep it out)."""
        with self.store.writing():
            targets = _existing(self.store, list(dict.fromkeys(ids)))
            if where_name is not None:
                targets |= _named_like(self.store, where_name)
            for chunk in _chunks(sorted(targets)):
                where = in_list("id", chunk)
                for name in (SOURCES, LABELS, FILES):
                    if self.store.has(name):
                        self.store.table(name).delete(where)
            from .labelling import forget  # (scikit-learn: imported when a command needs it)

            forget(self.store, sorted(targets))  # the people's labels and the predictions go too
            cleared = self.store.clear_errors() if errors else 0
        return len(targets) + cleared

    def _infos(self) -> dict[str, str]:
        meta = self.store.meta()
        infos = {"model": meta.get("model") or "", "adapter": meta.get("adapter") or "none", "prompts": self.prompts}
        return {k: v for k, v in infos.items() if v}


# ---------------------------------------------------------------------------
# Helpers


def as_cone(cone) -> Cone | None:
    """A :class:`Cone` from a Cone, ``(ra, dec, radius_arcsec)`` numbers, or strings as
    typed (sexagesimal positions, radii with units: :mod:`.sky`)."""
    from .sky import parse_position, parse_radius

    if cone is None or isinstance(cone, Cone):
        return cone
    if len(cone) != 3:
        raise ValueError(f"a cone is (ra, dec, radius), not {cone!r}")
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in cone):
        return Cone(*(float(v) for v in cone))
    return Cone(*parse_position(cone[0], cone[1]), parse_radius(cone[2]))


def model_input(image) -> np.ndarray:
    """The ``(150, 150)`` ``uint8`` model input of a file path, or of a 2-D array in display
    order (row 0 north, as a PNG), preprocessed as at ingest."""
    from .images import Picture, model_image

    if not isinstance(image, np.ndarray):
        return file_image(image)
    if image.ndim != 2:
        raise ValueError(f"an image array must be 2-D (rows, columns), not of shape {image.shape}")
    try:
        return model_image(Picture(data=np.asarray(image, dtype=np.float64)))[0]
    except ValueError as err:
        raise ValueError(f"the image array cannot become model input: {' '.join(str(err).split())[:200]}") from err


def _number(value) -> float | None:
    return None if value is None else float(value)


def _chunks(values: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _existing(store: Store, ids: list[str]) -> set[str]:
    return {i for chunk in _chunks(ids) for i in store.existing_ids(chunk, (SOURCES,))}


def _named_like(store: Store, pattern: str) -> set[str]:
    return {r["id"] for batch in store.scan(["id", "name"], 65536) for r in batch.to_pylist()
            if r["name"] is not None and fnmatch.fnmatchcase(r["name"], pattern)}  # fmt: skip


def _label_counts(store: Store) -> dict[str, int]:
    import pyarrow.compute as pc

    counts: dict[str, int] = {}
    for batch in store.scan(["prompts"], 65536, table=LABELS):
        for item in pc.value_counts(batch.column("prompts")).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    return counts


def _time_range(store: Store) -> tuple[str | None, str | None]:
    import pyarrow.compute as pc

    lo = hi = None
    for batch in store.scan(["created_at"], 65536):
        got = pc.min_max(batch.column("created_at")).as_py()
        if got["min"] is not None:
            lo = got["min"] if lo is None else min(lo, got["min"])
            hi = got["max"] if hi is None else max(hi, got["max"])
    return _iso(lo), _iso(hi)


def _classes_of(labels_table, prompts: str) -> list[str]:
    query = labels_table.search().where(f"prompts = {quote(prompts)}").select(["probabilities"]).limit(1)
    column = query.to_arrow().column("probabilities")
    return list(json.loads(column[0].as_py())) if len(column) else []


def label_classes(store: Store, prompts: str) -> list[str]:
    """The classes of the store's labels from prompt set ``prompts`` ([] if none)."""
    return _classes_of(store.table(LABELS), prompts) if store.has(LABELS) else []


def index_state(store: Store) -> dict:
    """The search index (:func:`.ann.saved_state`: ``kind``, ``unindexed_rows``,
    ``up_to_date``) and, as ``lancedb_index``, LanceDB's own vector index (``ivf_pq``,
    kept for readers of the store alone) or None."""
    from . import ann

    state, lance = ann.saved_state(store), None
    if store.has(SOURCES):
        for index in store.table(SOURCES).list_indices():
            if "vector" in index.columns:
                lance = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", index.index_type).lower()
    return {**state, "lancedb_index": lance}


def disk_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class Snapshot:
    """One committed version of a store's sources and labels, read page by page (``offset``
    and ``limit`` on the pinned version: each read holds one page, where a plain scan
    reads far ahead) with the zero-shot labels of ``prompts`` joined from a
    :class:`LabelIndex`."""

    def __init__(self, store: Store, prompts: str):
        from .labelling import Annotations

        self.sources = _pinned(store, SOURCES)
        self.labels = _pinned(store, LABELS) if store.has(LABELS) else None
        self.prompts = prompts
        self.n = self.sources.count_rows()
        self.classes = _classes_of(self.labels, prompts) if self.labels is not None else []
        self.vector_field = self.sources.schema.field("vector")
        self.notes = Annotations.of(store)  # user labels and stored predictions (.labelling)
        self._annotations = None
        self._store = store

    @property
    def annotations(self):
        """The user labels and predictions of every source (an :class:`~.labelling.AnnotationIndex`),
        read once, on first use, from the versions committed then."""
        from .labelling import PREDICTIONS, USER_LABELS, AnnotationIndex

        def pages(name: str, columns: list[str]):
            if not self._store.has(name):
                return ()
            table = _pinned(self._store, name)
            return paged(table, columns, table.count_rows(), BATCH_SIZE)

        if self._annotations is None:
            predictions = pages(PREDICTIONS, ["id", "model", "predicted", "prediction_set", "probabilities"]) if self.notes.model else ()
            self._annotations = AnnotationIndex(self.notes, pages(USER_LABELS, ["id", "class"]), predictions)
        return self._annotations

    def schema(self, vectors: bool = False):
        import pyarrow as pa

        fields = [self.sources.schema.field(c) for c in SOURCE_COLUMNS]
        if self.classes:
            fields += [pa.field("label", pa.string()), pa.field("probability", pa.float64())]
            fields += [pa.field(votable.probability_column(c), pa.float64()) for c in self.classes]
        fields += self.notes.fields()
        return pa.schema(fields + ([self.vector_field] if vectors else []))

    def pages(self, columns: Sequence[str], batch_size: int = BATCH_SIZE):
        """Record batches of ``columns`` of the sources, ``batch_size`` rows at a time."""
        yield from paged(self.sources, columns, self.n, batch_size)

    def batches(self, vectors: bool = False, batch_size: int = BATCH_SIZE):
        """Record batches of :meth:`schema`: the sources with their labels."""
        import pyarrow as pa

        schema = self.schema(vectors)
        labels = LabelIndex(self.labels, self.prompts, self.classes) if self.classes else None
        if vectors:  # a page's vectors in about PAGE_BYTES: LanceDB's reads grow with the page
            batch_size = min(batch_size, max(256, PAGE_BYTES // (4 * self.vector_field.type.list_size)))
        for batch in self.pages(list(SOURCE_COLUMNS) + (["vector"] if vectors else []), batch_size):
            arrays = [batch.column(c) for c in SOURCE_COLUMNS]
            if labels is not None:
                arrays += labels.columns(batch.column("id").to_pylist())
            if self.notes.names():
                arrays += self.annotations.columns(batch.column("id").to_pylist())
            if vectors:
                arrays.append(batch.column("vector"))
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)


class LabelIndex:
    """The labels of one prompt set in numpy arrays sorted by id (about 30 bytes per
    source with two classes: 10^6 labels take some 30 MB), looked up by binary search."""

    def __init__(self, table, prompts: str, classes: Sequence[str]):
        import pyarrow.compute as pc

        self.classes = list(classes)
        ids, labels, scores, probs = [], [], [], []
        columns = ["id", "prompts", "label", "score", "probabilities"]
        for batch in paged(table, columns, table.count_rows(), BATCH_SIZE):
            batch = batch.filter(pc.equal(batch.column("prompts"), prompts))
            ids.append(_id_bytes(batch.column("id").to_pylist()))
            labels.append(np.array([self._index(v) for v in batch.column("label").to_pylist()], np.int16))
            scores.append(batch.column("score").to_numpy(zero_copy_only=False).astype(np.float32))
            p = [json.loads(v) for v in batch.column("probabilities").to_pylist()]
            probs.append(np.array([[row.get(c, np.nan) for c in self.classes] for row in p], np.float64).reshape(-1, len(self.classes)))
        if not ids:
            self.ids = np.array([], "S1")
            return
        order = np.argsort(np.concatenate(ids), kind="stable")
        self.ids = np.concatenate(ids)[order]
        self.labels, self.scores, self.probs = (np.concatenate(x)[order] for x in (labels, scores, probs))

    def _index(self, label) -> int:
        return self.classes.index(label) if label in self.classes else -1

    def columns(self, ids: list[str]) -> list:
        """``label``, ``probability`` and a ``p_<class>`` column per class for ``ids`` (null
        where a source has no label)."""
        import pyarrow as pa

        if not len(self.ids):
            return [pa.nulls(len(ids), pa.string())] + [pa.nulls(len(ids), pa.float64())] * (1 + len(self.classes))
        wanted = _id_bytes(ids)
        pos = np.minimum(np.searchsorted(self.ids, wanted), len(self.ids) - 1)
        hit = self.ids[pos] == wanted
        names = np.array([*self.classes, None], dtype=object)  # label -1 (not a class of the set): None
        columns = [pa.array(np.where(hit, names[self.labels[pos]], None), pa.string())]
        for values in (self.scores[pos], *(self.probs[pos, c] for c in range(len(self.classes)))):
            values = values.astype(np.float64)
            columns.append(pa.array(values, mask=~hit | np.isnan(values)))
        return columns


def paged(table, columns: Sequence[str], n: int, rows: int):
    """The first ``n`` rows of ``table`` (a pinned version), ``rows`` at a time, as record
    batches: one ``offset``/``limit`` read each, which holds that page alone."""
    for offset in range(0, n, rows):
        page = table.search().select(list(columns)).offset(offset).limit(rows).to_arrow()
        yield from page.combine_chunks().to_batches()


def _id_bytes(ids: Sequence[str]) -> np.ndarray:
    return np.array([i.encode("utf-8") for i in ids], dtype="S") if len(ids) else np.array([], "S1")


def _pinned(store: Store, name: str):
    """A handle on table ``name`` fixed at its current version (later writes unseen)."""
    table = store.db.open_table(name)
    table.checkout(table.version)
    return table


# ---------------------------------------------------------------------------
# Writers: (path, snapshot, vectors, batch_size, infos) -> rows written


def _described(schema, classes: Sequence[str], infos: dict[str, str], predicted: Sequence[str] = ()):
    """``schema`` with each column's UCD, unit and description as Arrow field metadata."""
    import pyarrow as pa

    known = votable.known_columns(classes, predicted)
    fields = []
    for field in schema:
        ucd, unit, text = votable.column_meta(field.name, known)
        meta = {k: v for k, v in (("ucd", ucd), ("unit", unit), ("description", text)) if v}
        fields.append(field.with_metadata(meta) if meta else field)
    return pa.schema(fields, metadata={"radioalign": json.dumps(infos)})


def _write_parquet(path: Path, snap: Snapshot, vectors: bool, batch_size: int, infos: dict) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _described(snap.schema(vectors), snap.classes, infos, snap.notes.classes)
    n, group = 0, []
    with pq.ParquetWriter(str(path), schema) as writer:
        for batch in snap.batches(vectors, batch_size):
            group.append(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
            n += batch.num_rows
            if sum(b.num_rows for b in group) >= batch_size or sum(b.nbytes for b in group) >= ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_batches(group, schema), row_group_size=1 << 30)  # one row group
                group = []
        if group:
            writer.write_table(pa.Table.from_batches(group, schema), row_group_size=1 << 30)
    return n


def _text_times(batch):
    """``batch`` with ``created_at`` as ISO 8601 text (``2026-01-02T03:04:05.123456Z``)."""
    import pyarrow.compute as pc

    i = batch.schema.get_field_index("created_at")
    text = pc.strftime(batch.column(i), format="%Y-%m-%dT%H:%M:%SZ")
    return batch.set_column(i, "created_at", text)


def _write_csv(path: Path, snap: Snapshot, vectors: bool, batch_size: int, infos: dict) -> int:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    n = 0
    with pa.OSFile(str(path), "wb") as sink:
        sink.write((",".join(snap.schema().names) + "\n").encode())
        writer = None
        for batch in snap.batches(False, batch_size):
            batch = _text_times(batch)
            writer = writer or pcsv.CSVWriter(sink, batch.schema, write_options=pcsv.WriteOptions(include_header=False))
            writer.write_batch(batch)
            n += batch.num_rows
        if writer is not None:
            writer.close()
    return n


def _write_votable(path: Path, snap: Snapshot, vectors: bool, batch_size: int, infos: dict) -> int:
    template = Results([], columns=snap.schema().names, classes=snap.classes, predicted=snap.notes.classes).to_table()
    head, tail = votable.votable_parts(template, infos=infos)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(head)
        for batch in snap.batches(False, batch_size):
            f.write(votable.tabledata([column.to_pylist() for column in _text_times(batch).columns]))
            n += batch.num_rows
        f.write(tail)
    return n


def _ascii(value) -> bytes:
    return b"" if value is None else str(value).encode("ascii", "backslashreplace")  # FITS text is ASCII


def _text_widths(snap: Snapshot, names: Sequence[str]) -> dict[str, int]:
    """The longest value (ASCII bytes) of each text column of the sources (a first pass)."""
    import pyarrow.compute as pc

    widths = dict.fromkeys(names, 1)
    for batch in snap.pages([n for n in names if n in SOURCE_COLUMNS and n != "created_at"], 65536):
        for name in batch.schema.names:
            column = batch.column(name)
            if column.null_count == len(column):
                continue
            if pc.all(pc.string_is_ascii(column)).as_py() is not False:
                longest = pc.max(pc.binary_length(column)).as_py() or 0
            else:
                longest = max(len(_ascii(v)) for v in column.to_pylist())
            widths[name] = max(widths[name], longest)
    widths["created_at"] = len("2026-01-02T03:04:05.123456Z")
    if "label" in widths:
        widths["label"] = max(1, *(len(_ascii(c)) for c in snap.classes))
    if snap.notes.names():
        widths.update(snap.annotations.widths())
    return widths


def _fits_layout(snap: Snapshot, vectors: bool):
    """The rows' numpy dtype (big-endian, as FITS stores them) and the table's header."""
    import pyarrow as pa
    from astropy.io import fits

    schema = snap.schema(vectors)
    text = [f.name for f in schema if pa.types.is_string(f.type) or f.name == "created_at"]
    widths = _text_widths(snap, text)
    known = votable.known_columns(snap.classes, snap.notes.classes)
    dtype, columns = [], []
    for field in schema:
        unit = votable.column_meta(field.name, known)[1]
        if field.name in widths:
            dtype.append((field.name, f"S{widths[field.name]}"))
            columns.append(fits.Column(name=field.name, format=f"{widths[field.name]}A"))
        elif field.name == "vector":
            dim = field.type.list_size
            dtype.append((field.name, ">f4", (dim,)))
            columns.append(fits.Column(name=field.name, format=f"{dim}E"))
        else:
            dtype.append((field.name, ">f8"))
            columns.append(fits.Column(name=field.name, format="D", unit=unit))
    header = fits.BinTableHDU.from_columns(columns, nrows=0, name="SOURCES").header
    header["NAXIS2"] = snap.n
    for i, field in enumerate(schema, start=1):
        room = min(47, 65 - max(8, len(field.name)))  # the card's 80 characters: keyword, quoted name, " / "
        header.comments[f"TTYPE{i}"] = (votable.column_meta(field.name, known)[2] or field.name)[:room]
    return np.dtype(dtype), header


def _fits_rows(batch, dtype: np.dtype) -> np.ndarray:
    rows = np.zeros(batch.num_rows, dtype)
    for name in dtype.names:
        column = batch.column(name)
        if name == "vector":
            rows[name] = column.flatten().to_numpy().reshape(batch.num_rows, -1)
        elif dtype[name].kind == "S":
            rows[name] = [_ascii(v) for v in column.to_pylist()]
        else:
            rows[name] = column.to_numpy(zero_copy_only=False)  # nulls are NaN
    return rows


def _write_fits(path: Path, snap: Snapshot, vectors: bool, batch_size: int, infos: dict) -> int:
    """A FITS binary table (extension SOURCES), streamed: the header says how many rows
    (the snapshot's count) and how wide each text column is (a first pass), then the rows
    are appended batch by batch (``astropy.io.fits.StreamingHDU``)."""
    from astropy.io import fits

    dtype, header = _fits_layout(snap, vectors)
    for key, value in infos.items():
        header.add_comment(str(_ascii(f"radioalign {key}: {value}"), "ascii"))
    n = 0
    with fits.StreamingHDU(str(path), header) as hdu:
        for batch in snap.batches(vectors, batch_size):
            hdu.write(_fits_rows(_text_times(batch), dtype).view(np.uint8))
            n += batch.num_rows
    if n != snap.n:
        raise StoreError(f"the store changed while it was exported ({n} rows read, {snap.n} expected)")
    return n


WRITERS = {"parquet": _write_parquet, "csv": _write_csv, "votable": _write_votable, "fits": _write_fits}
