"""The ``radioalign`` command (also ``python -m radioalign``): ingest, classify, search, serve.

Each subcommand calls the function of the same name in ``radioalign.survey``; results
go to stdout, progress and messages to stderr. Exit status: 0 on success, 2 on a
usage or input error (a missing store, a model that does not match the store ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Sequence

PROG = "radioalign"

INGEST_EXAMPLE = """examples:
  radioalign ingest cutouts/ --store first.lance --model tiny
  radioalign ingest cutouts/*.fits --store first.lance --adapter results/full/runs/vision-seed0
  radioalign ingest --catalog rgz.csv --mosaic mosaic1.fits mosaic2.fits --store rgz.lance
  radioalign ingest /data/cutouts/ --store first.lance --ray auto    # on a running Ray cluster

Rerunning the same command resumes: sources already stored (or already failed) are
skipped, nothing is embedded twice. Bad files are recorded in the store's errors table."""

CLASSIFY_EXAMPLE = """examples:
  radioalign classify --store first.lance
  radioalign classify --store first.lance --prompts my_classes.yaml

A prompt file is YAML mapping each class to a list of prompts, e.g.
  FR-I: ["an edge-darkened radio galaxy, brightest near the core"]
  FR-II: ["an edge-brightened radio galaxy with hotspots at the ends of its lobes"]"""

SEARCH_EXAMPLE = """examples:
  radioalign search --store first.lance --text "bent-tail radio galaxy with a bright core" -k 10
  radioalign search --store first.lance --like J123456+123456 --cone 194.2 12.6 600 --format csv
  radioalign search --store first.lance --like my_cutout.fits --format votable > hits.xml

JSON output is a list of {id, name, ra, dec, score, source}; score is the cosine similarity."""

SERVE_EXAMPLE = """examples:
  radioalign serve --store first.lance
  radioalign serve --store first.lance --port 8080 --host 0.0.0.0

Then open http://127.0.0.1:8000/ (or your --host/--port): search by text or by an
uploaded FITS/PNG/JPEG, and click 'more like this' on any result. The page needs no
internet. Its JSON API: /api/search?text=...&k=10, /api/search?like=ID, POST /api/search
(an 'image' file), /api/thumb/ID, /api/info."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Point SigLIP (base or fine-tuned) at radio survey cut-outs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _ingest_parser(sub)
    _classify_parser(sub)
    _search_parser(sub)
    _serve_parser(sub)
    return parser


def _sub(sub, name: str, help: str, example: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, metavar="PATH", help="the LanceDB store (a folder)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    return p


def _model_args(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument("--model", default=None, metavar="ID|PATH|tiny", help=f"the SigLIP model; {default_help}")
    p.add_argument("--adapter", default=None, metavar="RUN_DIR", help="a fine-tuned LoRA adapter (a run folder or its adapter/)")


def _ingest_parser(sub) -> None:
    p = _sub(sub, "ingest", "Embed FITS/PNG/JPEG cut-outs (or catalogue cut-outs from mosaics) into a store.", INGEST_EXAMPLE)
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="files, folders (walked recursively) or glob patterns")
    _model_args(p, "default: the store's model, else google/siglip2-base-patch16-224")
    p.add_argument("--catalog", metavar="CSV", help="a catalogue with columns name, ra, dec (degrees)")
    p.add_argument("--mosaic", nargs="+", default=[], metavar="FITS", help="mosaics to cut the catalogue's sources from")
    p.add_argument("--batch-size", type=int, default=64, help="sources per batch and per write (default 64)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers reading files (default: cores - 1, at most 8)")
    p.add_argument("--ann-threshold", type=int, default=100_000, metavar="N", help="build the IVF-PQ index from N sources (default 100000)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default auto)")
    p.add_argument("--retry-failed", action="store_true", help="retry inputs that failed in earlier runs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON on stdout")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="read on Ray CPU workers and embed on Ray GPU actors: a local Ray instance, or the cluster at "
                        "ADDRESS (auto, HOST:PORT, ray://HOST:10001)")  # fmt: skip


def _classify_parser(sub) -> None:
    p = _sub(sub, "classify", "Label every source zero-shot (FR-I/FR-II, or your own prompt set).", CLASSIFY_EXAMPLE)
    p.add_argument("--prompts", default="fr", metavar="fr|FILE.yaml", help="a built-in prompt set (fr) or a YAML file (default fr)")
    _model_args(p, "default: the store's own")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _cone(values: Sequence[str]):
    from .search import Cone

    try:
        return Cone(*(float(v) for v in values))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--cone RA DEC RADIUS_ARCSEC: {err}") from None


def _search_parser(sub) -> None:
    p = _sub(sub, "search", "Find the sources nearest to a text or an image.", SEARCH_EXAMPLE)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a description, e.g. 'bent-tail radio galaxy with a bright core'")
    query.add_argument("--like", metavar="ID|NAME|FILE", help="a source in the store (id or name) or an image file")
    p.add_argument("-k", type=int, default=10, help="how many sources (default 10)")
    p.add_argument("--cone", nargs=3, metavar=("RA", "DEC", "RADIUS_ARCSEC"), help="only sources within this cone (degrees, arcsec)")
    p.add_argument("--format", choices=("json", "csv", "votable"), default="json", help="output format (default json)")
    _model_args(p, "default: the store's own")


def _serve_parser(sub) -> None:
    p = _sub(sub, "serve", "A search page in the browser: text or image queries, 'more like this'.", SERVE_EXAMPLE)
    p.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--prompts", default="fr", metavar="NAME", help="show the labels of this prompt set (default fr)")
    _model_args(p, "default: the store's own")


# ---------------------------------------------------------------------------


def _run_ingest(args) -> int:
    from .ingest import ingest

    common = dict(
        model=args.model, adapter=args.adapter, catalog=args.catalog, mosaics=args.mosaic, batch_size=args.batch_size,
        ann_threshold=args.ann_threshold, retry_failed=args.retry_failed, dtype=args.dtype, progress=not args.no_progress,
    )  # fmt: skip
    if args.ray is not None:
        from .ray_ingest import ingest_ray

        summary = ingest_ray(args.sources, args.store, address=args.ray, **common)
    else:
        summary = ingest(args.sources, args.store, workers=args.workers, device=args.device, **common)
    if not args.sources and not args.catalog:
        print(f"{PROG} ingest: no SOURCE and no --catalog: nothing to do", file=sys.stderr)
    print(summary.line(), file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()))
    return 0


def _run_classify(args) -> int:
    from .zeroshot import classify

    summary = classify(args.store, args.prompts, model=args.model, adapter=args.adapter, device=args.device)
    print(summary.line(), file=sys.stderr)
    if args.json:
        print(json.dumps({"prompts": summary.prompts, "labelled": summary.labelled, "counts": summary.counts}))
    return 0


def _run_search(args) -> int:
    from .search import search, write_results

    cone = _cone(args.cone) if args.cone else None
    results = search(
        args.store, text=args.text, like=args.like, k=args.k, cone=cone, model=args.model, adapter=args.adapter, device=args.device
    )
    write_results(results, args.format)
    return 0


def _run_serve(args) -> int:
    from .serve import serve

    serve(args.store, host=args.host, port=args.port, model=args.model, adapter=args.adapter, device=args.device,
          prompts=args.prompts)  # fmt: skip
    return 0


_COMMANDS = {"ingest": _run_ingest, "classify": _run_classify, "search": _run_search, "serve": _run_serve}


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point; returns the exit status."""
    from .store import StoreError

    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return _COMMANDS[args.command](args)
    except (StoreError, FileNotFoundError, ValueError, argparse.ArgumentTypeError) as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted (what was written stays; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
