"""The search page: ``radioalign serve --store PATH`` (FastAPI, one static HTML page).

The page (``static/index.html`` with plain JavaScript and CSS, nothing from a CDN, so it
works offline) asks the JSON API below and shows a grid of thumbnails with name, RA/Dec,
score and zero-shot label, each with a "more like this" button.

``GET  /api/search?text=...&k=10``        text -> image search
``GET  /api/search?like=ID|NAME&k=10``     the neighbours of a stored source (itself first)
``POST /api/search`` (multipart ``image``) the neighbours of an uploaded FITS/PNG/JPEG
``GET  /api/thumb/{id}``                  the source's thumbnail (PNG bytes from the store)
``GET  /api/info``                        the store: sources, model, prompt set

Every search also takes a cone: ``ra``, ``dec`` in degrees or sexagesimal
(``12:34:56.7``, ``+12d34m56s``; ``frame=galactic`` for l, b) and ``radius`` in arcsec
or with a unit (``10arcmin``, ``0.1deg``).
A result is the record of ``radioalign search`` (``id, name, ra, dec, score, source``)
plus ``label`` and ``probability`` (the label's SigLIP probability) when the store's
sources were labelled with the page's prompt set (``radioalign classify``).

The model is loaded once, at start-up, and must be the store's own (its fingerprint is
checked then, as by every other subcommand).

Uploads are hostile until read: they stream into memory under caps on the bytes sent,
the bytes a gzip file inflates to and the pixels declared (``uploads.py``; 413 past
any of them). Every error body's ``detail`` is a fixed sentence chosen here: never a
server path, the store's path or an exception's text (those go to the server's log).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and Request is imported inside create_app.
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .search import RESULT_FIELDS, Cone, nearest, stored_vector
from .store import SOURCES, Store, StoreError, open_store, quote
from .uploads import Refused, model_input, read_upload

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
RECORD_FIELDS = RESULT_FIELDS + ("label", "probability")
MAX_K = 200
QUERY_FIELDS = ("text", "like", "k", "ra", "dec", "radius", "frame")
SERVER_FAILED = "the server could not answer this query (its log says why)"
STORE_FAILED = "the store cannot answer this query (the server's log says why)"


class QueryError(Refused):
    """A query the page cannot answer (an unknown source, an empty text ...): 400, with
    a fixed sentence for the client."""


@dataclass
class SearchService:
    """The store, the loaded model and the prompt set whose labels results carry.

    Queries go through one lock: a model forward is not shared between threads."""

    store: Store
    encoder: object
    prompts: str = "fr"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self):
        self.store.check_model(self.encoder.fingerprint, "search page")

    # -- queries ------------------------------------------------------------

    def text(self, text: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        if not text.strip():
            raise QueryError("an empty text query")
        with self.lock:
            vector = self.encoder.texts([text])[0]
        return self.labelled(nearest(self.store, vector, k, cone))

    def like(self, key: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        vector = stored_vector(self.store, key)
        if vector is None:
            raise QueryError("no source with that id or name in the store")
        return self.labelled(nearest(self.store, vector, k, cone))

    def image(self, data: bytes | bytearray, filename: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        """The neighbours of an uploaded image (its bytes, in memory), read and
        preprocessed as at ingest within the upload caps (:func:`.uploads.model_input`)."""
        image = model_input(data, filename)
        with self.lock:
            vector = self.encoder.images(image[None])[0]
        return self.labelled(nearest(self.store, vector, k, cone))

    # -- what the page shows ------------------------------------------------

    def labelled(self, results: list[dict]) -> list[dict]:
        """``results`` with ``label`` and ``probability`` where the store has labels."""
        from .zeroshot import labels_of

        labels = labels_of(self.store, [r["id"] for r in results], self.prompts)
        for r in results:
            if r["id"] in labels:
                r["label"], r["probability"] = labels[r["id"]]["label"], float(labels[r["id"]]["score"])
        return results

    def thumbnail(self, source_id: str) -> bytes | None:
        rows = self.store.rows_where(f"id = {quote(source_id)}", ["thumbnail"], limit=1)
        return rows[0]["thumbnail"] if rows else None

    def info(self) -> dict:
        """What the page shows of the store: its folder's name, never its full path."""
        meta = self.store.meta()
        return {
            "store": self.store.path.name, "sources": self.store.count(SOURCES), "model": shown(meta.get("model")),
            "adapter": shown(meta.get("adapter")), "prompts": self.prompts, "indexed": self.store.has_vector_index(),
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


def create_app(service: SearchService):
    """The FastAPI application of the page and its API."""
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool

    app = FastAPI(title="radioalign search", docs_url=None, redoc_url=None)
    app.state.service = service
    add_error_handlers(app)
    K = Query(10, ge=1, le=MAX_K)

    @app.get("/api/search")
    def search_get(text: str | None = None, like: str | None = None, k: int = K,
                   ra: str | None = None, dec: str | None = None, radius: str | None = None, frame: str = "icrs"):  # fmt: skip
        if (text is None) == (like is None):
            raise QueryError("give exactly one of text= or like=")
        cone = parse_cone(ra, dec, radius, frame)
        return service.text(text, k, cone) if text is not None else service.like(like, k, cone)

    @app.post("/api/search")
    async def search_post(request: Request):
        # The form is read here, not by FastAPI: Starlette would spool the file to disk unbounded.
        upload = await read_upload(request)
        k, cone = form_query(upload.fields)
        return await run_in_threadpool(service.image, upload.data, upload.filename, k, cone)

    @app.get("/api/thumb/{source_id}")
    def thumb(source_id: str):
        png = service.thumbnail(source_id)
        if png is None:
            raise HTTPException(status_code=404, detail="no source with that id in the store")
        return Response(content=png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/info")
    def info():
        return service.info()

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


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


def load_service(store: str | os.PathLike, *, model=None, adapter=None, device=None, prompts: str = "fr") -> SearchService:
    """The store and its model, loaded once (the model must match the store)."""
    from .encoder import encoder_for_store

    store = open_store(store, must_exist=True)
    encoder = encoder_for_store(store.meta(), model, adapter, device=device)
    return SearchService(store, encoder, prompts)


def serve(store, *, host: str = "127.0.0.1", port: int = 8000, model=None, adapter=None, device=None,
          prompts: str = "fr", log_level: str = "warning") -> None:  # fmt: skip
    """Load the store and its model, then serve the page at ``http://host:port/`` until
    interrupted."""
    import sys

    import uvicorn

    app = create_app(load_service(store, model=model, adapter=adapter, device=device, prompts=prompts))
    print(f"radioalign serve: {app.state.service.info()['sources']} sources from {store} at http://{host}:{port}/ "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)  # fmt: skip
    uvicorn.run(app, host=host, port=port, log_level=log_level)
