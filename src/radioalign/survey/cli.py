"""The ``radioalign`` command (also ``python -m radioalign``): ingest, classify, search, serve,
label, suggest, neighbours, and ``store info | errors | export | delete``.

Each subcommand calls the function of the same name in ``radioalign.survey`` (``search``
and ``store`` call :class:`radioalign.survey.Survey`); results
go to stdout, progress and messages to stderr. Exit status: 0 on success, 2 on a
usage or input error (a missing store, a model that does not match the store, a bad
file or value ...), 1 on any other error; an error is one line on stderr, with the
traceback only under ``-vv``. Below ``-v`` the libraries' warnings and progress bars
(transformers, tokenizers, huggingface_hub) are silenced.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import traceback
import warnings
from typing import Sequence

PROG = "radioalign"
EXPORT_FORMATS = ("votable", "csv", "parquet", "fits")  # radioalign.survey.api.EXPORT_FORMATS (not imported: --help stays fast)

INGEST_EXAMPLE = """examples:
  radioalign ingest cutouts/ --store first.lance --model tiny
  radioalign ingest cutouts/*.fits --store first.lance --adapter results/full/runs/vision-seed0
  radioalign ingest --catalog rgz.csv --mosaic mosaic1.fits mosaic2.fits --store rgz.lance
  radioalign ingest --catalog vizier.vot --ra-col RAJ2000 --dec-col DEJ2000 --mosaic mosaic.fits --store rgz.lance
  radioalign ingest /data/cutouts/ --store first.lance --ray auto    # on a running Ray cluster

Rerunning the same command resumes: sources already stored (or already failed) are
skipped, nothing is embedded twice. Bad files are recorded in the store's errors table.

A catalogue (CSV, ECSV, VOTable, FITS table, VizieR TSV) gives a name and a position
per row: columns ra/dec, RAJ2000/DEJ2000, _RAJ2000/_DEJ2000 or RA_ICRS/DE_ICRS (or the
VOTable UCDs pos.eq.ra/pos.eq.dec), in degrees or sexagesimal (RA in hours)."""

CLASSIFY_EXAMPLE = """examples:
  radioalign classify --store first.lance
  radioalign classify --store first.lance --prompts my_classes.yaml
  radioalign classify --store first.lance --probe                      # trained on `radioalign label`'s labels
  radioalign classify --store first.lance --probe --abstain --alpha 0.05
  radioalign classify --store first.lance --abstain                    # calibrated zero-shot, no probe

Without --probe: zero-shot labels from the prompts (label, probability, p_<class>).
With --probe: a logistic regression on the labelled sources' vectors, with the prompts'
zero-shot logits as extra features (--no-prior: the vectors alone, no model loaded), C
cross-validated once every class has 5 labels; calibrated probabilities and a conformal
prediction set at --alpha (default 0.1) for every source, with the coverage and mean set
size measured on the labelled set. --abstain leaves a source unlabelled when its set holds
more than one class (e.g. FR-I|FR-II) and says how many it left open. With labels of one
class only (a single label included) or none, the predictions are calibrated zero-shot,
and the command says so. Exports and search results then carry user_label, predicted,
prediction_set, predicted_by and cal_p_<class>.

A prompt file is YAML mapping each class to a list of prompts, e.g.
  FR-I: ["an edge-darkened radio galaxy, brightest near the core"]
  FR-II: ["an edge-brightened radio galaxy with hotspots at the ends of its lobes"]"""

SEARCH_EXAMPLE = """examples:
  radioalign search --store first.lance --text "bent-tail radio galaxy with a bright core" -k 10
  radioalign search --store first.lance --like J123456+123456 --cone 194.2 12.6 600 --format csv
  radioalign search --store first.lance --text "a head-tail galaxy" --cone 12:56:47.3 +12:36:00 10arcmin
  radioalign search --store first.lance --text "a double" --cone 280.5 -1.2 0.5deg --frame galactic
  radioalign search --store first.lance --like my_cutout.fits --format votable > hits.xml

JSON output is a list of {id, name, ra, dec, score, source}; score is the cosine similarity.
Once `radioalign classify` has run, each hit also has label, probability and p_<class>
(the labels of --prompts). VOTable output has UCDs and units (TOPCAT, Aladin, astropy).
--cone takes RA and Dec in degrees or sexagesimal (12:56:47.3 or 12h56m47.3s or "12 56 47.3";
RA in hours unless written with d), and a radius in arcsec or with a unit (10arcmin, 0.5deg)."""

SERVE_EXAMPLE = """examples:
  radioalign serve --store first.lance
  radioalign serve --store first.lance --port 8080 --host 0.0.0.0
  radioalign serve --store first.lance --hips CDS/P/DSS2/color

Then open http://127.0.0.1:8000/ (or your --host/--port): search by text or by an
uploaded FITS/PNG/JPEG, click 'more like this' on any result, download the results as CSV
or VOTable, or send them to TOPCAT or Aladin over SAMP (their hub on this computer). The
labelling mode shows the sources worth labelling next: one key or click per class, undo;
the probe retrains after each batch. The page needs no internet; each result links to
Aladin Lite on the HiPS survey --hips (default: the store's, else CDS/P/NVSS), SIMBAD, NED
and the Legacy Survey viewer.

The server is also an IVOA Simple Cone Search service: in TOPCAT, VO > Cone Search with
the URL http://127.0.0.1:8000/scs? ; in Python, pyvo.dal.SCSService(URL).search(pos, radius).
Its JSON API: /api/search?text=...&k=10, /api/search?like=ID, POST /api/search (an 'image'
file), /api/results.csv and /api/results.vot (same query), /api/thumb/ID, /api/info,
/api/suggest, /api/labels, /api/probe."""

LABEL_EXAMPLE = """examples:
  radioalign label --store first.lance 3f2a9c0d1e4b5a6c=FR-I J125647+123600=FR-II
  radioalign label --store first.lance --from classes.csv
  radioalign label --store first.lance --from vizier.vot --name-col Name --class-col Type --map 1=FR-I --map 2=FR-II
  radioalign label --store first.lance --remove 3f2a9c0d1e4b5a6c
  radioalign label --store first.lance --list --format csv > labels.csv

A source is given by its id or its name (a name several sources share: give the id); a
class is any name without '|' (the prompt set's, e.g. FR-I and FR-II, come first on the
page). Labelling a source again replaces its class. --from reads CSV, TSV, ECSV, VOTable
or FITS tables with an id column (id, source_id) or a name column (name, source_name,
source, object, designation, main_id) and a class column (class, label, classification,
type, morphology, fr_class); rows that match no source are counted, and a file none of
whose rows matches is refused. Then `radioalign classify --probe` trains on the labels and
`radioalign suggest` lists the sources worth labelling next."""

SUGGEST_EXAMPLE = """examples:
  radioalign suggest --store first.lance --text "bent-tail radio galaxy" -n 20    # before the first label
  radioalign suggest --store first.lance -n 20
  radioalign suggest --store first.lance -n 50 --kind entropy --format csv > next.csv

The unlabelled sources worth labelling next, most useful first: those the probe (trained
on the labels so far, with the prompts' zero-shot logits; calibrated zero-shot while fewer
than two classes are labelled) is least sure of (margin of its two most probable classes,
or entropy), with no near-duplicates in one batch. Before any label, --text ranks them by
closeness to a description instead. priority is the uncertainty (or the cosine to --text);
best and cal_p_<class> are the probe's. Label them with `radioalign label`."""


STORE_EXAMPLE = """examples:
  radioalign store info --store first.lance
  radioalign store errors --store first.lance --format csv > failed.csv
  radioalign store export --store first.lance --format votable --out first.xml
  radioalign store delete --store first.lance --where-name 'J12*'

Run `radioalign store ACTION --help` for each action."""

STORE_INFO_EXAMPLE = """examples:
  radioalign store info --store first.lance
  radioalign store info --store first.lance --format json

Sources, failed inputs, zero-shot labels per prompt set, model and adapter, vector
dimension, the vector index (ivf_pq, or exact search) and whether every source is in it,
the preprocessing recipe, size on disk, first and last ingest."""

STORE_ERRORS_EXAMPLE = """examples:
  radioalign store errors --store first.lance
  radioalign store errors --store first.lance --format csv > failed.csv
  radioalign store errors --store first.lance --format json

One row per input that failed: path (or catalogue#name), reason, when (UTC).
`radioalign ingest ... --retry-failed` retries them; `store delete --errors` forgets them."""

STORE_EXPORT_EXAMPLE = """examples:
  radioalign store export --store first.lance --format votable --out first.xml    # TOPCAT, Aladin
  radioalign store export --store first.lance --out first.csv
  radioalign store export --store first.lance --format parquet --out first.parquet --vectors
  radioalign store export --store first.lance --format fits --out first.fits --vectors

Every source once: id, name, ra, dec (deg), source (the last path seen), created_at (UTC),
flags, preprocessing, and label, probability, p_<class> once classified (--prompts).
--vectors adds the embedding (parquet and fits only). The format defaults to the file's
suffix. The export streams in batches: memory stays bounded for any size of store."""

STORE_DELETE_EXAMPLE = """examples:
  radioalign store delete --store first.lance 3f2a9c0d1e4b5a6c 0b1c2d3e4f5a6b7c
  radioalign store delete --store first.lance --where-name 'J12*'
  radioalign store delete --store first.lance --errors

Deleting a source removes its zero-shot labels and the record of the files that gave it:
ingesting the same folder again adds it back if its file is still there.
--where-name takes a shell-style pattern (*, ?, [abc]); quote it."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Point SigLIP (base or fine-tuned) at radio survey cut-outs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _ingest_parser(sub)
    _classify_parser(sub)
    _search_parser(sub)
    _serve_parser(sub)
    _neighbours_parser(sub)
    _label_parser(sub)
    _suggest_parser(sub)
    _store_parser(sub)
    return parser


def _sub(sub, name: str, help: str, example: str, device: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, metavar="PATH", help="the LanceDB store (a folder)")
    if device:
        p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best available)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    return p


def _model_args(p: argparse.ArgumentParser, default_help: str) -> None:
    p.add_argument("--model", default=None, metavar="ID|PATH|tiny", help=f"the SigLIP model; {default_help}")
    p.add_argument("--adapter", default=None, metavar="RUN_DIR", help="a fine-tuned LoRA adapter (a run folder or its adapter/)")


class _RetryFailed(argparse.Action):
    """``--retry-failed [all]``. A value other than ``all``/``changed`` is a SOURCE that
    followed the flag (``--retry-failed cutouts/``, as before the flag took a value)."""

    def __call__(self, parser, namespace, value, option_string=None):
        if value in (None, "changed", "all"):
            setattr(namespace, self.dest, value or self.const)
            return
        setattr(namespace, self.dest, self.const)
        setattr(namespace, "retry_source", value)


def _ingest_parser(sub) -> None:
    p = _sub(sub, "ingest", "Embed FITS/PNG/JPEG cut-outs (or catalogue cut-outs from mosaics) into a store.", INGEST_EXAMPLE)
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="files, folders (walked recursively) or glob patterns")
    _model_args(p, "default: the store's model, else google/siglip2-base-patch16-224")
    p.add_argument("--catalog", metavar="FILE", help="a catalogue of positions: CSV, ECSV, VOTable or FITS table")
    p.add_argument("--ra-col", metavar="COLUMN", help="the catalogue's RA column (default: found by name or UCD)")
    p.add_argument("--dec-col", metavar="COLUMN", help="the catalogue's Dec column (default: found by name or UCD)")
    p.add_argument("--name-col", metavar="COLUMN", help="the catalogue's name column (default: name, id, ... or row<N>)")
    p.add_argument("--mosaic", nargs="+", default=[], metavar="FITS", help="mosaics to cut the catalogue's sources from")
    p.add_argument("--batch-size", type=int, default=64, help="sources per batch and per write (default 64)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers reading files (default: cores - 1, at most 8)")
    p.add_argument("--ann-threshold", type=int, default=100_000, metavar="N", help="build the IVF-PQ index from N sources (default 100000)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default auto)")
    p.add_argument("--retry-failed", nargs="?", const="changed", default=None, action=_RetryFailed, metavar="all",
                   help="retry failed inputs whose file changed since (all: every failed input)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON on stdout")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="read on Ray CPU workers and embed on Ray GPU actors: a local Ray instance, or the cluster at "
                        "ADDRESS (auto, HOST:PORT, ray://HOST:10001)")  # fmt: skip


def _classify_parser(sub) -> None:
    p = _sub(sub, "classify", "Label every source zero-shot (FR-I/FR-II, or your own prompt set).", CLASSIFY_EXAMPLE)
    p.add_argument("--prompts", default="fr", metavar="fr|FILE.yaml", help="a built-in prompt set (fr) or a YAML file (default fr)")
    _model_args(p, "default: the store's own")
    p.add_argument("--probe", action="store_true", help="train a probe on the user labels (radioalign label) and predict every source")
    p.add_argument("--alpha", type=float, default=None, help="the conformal sets' error level (default 0.1: sets hold the true class 90%% of the time)")
    p.add_argument("--abstain", action="store_true", help="leave a source unlabelled when its prediction set holds more than one class")
    p.add_argument("--no-prior", action="store_true", help="with --probe: the vectors alone, no zero-shot prior (no model loaded)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _cone(values: Sequence[str], frame: str = "icrs"):
    """The ``--cone RA DEC RADIUS`` of the command line (see ``radioalign.survey.sky``)."""
    from .search import Cone
    from .sky import parse_position, parse_radius

    try:
        return Cone(*parse_position(values[0], values[1], frame), parse_radius(values[2]))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--cone RA DEC RADIUS: {err}") from None


# A Dec such as -12:36:00 or -12d36m is a value, not an option (argparse knows only -12 and -1.5).
_NEGATIVE_VALUE = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-\d[\d.:hmsd°'\"]*$")


def _search_parser(sub) -> None:
    p = _sub(sub, "search", "Find the sources nearest to a text or an image.", SEARCH_EXAMPLE)
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a description, e.g. 'bent-tail radio galaxy with a bright core'")
    query.add_argument("--like", metavar="ID|NAME|FILE", help="a source in the store (id or name) or an image file")
    p.add_argument("-k", type=int, default=10, help="how many sources (default 10)")
    p.add_argument("--cone", nargs=3, metavar=("RA", "DEC", "RADIUS"),
                   help="only sources within this cone: RA, Dec in degrees or sexagesimal, radius in arcsec or with a unit")  # fmt: skip
    p.add_argument("--frame", choices=("icrs", "galactic"), default="icrs", help="the frame of --cone's centre (default icrs)")
    p.add_argument("--format", choices=("json", "csv", "votable"), default="json", help="output format (default json)")
    p.add_argument("--prompts", default="fr", metavar="NAME", help="the labels of this prompt set go with each hit (default fr)")
    _model_args(p, "default: the store's own")
    p._negative_number_matcher = _NEGATIVE_VALUE


def _serve_parser(sub) -> None:
    p = _sub(sub, "serve", "A search page in the browser: text or image queries, 'more like this'.", SERVE_EXAMPLE)
    p.add_argument("--port", type=int, default=8000, help="the port (default 8000)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--prompts", default="fr", metavar="NAME", help="show the labels of this prompt set (default fr)")
    p.add_argument("--hips", default=None, metavar="ID", help="the HiPS survey of the Aladin Lite links (default: the store's, else CDS/P/NVSS)")
    _model_args(p, "default: the store's own")


NEIGHBOURS_EXAMPLE = """examples:
  radioalign neighbours --store first.lance -k 10 --out neighbours.parquet
  radioalign neighbours --store first.lance -k 50 --out nn50.parquet --no-progress

One row per source: id, name, neighbour_ids (best first, the source itself left out) and
distances (cosine distance, 1 - cos). Interrupted (Ctrl-C, kill -9), the same command
resumes: finished chunks are kept in OUT.parts/ until the file is complete."""


def _neighbours_parser(sub) -> None:
    p = _sub(sub, "neighbours", "Write the k nearest neighbours of every source to a Parquet file.", NEIGHBOURS_EXAMPLE, False)
    p.add_argument("-k", type=int, default=10, help="neighbours per source (default 10)")
    p.add_argument("--out", required=True, metavar="FILE.parquet", help="the Parquet file to write (replaced when it exists)")
    p.add_argument("--chunk-size", type=int, default=10_000, metavar="N", help="sources per chunk written (default 10000)")
    p.add_argument("--ef", type=int, default=None, metavar="N", help="HNSW candidates per query (default: the store's search default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON on stdout")


def _run_neighbours(args) -> int:
    from .neighbours import neighbours

    if args.k < 1 or args.chunk_size < 1 or (args.ef is not None and args.ef < 1):
        raise argparse.ArgumentTypeError("-k, --chunk-size and --ef must be positive integers")
    summary = neighbours(args.store, args.out, k=args.k, chunk_rows=args.chunk_size, ef=args.ef, progress=not args.no_progress)
    print(summary.line(), file=sys.stderr)
    if args.json:
        print(json.dumps(vars(summary)))
    return 0


def _label_parser(sub) -> None:
    p = _sub(sub, "label", "Label sources by hand or from a catalogue's classes (for `classify --probe`).", LABEL_EXAMPLE, False)
    p.add_argument("pairs", nargs="*", metavar="ID=CLASS", help="a source (id or name) and its class")
    p.add_argument("--from", dest="table", metavar="FILE", help="a table of ids or names and classes (CSV, VOTable, FITS ...)")
    p.add_argument("--id-col", metavar="COLUMN", help="--from's id column (default: id or source_id)")
    p.add_argument("--name-col", metavar="COLUMN", help="--from's name column (default: name, source_name, ...)")
    p.add_argument("--class-col", metavar="COLUMN", help="--from's class column (default: class, label, ...)")
    p.add_argument("--map", action="append", default=[], metavar="VALUE=CLASS", help="rename a class of --from (repeat)")
    p.add_argument("--remove", nargs="+", default=[], metavar="ID", help="remove the labels of these sources (ids or names)")
    p.add_argument("--list", action="store_true", help="print every label: id, name, class, who, origin, created_at")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="--list's output format (default table)")
    p.add_argument("--who", default=None, help="who labels (default: your login name)")
    p.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")


def _suggest_parser(sub) -> None:
    p = _sub(sub, "suggest", "The unlabelled sources worth labelling next (active learning).", SUGGEST_EXAMPLE)
    p.add_argument("-n", type=int, default=20, help="how many sources (default 20)")
    p.add_argument("--text", default=None, help="before any label: rank by closeness to this description")
    p.add_argument("--kind", choices=("margin", "entropy"), default="margin", help="the uncertainty (default margin)")
    p.add_argument("--prompts", default="fr", metavar="fr|FILE.yaml", help="the zero-shot prior's prompt set (default fr)")
    p.add_argument("--no-prior", action="store_true", help="no zero-shot prior (needs labels of two classes or --text)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default table)")
    _model_args(p, "default: the store's own")


def _store_parser(sub) -> None:
    help = "Look after a store: what it holds, the inputs that failed, export, delete."
    p = sub.add_parser("store", help=help, description=help, epilog=STORE_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    info = _sub(actions, "info", "What the store holds: counts, model, index, size, ingest times.", STORE_INFO_EXAMPLE, False)
    info.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    errors = _sub(actions, "errors", "The inputs that failed: path, reason, when.", STORE_ERRORS_EXAMPLE, False)
    errors.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output format (default table)")
    export = _sub(actions, "export", "Every source once, with its zero-shot label, to a file.", STORE_EXPORT_EXAMPLE, False)
    export.add_argument("--format", choices=EXPORT_FORMATS, default=None, help="votable, csv, parquet or fits (default: from --out's suffix)")
    export.add_argument("--out", required=True, metavar="FILE", help="the file to write (replaced when it exists)")
    export.add_argument("--vectors", action="store_true", help="add the embedding column (parquet and fits)")
    export.add_argument("--prompts", default="fr", metavar="NAME", help="the zero-shot labels of this prompt set (default fr)")
    delete = _sub(actions, "delete", "Remove sources (with their labels), or clear the errors table.", STORE_DELETE_EXAMPLE, False)
    delete.add_argument("ids", nargs="*", metavar="ID", help="the ids of the sources to remove")
    delete.add_argument("--where-name", metavar="GLOB", help="remove the sources whose name matches this pattern")
    delete.add_argument("--errors", action="store_true", help="clear the errors table (failed inputs are tried again by the next ingest)")


# ---------------------------------------------------------------------------


def _run_ingest(args) -> int:
    from .ingest import ingest

    common = dict(
        model=args.model, adapter=args.adapter, catalog=args.catalog, mosaics=args.mosaic, batch_size=args.batch_size,
        ann_threshold=args.ann_threshold, retry_failed=args.retry_failed, dtype=args.dtype, progress=not args.no_progress,
    )  # fmt: skip
    common["catalog_columns"] = {"ra": args.ra_col, "dec": args.dec_col, "name": args.name_col}
    if getattr(args, "retry_source", None):
        args.sources = [args.retry_source, *args.sources]
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

    if args.probe or args.abstain or args.alpha is not None:
        return _run_probe(args)
    summary = classify(args.store, args.prompts, model=args.model, adapter=args.adapter, device=args.device)
    print(summary.line(), file=sys.stderr)
    if args.json:
        print(json.dumps({"prompts": summary.prompts, "labelled": summary.labelled, "counts": summary.counts}))
    return 0


def _run_probe(args) -> int:
    """``classify --probe`` (or ``--abstain``/``--alpha`` alone: calibrated zero-shot)."""
    from .api import Survey

    alpha = 0.1 if args.alpha is None else args.alpha
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"--alpha must lie strictly between 0 and 1, not {alpha:g}")
    if args.no_prior and not args.probe:
        raise ValueError("--no-prior goes with --probe (calibrated zero-shot needs the prompts)")
    survey = Survey.open(args.store, model=args.model, adapter=args.adapter, device=args.device, prompts=args.prompts)
    model = "probe" if args.probe else "zeroshot"
    summary = survey.classify_probe(model=model, alpha=alpha, abstain=args.abstain, prior=not args.no_prior)
    if summary.fallback:
        print(f"{PROG} classify: note: {summary.fallback}", file=sys.stderr)
    for note in summary.notes:
        print(f"{PROG} classify: note: {note}", file=sys.stderr)
    print(f"{PROG} classify: {summary.line()}", file=sys.stderr)
    if args.json:
        print(json.dumps({k: None if isinstance(v, float) and v != v else v for k, v in summary.to_dict().items()}))  # NaN: null
    return 0


def _pairs(values: Sequence[str], what: str = "a source and its class as ID=CLASS (e.g. 3f2a9c0d1e4b5a6c=FR-I)") -> dict[str, str]:
    """``KEY=CLASS`` arguments as ``{key: class}`` (split at the last ``=``: a class has none)."""
    out = {}
    for value in values:
        key, sep, cls = value.rpartition("=")
        if not sep or not key.strip() or not cls.strip():
            raise argparse.ArgumentTypeError(f"{value!r}: give {what}")
        out[key.strip()] = cls.strip()
    return out


def _run_label(args) -> int:
    from collections import Counter

    from .api import Survey

    asked = [bool(args.pairs), args.table is not None, bool(args.remove), args.list]
    if sum(asked) != 1:
        raise argparse.ArgumentTypeError("give ID=CLASS pairs, --from FILE, --remove ID ... or --list (one of them)")
    survey = Survey.open(args.store)
    if args.list:
        return _list_labels(survey, args.format)
    if args.remove:
        done = survey.unlabel(args.remove)
        message = f"{done['removed']} labels removed" + (f" ({done['not_labelled']} of those sources had none)" if done["not_labelled"] else "")
    elif args.table is not None:
        summary = survey.import_labels(args.table, id_col=args.id_col, name_col=args.name_col, class_col=args.class_col,
                                       class_map=_pairs(args.map, "--map VALUE=CLASS"), who=args.who)  # fmt: skip
        done, message = summary.to_dict(), summary.line()
    else:
        done = survey.label(_pairs(args.pairs), who=args.who)
        message = f"{done['added']} labels added, {done['replaced']} replaced"
    counts = dict(sorted(Counter(survey.user_labels().values()).items()))
    total = ", ".join(f"{c}: {n}" for c, n in counts.items()) or "none"
    print(f"{PROG} label: {message}; {sum(counts.values())} labelled sources ({total})", file=sys.stderr)
    if args.json:
        print(json.dumps({**done, "labelled": counts}))
    return 0


def _list_labels(survey, fmt: str) -> int:
    from .api import Results
    from .labelling import labelled_sources

    rows = Results(labelled_sources(survey.store), columns=["id", "name", "class", "who", "origin", "created_at"])
    sys.stdout.write({"table": _table_text, "csv": lambda r: r.to_csv(), "json": lambda r: r.to_json()}[fmt](rows))
    print(f"{PROG} label: {len(rows)} labelled sources", file=sys.stderr)
    return 0


def _run_suggest(args) -> int:
    from .api import Survey

    if args.n < 1:
        raise ValueError(f"-n must be at least 1, not {args.n}")
    survey = Survey.open(args.store, model=args.model, adapter=args.adapter, device=args.device, prompts=args.prompts)
    found = survey.suggest(args.n, text=args.text, prior=not args.no_prior, kind=args.kind)
    sys.stdout.write({"table": _table_text, "csv": lambda r: r.to_csv(), "json": lambda r: r.to_json()}[args.format](found))
    by = found[0]["by"] if found else None
    how = {"query": f"closest to {args.text!r}", None: "none left unlabelled"}.get(by, f"{by} uncertainty")
    print(f"{PROG} suggest: {len(found)} sources to label next ({how})", file=sys.stderr)
    return 0


def _run_search(args) -> int:
    from .api import Survey
    from .search import write_results

    cone = _cone(args.cone, args.frame) if args.cone else None
    survey = Survey.open(args.store, model=args.model, adapter=args.adapter, device=args.device, prompts=args.prompts)
    write_results(survey.search(args.text, like=args.like, k=args.k, cone=cone), args.format)
    return 0


def _run_serve(args) -> int:
    from .serve import serve

    serve(args.store, host=args.host, port=args.port, model=args.model, adapter=args.adapter, device=args.device,
          prompts=args.prompts, hips=args.hips)  # fmt: skip
    return 0


def _info_text(info: dict) -> str:
    """``store info`` as aligned ``key  value`` lines."""
    index = info["index"]
    state = "up to date" if index["up_to_date"] else f"{index['unindexed_rows']} sources not in the saved index (the next query or ingest adds them)"
    labels = ", ".join(f"{name}: {n}" for name, n in info["labels"].items()) or "none (run `radioalign classify`)"
    rows = [
        ("store", info["store"]), ("sources", info["sources"]), ("errors", info["errors"]), ("labels", labels),
        ("model", info["model"]), ("adapter", info["adapter"] or "none"), ("fingerprint", (info["fingerprint"] or "")[:12]),
        ("dimension", info["dim"]), ("index", f"{index['kind']} ({state})"), ("recipe", info["recipe"]),
        ("size", f"{info['size_bytes'] / 2**20:.1f} MiB ({info['size_bytes']} bytes)"),
        ("first ingest", info["first_ingest"]), ("last ingest", info["last_ingest"]),
    ]  # fmt: skip
    return "".join(f"{key:<13}{'' if value is None else value}\n" for key, value in rows)


def _table_text(results) -> str:
    """Rows as a plain text table with a header (columns padded to their widest value)."""
    cells = [list(results.columns)] + [["" if r.get(c) is None else str(r[c]) for c in results.columns] for r in results]
    widths = [max(len(row[i]) for row in cells) for i in range(len(results.columns))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n" for row in cells)


def _run_store(args) -> int:
    from .api import Survey

    survey = Survey.open(args.store, prompts=getattr(args, "prompts", "fr"))
    if args.action == "info":
        info = survey.info()
        sys.stdout.write(json.dumps(info, indent=2) + "\n" if args.format == "json" else _info_text(info))
    elif args.action == "errors":
        errors = survey.errors()
        sys.stdout.write({"table": _table_text, "csv": lambda r: r.to_csv(), "json": lambda r: r.to_json()}[args.format](errors))
        print(f"{PROG} store errors: {len(errors)} failed inputs", file=sys.stderr)
    elif args.action == "export":
        n = survey.export(args.out, args.format, vectors=args.vectors)
        print(f"{PROG} store export: {n} sources written to {args.out}", file=sys.stderr)
    else:
        _run_delete(survey, args)
    return 0


def _run_delete(survey, args) -> None:
    asked = [bool(args.ids), args.where_name is not None, args.errors]
    if sum(asked) != 1:
        raise argparse.ArgumentTypeError("give source IDs, --where-name GLOB or --errors (one of them)")
    if args.errors:
        print(f"{PROG} store delete: {survey.delete(errors=True)} errors cleared", file=sys.stderr)
        return
    n = survey.delete(args.ids, where_name=args.where_name)
    missing = len(set(args.ids)) - n if args.ids else 0
    note = f" ({missing} of the ids given are not in the store)" if missing else ""
    print(f"{PROG} store delete: {n} sources deleted, with their labels{note}", file=sys.stderr)


_COMMANDS = {"ingest": _run_ingest, "classify": _run_classify, "search": _run_search, "serve": _run_serve, "store": _run_store,
             "label": _run_label, "suggest": _run_suggest, "neighbours": _run_neighbours}  # fmt: skip


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format=f"{PROG}: %(levelname)s: %(message)s", stream=sys.stderr)
    # the model loader's notice about the tokenizer's padding: for notebooks and -v, not every command
    logging.getLogger("radioalign.model").setLevel(logging.ERROR if verbosity <= 0 else logging.NOTSET)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Read by transformers and huggingface_hub when they are imported (in DataLoader workers too).
_QUIET_ENV = {"TRANSFORMERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}
_NOISY_MODULES = r"(transformers|tokenizers|huggingface_hub|safetensors)(\.|$)"


def _hf_quiet(quiet: bool) -> None:
    """Set the verbosity and progress bars of transformers (and quieten huggingface_hub's
    bars) if loaded: the environment reaches them only at import."""
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error() if quiet else hf_logging.set_verbosity_warning()
        hf_logging.disable_progress_bar() if quiet else hf_logging.enable_progress_bar()
    if quiet and "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


@contextlib.contextmanager
def _library_noise(verbosity: int):
    """Below -v: no warnings, notices or progress bars from the model libraries on stderr
    (the model-loading notices about a checkpoint's token ids, 'Loading weights' bars);
    everything is put back afterwards, for a caller of :func:`main` in the same process."""
    if verbosity > 0:
        yield
        return
    saved = {key: os.environ.get(key) for key in _QUIET_ENV}
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_NOISY_MODULES)
            warnings.filterwarnings("ignore", category=FutureWarning)  # addressed to developers, not users
            _hf_quiet(True)
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # huggingface_hub warns that its import-time setting wins
            _hf_quiet(os.environ.get("TRANSFORMERS_VERBOSITY") == "error")


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (no traceback); its type when it has no message."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point; returns the exit status (see the module)."""
    from .store import StoreError

    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
    prefix = f"{PROG} {command}: error:"
    try:
        with _library_noise(args.verbose):
            return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted (what was written stays; rerun to resume)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `radioalign search ... | head`: the reader has gone, nothing to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (StoreError, OSError, ValueError, argparse.ArgumentTypeError) as err:
        # Usage and input errors: the message says what to change (FileNotFoundError is an OSError).
        if args.verbose >= 2:
            traceback.print_exc()
        print(f"{prefix} {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - a user sees one line; -vv shows the traceback
        if args.verbose >= 2:
            raise
        print(f"{prefix} {type(err).__name__}: {_one_line(err)} (run with -vv for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
