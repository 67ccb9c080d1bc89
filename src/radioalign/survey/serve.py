"""The search page: ``radioalign serve --store PATH`` (FastAPI, one static HTML page).

The page (``static/index.html`` with plain JavaScript and CSS, nothing from a CDN, so it
works offline) asks the JSON API below and shows a grid of thumbnails with name, RA/Dec
(degrees and sexagesimal), score and zero-shot label, each with "more like this" and
plain links to Aladin Lite, SIMBAD, NED and the Legacy Survey viewer at its position.
Its state (the query, cone and k) lives in its URL, so a reload, a shared link or the
back button shows the same results.

``GET  /api/search?text=...&k=10``        text -> image search
``GET  /api/search?like=ID|NAME&k=10``     the neighbours of a stored source (itself first)
``POST /api/search`` (multipart ``image``) the neighbours of an uploaded FITS/PNG/JPEG; the
                                          answer's ``X-Radioalign-Upload`` header is a token
``GET  /api/search?upload=TOKEN&k=10``     the same upload again (while the server holds it)
``GET  /api/results.csv?<query>``         the results of a GET query as CSV
``GET  /api/results.vot?<query>``         ... as a VOTable with UCDs (``votable.py``)
``GET  /api/thumb/{id}``                  the source's thumbnail (PNG bytes from the store)
``GET  /api/info``                        the store: sources, model, prompt set, HiPS
``GET  /scs?RA=..&DEC=..&SR=..``          IVOA Simple Cone Search 1.03 (see :func:`cone_search`)

The labelling mode (``static/app.js``: one key or click per class, undo, a live count):

``GET  /api/labelling``                   the classes offered (the prompt set's first), the
                                          labels per class and the probe's status
``GET  /api/suggest?n=12[&text=...]``     the sources worth labelling next (:meth:`.api.Survey.suggest`)
``POST /api/labels`` (JSON)               ``{"labels": {id: class or null}, "train": bool}``:
                                          label (null: unlabel, the page's undo), then with
                                          ``train`` retrain the probe in the background
``GET  /api/probe``, ``POST /api/probe``  the probe's status (cross-validated F1, coverage ...);
                                          POST retrains it (:class:`.labelling.BackgroundProbe`)

Every search also takes a cone: ``ra``, ``dec`` in degrees or sexagesimal
(``12:34:56.7``, ``+12d34m56s``; ``frame=galactic`` for l, b) and ``radius`` in arcsec
or with a unit (``10arcmin``, ``0.1deg``).
A result is the record of ``radioalign search`` (``id, name, ra, dec, score, source``,
then ``label``, ``probability`` and ``p_<class>`` when the store's sources were labelled
with the page's prompt set, and ``user_label``, ``predicted``, ``prediction_set``,
``predicted_by`` and ``cal_p_<class>`` once people labelled sources and the probe ran):
the page calls the same :class:`~.api.Survey` as the command line, so its CSV and
VOTable exports are what ``radioalign search --format csv|votable`` writes.

The page talks to the Virtual Observatory through SAMP: "Send to TOPCAT/Aladin"
broadcasts ``table.load.votable`` with the URL of ``/api/results.vot`` for the current
query, and a click on a result ``coord.pointAt.sky``, through the SAMP Web Profile hub
that TOPCAT or Aladin runs at ``http://localhost:21012/`` (``static/vendor/samp.js``, the
astrojs sampjs client, vendored). The page contacts that hub only when asked to.

The model is loaded once, at start-up, and must be the store's own (its fingerprint is
checked then, as by every other subcommand).

Uploads are hostile until read: they stream into memory under caps on the bytes sent,
the bytes a gzip file inflates to and the pixels declared (``uploads.py``; 413 past
any of them). Every error body's ``detail`` is a fixed sentence chosen here: never a
server path, the store's path or an exception's text (those go to the server's log).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and Request is imported inside create_app.
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .search import Cone, nearest, stored_vector
from .store import SOURCES, Store, StoreError, open_store, quote
from .uploads import Refused, model_input, read_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_K = 200
QUERY_FIELDS = ("text", "like", "upload", "k", "ra", "dec", "radius", "frame", "n")
MAX_LABELS_BODY = 1 << 20  # bytes of one POST /api/labels (some 20,000 labels)
SERVER_FAILED = "the server could not answer this query (its log says why)"
STORE_FAILED = "the store cannot answer this query (the server's log says why)"
UPLOAD_GONE = "the server no longer holds that uploaded image: upload it again"
UPLOAD_HEADER = "X-Radioalign-Upload"
MAX_UPLOADS_HELD = 256  # query vectors of recent uploads, for export and shared links (3 KB each)
DEFAULT_HIPS = "CDS/P/NVSS"  # the NRAO VLA Sky Survey at 1.4 GHz, the whole sky north of -40 deg
_HIPS_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+/-]{0,127}")
SCS_MAXREC = 10_000  # rows a cone search returns at most (QUERY_STATUS OVERFLOW past it)
SCS_MAX_SR = 180.0  # degrees: the whole sky
_LABEL_CHUNK = 1000  # ids per labels lookup


class QueryError(Refused):
    """A query the page cannot answer (an unknown source, an empty text ...): 400, with
    a fixed sentence for the client."""


class NotJSON(Refused):
    """A body that should be JSON and is sent as something else: 415."""

    status = 415


def check_hips(hips: str | None) -> str:
    """A HiPS survey id as the CDS names them (``CDS/P/NVSS``, ``CDS/P/DSS2/color``);
    ``DEFAULT_HIPS`` for None. It goes into the Aladin Lite links only."""
    hips = DEFAULT_HIPS if hips is None else str(hips).strip()
    if not _HIPS_ID.fullmatch(hips):
        raise ValueError(f"{hips!r} is not a HiPS id (letters, digits and _ . + - /, e.g. {DEFAULT_HIPS})")
    return hips


@dataclass
class SearchService:
    """The store, the loaded model, the prompt set whose labels results carry and the
    HiPS survey the page's Aladin links show.

    Queries and labels go through :attr:`survey`, the :class:`~.api.Survey` that the
    command line uses, so the page and ``radioalign search``/``label``/``suggest`` give the
    same records. Model forwards go through its one lock (not shared between threads)."""

    store: Store
    encoder: object
    prompts: str = "fr"
    hips: str = DEFAULT_HIPS
    lock: threading.RLock = field(default=None, repr=False)
    uploads: OrderedDict = field(default_factory=OrderedDict, repr=False)
    alpha: float = 0.1  # the probe's conformal level on the labelling page

    def __post_init__(self):
        from .api import Survey
        from .labelling import BackgroundProbe

        self.store.check_model(self.encoder.fingerprint, "search page")
        self.hips = check_hips(self.hips)
        self.survey = Survey(self.store, encoder=self.encoder, prompts=self.prompts)
        self.lock = self.survey.lock
        self.probe = BackgroundProbe(self.store, self.prior, alpha=self.alpha)

    # -- queries ------------------------------------------------------------

    def text(self, text: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        if not text.strip():
            raise QueryError("an empty text query")
        return self.survey.search(text, k=k, cone=cone)

    def like(self, key: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        # Only a stored source: Survey.search(like=) would also read a file path, on the server's disk.
        if stored_vector(self.store, key) is None:
            raise QueryError("no source with that id or name in the store")
        return self.survey.search(like=key, k=k, cone=cone)

    def image(self, data: bytes | bytearray, filename: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        """The neighbours of an uploaded image (its bytes, in memory), read and
        preprocessed as at ingest within the upload caps (:func:`.uploads.model_input`)."""
        return self.upload(self.hold_upload(data, filename), k, cone)

    def hold_upload(self, data: bytes | bytearray, filename: str) -> str:
        """Embed an uploaded image and keep its query vector (the last
        ``MAX_UPLOADS_HELD``) under a token: a hash of the vector, so the same image
        gets the same token and no other is guessed from it."""
        image = model_input(data, filename)
        with self.lock:
            vector = np.asarray(self.encoder.images(image[None])[0], np.float32)
            token = hashlib.sha256(vector.tobytes()).hexdigest()[:32]
            self.uploads[token] = vector
            self.uploads.move_to_end(token)
            while len(self.uploads) > MAX_UPLOADS_HELD:
                self.uploads.popitem(last=False)
        return token

    def upload(self, token: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        """The neighbours of an upload the server holds (:meth:`hold_upload`)."""
        with self.lock:
            vector = self.uploads.get(token)
        if vector is None:
            raise QueryError(UPLOAD_GONE)
        return self.survey.labelled(nearest(self.store, vector, k, cone))

    def cone_sources(self, cone: Cone, limit: int = SCS_MAXREC, columns: Iterable[str] = ("name",)) -> tuple[list[dict], bool]:
        """Every source within ``cone``, nearest first, with ``distance`` in degrees: at
        most ``limit`` of them, and whether there were more (:meth:`.api.Survey.within`)."""
        rows = self.survey.within(cone, limit=limit, columns=tuple(columns), labels=False)
        return rows, rows.infos["QUERY_STATUS"] == "OVERFLOW"

    # -- what the page shows ------------------------------------------------

    def labelled(self, results: list[dict]) -> list[dict]:
        """``results`` with the columns :meth:`.api.Survey.labelled` adds (zero-shot
        ``label``, ``probability``, ``p_<class>``; user labels and predictions), in place,
        a chunk of ids at a time (a cone search holds up to ``SCS_MAXREC`` rows)."""
        for start in range(0, len(results), _LABEL_CHUNK):
            self.survey.labelled(results[start : start + _LABEL_CHUNK])
        return results

    def classes(self) -> list[str]:
        """The classes of the page's prompt set as the store's labels name them ([] when
        the store has not been labelled with it)."""
        from .api import label_classes

        return label_classes(self.store, self.prompts)

    # -- labelling ----------------------------------------------------------

    def prior(self):
        """The prompt set's zero-shot prior under the page's model, or None when the prompt
        set is not one this server can read (the probe then learns from the labels alone)."""
        try:
            return self.survey.prior()
        except (OSError, ValueError) as err:
            log.warning("labelling without a zero-shot prior: %s", err)
            return None

    def offered_classes(self) -> list[str]:
        """The classes the page offers: the prompt set's first, then the people's own."""
        from .labelling import user_labels
        from .zeroshot import load_prompts

        try:
            classes = list(load_prompts(self.survey.prompt_spec)[1])
        except (OSError, ValueError):
            classes = self.classes()
        return classes + sorted(set(user_labels(self.store).values()) - set(classes))

    def labelling(self) -> dict:
        """The labelling mode's state: the classes offered, the labels per class and the probe's status."""
        from collections import Counter

        from .labelling import user_labels

        counts = Counter(user_labels(self.store).values())
        return {"classes": self.offered_classes(), "counts": dict(sorted(counts.items())), "total": sum(counts.values()),
                "probe": self.probe.status()}  # fmt: skip

    def suggest(self, n: int, text: str | None = None) -> list[dict]:
        """The ``n`` sources worth labelling next (:meth:`.api.Survey.suggest`)."""
        from .labelling import LabellingError

        prior = self.prior() is not None
        try:
            return self.survey.suggest(n, text=text or None, prior=prior)
        except LabellingError:
            raise QueryError("nothing to rank the sources by yet: describe what you look for, or label a few sources") from None

    def label(self, labels: dict, train: bool = False) -> dict:
        """Label sources (``{id: class}``; a class of None removes the label: an undo), then,
        with ``train``, retrain the probe in the background. Returns :meth:`labelling`."""
        from .labelling import LabellingError

        if not isinstance(labels, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in labels.items()):
            raise QueryError("labels must be an object of source ids and class names")
        try:
            self.survey.label({k: v for k, v in labels.items() if v is not None})
            self.survey.unlabel([k for k, v in labels.items() if v is None])
        except LabellingError:
            raise QueryError("a source is not in the store, or a class is empty or holds '|'") from None
        if train:
            self.probe.request()
        return self.labelling()

    def thumbnail(self, source_id: str) -> bytes | None:
        rows = self.store.rows_where(f"id = {quote(source_id)}", ["thumbnail"], limit=1)
        return rows[0]["thumbnail"] if rows else None

    def info(self) -> dict:
        """What the page shows of the store: its folder's name, never its full path."""
        meta = self.store.meta()
        return {
            "store": self.store.path.name, "sources": self.store.count(SOURCES), "model": shown(meta.get("model")),
            "adapter": shown(meta.get("adapter")), "prompts": self.prompts, "indexed": self.store.has_vector_index(),
            "hips": self.hips,
        }  # fmt: skip


def shown(value: str | None) -> str | None:
    """A model or adapter as the page may show it: a hub id as is, a folder by its name."""
    return (Path(value).name if os.path.isabs(value) else value) if value else None


def parse_cone(ra: str | None, dec: str | None, radius: str | None, frame: str = "icrs") -> Cone | None:
    """A cone from the query's ``ra``, ``dec`` (degrees or sexagesimal, as typed) and
    ``radius`` (arcsec, or with a unit: ``10arcmin``); all three, or none."""
    from .sky import parse_position, parse_radius

    given = [v is not None and str(v).strip() != "" for v in (ra, dec, radius)]
    if not any(given):
        return None
    if not all(given):
        raise QueryError("a cone needs ra, dec and radius (arcsec)")
    try:
        return Cone(*parse_position(ra, dec, frame), parse_radius(radius))
    except ValueError as err:  # the parser's own sentence: the values given, nothing else
        raise QueryError(" ".join(str(err).split())[:200]) from None


def form_query(fields: dict[str, str]) -> tuple[int, Cone | None]:
    """``k`` and the cone of an upload form's text fields, checked as the GET query's are."""
    try:
        k = int(fields.get("k") or 10)
    except ValueError:
        raise QueryError("k must be an integer") from None
    if not 1 <= k <= MAX_K:
        raise QueryError(f"k must lie between 1 and {MAX_K}")
    return k, parse_cone(*(fields.get(n) for n in ("ra", "dec", "radius")), fields.get("frame") or "icrs")


def run_query(service: SearchService, query: dict) -> list[dict]:
    """The results of a GET query (``search_params`` in :func:`add_search_routes`)."""
    if query["text"] is not None:
        return service.text(query["text"], query["k"], query["cone"])
    if query["like"] is not None:
        return service.like(query["like"], query["k"], query["cone"])
    return service.upload(query["upload"], query["k"], query["cone"])


# ---------------------------------------------------------------------------
# Tables: CSV, VOTable (results), Simple Cone Search

_FLOAT_COLUMNS = {"ra", "dec", "score", "probability", "distance"}


def _text(value) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, _dt.datetime) else str(value)


def result_table(rows: list[dict], columns: list[str], classes: Iterable[str] = ()):
    """``rows`` as an ``astropy.table.Table`` of ``columns`` with the UCDs, units and
    descriptions of :mod:`.votable` (numbers as float64 with NaN for none; text as
    variable-length strings, empty for none)."""
    from astropy.table import Column, Table

    from .votable import PROBABILITY_PREFIX, describe

    made = []
    for name in columns:
        values = [r.get(name) for r in rows]
        if name in _FLOAT_COLUMNS or name.startswith(PROBABILITY_PREFIX):
            made.append(Column(np.array([np.nan if v is None else float(v) for v in values], np.float64), name=name))
        else:
            column = Column(np.array([_text(v) for v in values], dtype=str), name=name)
            column.meta["_votable_arraysize"] = "*"  # variable length, also for an empty table
            made.append(column)
    return describe(Table(made), classes)


def results_csv(results: list[dict]) -> str:
    """Results as ``radioalign search --format csv`` writes them (:meth:`.api.Results.to_csv`)."""
    from .api import Results

    return (results if isinstance(results, Results) else Results(results)).to_csv()


def results_votable(results: list[dict], query: str = "") -> bytes:
    """Results as ``radioalign search --format votable`` writes them (UCDs, units), with
    ``query`` (the URL's query string) in an ``INFO``."""
    from .api import Results
    from .votable import votable_bytes

    results = results if isinstance(results, Results) else Results(results)
    infos = {"QUERY_STATUS": "OK", **results.infos, **({"QUERY": query[:1000]} if query else {})}
    return votable_bytes(results.to_table(), infos=infos)


def scs_columns(verb: int, classes: list[str]) -> list[str]:
    """The cone search's columns: VERB=1 id, ra, dec, distance; VERB=2 (the default) also
    name, label and probability (when labelled); VERB=3 also each class's probability,
    the source's path and its ingest time."""
    from .votable import probability_column

    if verb == 1:
        return ["id", "ra", "dec", "distance"]
    columns = ["id", "name", "ra", "dec", "distance", *(("label", "probability") if classes else ())]
    if verb == 3:
        columns += [probability_column(c) for c in classes] + ["source", "created_at"]
    return columns


def _scs_number(params: dict[str, str], name: str, low: float, high: float) -> float:
    try:
        value = float(params[name])
    except ValueError:
        raise QueryError(f"{name} must be a number of decimal degrees") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise QueryError(f"{name} must lie in [{low:g}, {high:g}] decimal degrees")
    return value


def scs_query(items: Iterable[tuple[str, str]]) -> tuple[float, float, float, int, int]:
    """``RA``, ``DEC``, ``SR`` (decimal degrees), ``VERB`` and ``MAXREC`` of a cone
    search's query; names are case-insensitive (the first of a name counts)."""
    params: dict[str, str] = {}
    for key, value in items:
        params.setdefault(key.upper(), value)
    missing = [n for n in ("RA", "DEC", "SR") if not str(params.get(n, "")).strip()]
    if missing:
        raise QueryError(f"a cone search needs RA, DEC and SR in decimal degrees ({', '.join(missing)} missing)")
    ra, dec = _scs_number(params, "RA", 0.0, 360.0), _scs_number(params, "DEC", -90.0, 90.0)
    sr = _scs_number(params, "SR", 0.0, math.inf)
    verb = params.get("VERB", "2").strip() or "2"
    if verb not in ("1", "2", "3"):
        raise QueryError("VERB must be 1, 2 or 3")
    maxrec = params.get("MAXREC", "").strip()
    if maxrec and not maxrec.isdigit():
        raise QueryError("MAXREC must be a whole number")
    return ra, dec, min(sr, SCS_MAX_SR), int(verb), min(int(maxrec), SCS_MAXREC) if maxrec else SCS_MAXREC


def cone_search(service: SearchService, items: Iterable[tuple[str, str]]) -> bytes:
    """IVOA Simple Cone Search 1.03: every source within ``SR`` degrees of (``RA``,
    ``DEC``), nearest first, as a VOTable whose columns carry UCDs (``meta.id;meta.main``,
    ``pos.eq.ra;meta.main``, ``pos.eq.dec;meta.main``, ``pos.angDistance`` on the
    distance in degrees). ``SR=0`` gives the columns and no rows; past ``MAXREC`` (at
    most ``SCS_MAXREC``) rows the table is cut and ``QUERY_STATUS`` is ``OVERFLOW``."""
    from .votable import votable_bytes

    ra, dec, sr, verb, maxrec = scs_query(items)
    classes = service.classes()
    columns = scs_columns(verb, classes)
    rows, overflow = [], False
    if sr > 0:
        extra = [c for c in ("name", "source", "created_at") if c in columns]
        rows, overflow = service.cone_sources(Cone(ra, dec, sr * 3600.0), maxrec, extra)
        if verb >= 2 and classes:
            service.labelled(rows)
    infos = {"QUERY_STATUS": "OVERFLOW" if overflow else "OK"}
    return votable_bytes(result_table(rows, columns, classes), resource_name="radioalign cone search", infos=infos)


# ---------------------------------------------------------------------------
# The application


def create_app(service: SearchService):
    """The FastAPI application of the page, its API and the cone search."""
    from fastapi import FastAPI
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="radioalign search", docs_url=None, redoc_url=None)
    app.state.service = service
    add_error_handlers(app)
    add_search_routes(app, service)
    add_label_routes(app, service)
    add_vo_routes(app, service)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def add_search_routes(app, service: SearchService) -> None:
    """``/api/search`` (GET and POST), the results as CSV and VOTable, thumbnails, info."""
    from fastapi import Depends, HTTPException, Query, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    def search_params(text: str | None = None, like: str | None = None, upload: str | None = None,
                      k: int = Query(10, ge=1, le=MAX_K), ra: str | None = None, dec: str | None = None,
                      radius: str | None = None, frame: str = "icrs") -> dict:  # fmt: skip
        """A GET query: exactly one of ``text``, ``like`` (a source's id or name) and
        ``upload`` (a held upload's token), ``k`` and the cone."""
        if sum(v is not None for v in (text, like, upload)) != 1:
            raise QueryError("give exactly one of text=, like= or upload=")
        return {"text": text, "like": like, "upload": upload, "k": k, "cone": parse_cone(ra, dec, radius, frame)}

    @app.get("/api/search")
    def search_get(query: dict = Depends(search_params)):
        return run_query(service, query)

    @app.post("/api/search")
    async def search_post(request: Request):
        # The form is read here, not by FastAPI: Starlette would spool the file to disk unbounded.
        upload = await read_upload(request)
        k, cone = form_query(upload.fields)
        token = await run_in_threadpool(service.hold_upload, upload.data, upload.filename)
        results = await run_in_threadpool(service.upload, token, k, cone)
        return JSONResponse(results, headers={UPLOAD_HEADER: token})

    @app.get("/api/results.csv")
    def export_csv(query: dict = Depends(search_params)):
        text = results_csv(run_query(service, query))
        return Response(text, media_type="text/csv", headers=_attachment("radioalign-results.csv"))

    @app.get("/api/results.vot")
    def export_votable(request: Request, query: dict = Depends(search_params)):
        body = results_votable(run_query(service, query), str(request.query_params))
        return Response(body, media_type="application/x-votable+xml", headers=_attachment("radioalign-results.vot"))

    @app.get("/api/thumb/{source_id}")
    def thumb(source_id: str):
        png = service.thumbnail(source_id)
        if png is None:
            raise HTTPException(status_code=404, detail="no source with that id in the store")
        return Response(content=png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/info")
    def info():
        return service.info()


async def json_body(request, limit: int = MAX_LABELS_BODY) -> dict:
    """A request's JSON object, at most ``limit`` bytes; only as ``application/json`` (which
    a page of another site cannot send here without the browser's preflight, so no other
    site's page can label a store through a visitor's browser)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise NotJSON("send the labels as application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise QueryError("too many labels in one request")
    try:
        value = json.loads(bytes(body) or b"null")
    except ValueError:
        raise QueryError("the request body is not JSON") from None
    if not isinstance(value, dict):
        raise QueryError("the request body must be a JSON object")
    return value


def add_label_routes(app, service: SearchService) -> None:
    """The labelling mode: ``/api/labelling`` (classes offered, labels per class, the
    probe's status), ``/api/suggest``, ``POST /api/labels`` and ``/api/probe``."""
    from fastapi import Query, Request
    from starlette.concurrency import run_in_threadpool

    @app.get("/api/labelling")
    def labelling():
        return service.labelling()

    @app.get("/api/suggest")
    def suggest(n: int = Query(12, ge=1, le=MAX_K), text: str | None = None):
        return service.suggest(n, text)

    @app.post("/api/labels")
    async def label(request: Request):
        body = await json_body(request)
        return await run_in_threadpool(service.label, body.get("labels"), bool(body.get("train")))

    @app.get("/api/probe")
    def probe():
        return service.probe.status()

    @app.post("/api/probe")
    def train():
        service.probe.request()
        return service.probe.status()


def add_vo_routes(app, service: SearchService) -> None:
    """``/scs``: Simple Cone Search. Its errors are VOTables with an ``INFO`` named
    ``Error`` and HTTP 200, as SCS 1.03 asks; their text is a fixed sentence."""
    from fastapi import Request
    from fastapi.responses import Response

    from .votable import error_votable

    @app.get("/scs")
    def scs(request: Request):
        try:
            body = cone_search(service, request.query_params.multi_items())
        except Refused as err:
            body = error_votable(err.detail)
        except StoreError as err:
            log.error("GET /scs: %s", err)
            body = error_votable(STORE_FAILED)
        except Exception as err:  # noqa: BLE001 - any failure is an error VOTable, not a 500
            log.exception("GET /scs failed: %r", err)
            body = error_votable(SERVER_FAILED)
        return Response(body, media_type="text/xml")


def add_error_handlers(app) -> None:
    """Error bodies the server chooses: a refusal's own fixed sentence (400, 413), a
    generic one for a store that fails (409) or anything unforeseen (500), the names of
    the parameters FastAPI could not parse (422). The real error goes to the log."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    def refused(request, err: Refused):
        return JSONResponse({"detail": err.detail}, status_code=err.status)

    def store_failed(request, err: StoreError):
        log.error("%s %s: %s", request.method, request.url.path, err)
        return JSONResponse({"detail": STORE_FAILED}, status_code=409)

    def invalid(request, err: RequestValidationError):
        names = sorted({str(e["loc"][-1]) for e in err.errors() if e.get("loc")} & set(QUERY_FIELDS))
        detail = f"invalid query parameter: {', '.join(names)}" if names else "invalid query"
        return JSONResponse({"detail": detail}, status_code=422)

    def failed(request, err: Exception):
        # Starlette re-raises the error after this answer, so the server logs its traceback too.
        log.error("%s %s failed: %r", request.method, request.url.path, err)
        return JSONResponse({"detail": SERVER_FAILED}, status_code=500)

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(StoreError, store_failed)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(Exception, failed)


def load_service(store: str | os.PathLike, *, model=None, adapter=None, device=None, prompts: str = "fr",
                 hips: str | None = None) -> SearchService:  # fmt: skip
    """The store and its model, loaded once (the model must match the store). ``hips``
    is the HiPS survey of the page's Aladin links: the store's own (its ``hips`` meta
    key) unless given, else ``DEFAULT_HIPS`` (NVSS)."""
    from .encoder import encoder_for_store

    store = open_store(store, must_exist=True)
    meta = store.meta()
    hips = check_hips(hips or meta.get("hips"))  # a bad --hips fails before the model loads
    encoder = encoder_for_store(meta, model, adapter, device=device)
    return SearchService(store, encoder, prompts, hips)


def serve(store, *, host: str = "127.0.0.1", port: int = 8000, model=None, adapter=None, device=None,
          prompts: str = "fr", hips: str | None = None, log_level: str = "warning") -> None:  # fmt: skip
    """Load the store and its model, then serve the page at ``http://host:port/`` (and
    the cone search at ``/scs``) until interrupted."""
    import sys

    import uvicorn

    app = create_app(load_service(store, model=model, adapter=adapter, device=device, prompts=prompts, hips=hips))
    print(f"radioalign serve: {app.state.service.info()['sources']} sources from {store} at http://{host}:{port}/ "
          f"(cone search: http://{host}:{port}/scs?; Ctrl-C stops)", file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level=log_level)
