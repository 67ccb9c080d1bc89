"""The search page: ``radioalign serve --store PATH`` (FastAPI, one static HTML page).

The page (``static/index.html`` with plain JavaScript and CSS, nothing from a CDN, so it
works offline) asks the JSON API below and shows a grid of thumbnails with name, RA/Dec,
score and zero-shot label, each with a "more like this" button.

``GET  /api/search?text=...&k=10``        text -> image search
``GET  /api/search?like=ID|NAME&k=10``     the neighbours of a stored source (itself first)
``POST /api/search`` (multipart ``image``) the neighbours of an uploaded FITS/PNG/JPEG
``GET  /api/thumb/{id}``                  the source's thumbnail (PNG bytes from the store)
``GET  /api/info``                        the store: sources, model, prompt set

Every search also takes a cone (``ra``, ``dec``, ``radius`` in degrees, degrees, arcsec).
A result is the record of ``radioalign search`` (``id, name, ra, dec, score, source``)
plus ``label`` and ``probability`` (the label's SigLIP probability) when the store's
sources were labelled with the page's prompt set (``radioalign classify``).

The model is loaded once, at start-up, and must be the store's own (its fingerprint is
checked then, as by every other subcommand).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and UploadFile is imported inside create_app.
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .search import RESULT_FIELDS, Cone, file_vector, nearest, stored_vector
from .store import SOURCES, Store, StoreError, open_store, quote

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
RECORD_FIELDS = RESULT_FIELDS + ("label", "probability")
MAX_K = 200
MAX_UPLOAD_BYTES = 64 * 2**20


class QueryError(ValueError):
    """A query the page cannot answer (an unknown source, an unreadable image ...)."""


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
            raise QueryError(f"no source with id or name {key!r} in the store")
        return self.labelled(nearest(self.store, vector, k, cone))

    def image(self, data: bytes, filename: str, k: int = 10, cone: Cone | None = None) -> list[dict]:
        """The neighbours of an uploaded image, read and preprocessed as at ingest."""
        from .readers import file_kind

        if file_kind(filename) is None:
            raise QueryError(f"{filename!r}: upload a FITS, PNG or JPEG file")
        suffix = "".join(Path(filename).suffixes[-2:]) if filename.lower().endswith(".gz") else Path(filename).suffix
        with tempfile.TemporaryDirectory(prefix="radioalign-query-") as tmp:
            path = Path(tmp) / f"query{suffix.lower()}"
            path.write_bytes(data)
            try:
                with self.lock:
                    vector = file_vector(self.encoder, path)
            except (ValueError, OSError) as err:  # BadImageError is a ValueError
                raise QueryError(f"{filename!r} cannot be read as an image: {err}") from None
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
        meta = self.store.meta()
        return {
            "store": str(self.store.path), "sources": self.store.count(SOURCES), "model": meta.get("model"),
            "adapter": meta.get("adapter") or None, "prompts": self.prompts, "indexed": self.store.has_vector_index(),
        }  # fmt: skip


def parse_cone(ra: float | None, dec: float | None, radius: float | None) -> Cone | None:
    """A cone from the query's ``ra``, ``dec``, ``radius`` (all three, or none)."""
    given = [v is not None for v in (ra, dec, radius)]
    if not any(given):
        return None
    if not all(given):
        raise QueryError("a cone needs ra, dec and radius (arcsec)")
    return Cone(ra, dec, radius)


def create_app(service: SearchService):
    """The FastAPI application of the page and its API."""
    from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
    from fastapi.responses import FileResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="radioalign search", docs_url=None, redoc_url=None)
    app.state.service = service
    K = Query(10, ge=1, le=MAX_K)

    def answer(run):
        try:
            return run()
        except (QueryError, ValueError) as err:  # a bad cone is a ValueError too
            raise HTTPException(status_code=400, detail=str(err)) from None
        except StoreError as err:
            raise HTTPException(status_code=409, detail=str(err)) from None

    @app.get("/api/search")
    def search_get(text: str | None = None, like: str | None = None, k: int = K,
                   ra: float | None = None, dec: float | None = None, radius: float | None = None):  # fmt: skip
        if (text is None) == (like is None):
            raise HTTPException(status_code=400, detail="give exactly one of text= or like=")

        def run():
            cone = parse_cone(ra, dec, radius)
            return service.text(text, k, cone) if text is not None else service.like(like, k, cone)

        return answer(run)

    @app.post("/api/search")
    def search_post(image: UploadFile = File(...), k: int = Form(10, ge=1, le=MAX_K), ra: float | None = Form(None),
                    dec: float | None = Form(None), radius: float | None = Form(None)):  # fmt: skip
        data = image.file.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(status_code=413, detail=f"images up to {MAX_UPLOAD_BYTES // 2**20} MiB")
        return answer(lambda: service.image(data, image.filename or "upload", k, parse_cone(ra, dec, radius)))

    @app.get("/api/thumb/{source_id}")
    def thumb(source_id: str):
        png = service.thumbnail(source_id)
        if png is None:
            raise HTTPException(status_code=404, detail=f"no source {source_id!r}")
        return Response(content=png, media_type="image/png", headers={"Cache-Control": "max-age=86400"})

    @app.get("/api/info")
    def info():
        return service.info()

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


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
