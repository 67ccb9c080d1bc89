"""Tables as the Virtual Observatory expects them: UCDs, units and descriptions on every
column the survey tool writes (search results, store exports, the cone-search endpoint).

One registry (:data:`COLUMNS`) says what each column means; :func:`describe` puts it on
an ``astropy.table.Table``, and :func:`votable_bytes` writes a VOTable that
``astropy.io.votable.parse(..., verify="exception")`` accepts. The UCDs (IVOA UCD1+):

=================  =========================  =====  ====================================
column             UCD                        unit   meaning
=================  =========================  =====  ====================================
``id``             ``meta.id;meta.main``             the source's id (a hash of its pixels)
``name``           ``meta.id``                       the file or catalogue name
``ra``, ``dec``    ``pos.eq.ra;meta.main`` …  deg    ICRS position of the cut-out's centre
``score``          ``stat.correlation``              cosine similarity to the query
``label``          ``src.class``                     the zero-shot (or probe) class
``probability``    ``stat.probability``              the label's probability
``p_<class>``      ``stat.probability``              the probability of each class
``user_label``     ``src.class``                     the class a person gave (``radioalign label``)
``predicted``      ``src.class``                     the probe's (or calibrated zero-shot) class; empty
                                                     where the run abstained (an open set)
``prediction_set`` ``src.class``                     the conformal prediction set, e.g. ``FR-I|FR-II``
``predicted_by``   ``meta.code``                     ``probe`` or ``zeroshot`` (calibrated)
``cal_p_<class>``  ``stat.probability``              the calibrated probability of each class
``source``         ``meta.ref``                      the last path seen (or catalogue#name)
``created_at``     ``time.processing``               when the source was ingested (UTC)
``distance``       ``pos.angDistance``        deg    distance from a cone search's centre
``flags``          ``meta.code.qual``                flags raised at ingest (orientation-unknown)
``preprocessing``  ``meta.note``                     how the cut-out became the model input
``path``           ``meta.ref``                      an input that failed: its path or catalogue#name
``reason``         ``meta.note``                     why it failed
``when``           ``time.processing``               when it failed (UTC)
=================  =========================  =====  ====================================

A store export streams: :func:`votable_parts` gives the document around the rows (its
FIELDs from an empty table), :func:`tabledata` the rows of each batch, XML-escaped.
"""

from __future__ import annotations

import io
import math
import re
from typing import Iterable, Sequence
from xml.sax.saxutils import escape

# column -> (UCD, unit or None, description)
COLUMNS: dict[str, tuple[str, str | None, str]] = {
    "id": ("meta.id;meta.main", None, "source id: a hash of the cut-out's pixels and WCS"),
    "name": ("meta.id", None, "source name (file name or catalogue name)"),
    "ra": ("pos.eq.ra;meta.main", "deg", "right ascension of the cut-out centre (ICRS)"),
    "dec": ("pos.eq.dec;meta.main", "deg", "declination of the cut-out centre (ICRS)"),
    "score": ("stat.correlation", None, "cosine similarity between the query and the source's image embedding"),
    "label": ("src.class", None, "predicted class (zero-shot)"),
    "probability": ("stat.probability", None, "probability of the predicted class"),
    "source": ("meta.ref", None, "where the source was read from: the last path seen, or catalogue#name"),
    "created_at": ("time.processing", None, "when the source was ingested (UTC, ISO 8601)"),
    "distance": ("pos.angDistance", "deg", "angular distance from the cone's centre (great circle)"),
    "flags": ("meta.code.qual", None, "flags raised at ingest, e.g. orientation-unknown (a FITS without a celestial WCS)"),
    "preprocessing": ("meta.note", None, "how the cut-out became the model input (recipe and geometry)"),
    "user_label": ("src.class", None, "class given by a person or an imported catalogue (radioalign label)"),
    "predicted": ("src.class", None, "class predicted by the probe or calibrated zero-shot; empty where it abstained"),
    "prediction_set": ("src.class", None, "conformal prediction set: the classes joined by | (more than one: not sure)"),
    "predicted_by": ("meta.code", None, "what predicted: probe (trained on the user labels) or zeroshot (calibrated)"),
    "path": ("meta.ref", None, "the input that failed: its path, or catalogue#name"),
    "reason": ("meta.note", None, "why the input failed"),
    "when": ("time.processing", None, "when the input failed (UTC, ISO 8601)"),
}
PROBABILITY_PREFIX = "p_"
CALIBRATED_PREFIX = "cal_p_"


def probability_column(cls: str) -> str:
    """The column of class ``cls``'s probability: ``p_`` and the class with every run of
    characters other than letters, digits and ``_`` made ``_`` (``FR-I`` -> ``p_FR_I``),
    so that it is a valid VOTable/FITS/SQL name."""
    return PROBABILITY_PREFIX + re.sub(r"\W+", "_", str(cls)).strip("_")


def calibrated_column(cls: str) -> str:
    """The column of class ``cls``'s calibrated probability (``FR-I`` -> ``cal_p_FR_I``)."""
    return CALIBRATED_PREFIX + probability_column(cls)[len(PROBABILITY_PREFIX) :]


def is_probability(name: str) -> bool:
    return name.startswith(PROBABILITY_PREFIX) or name.startswith(CALIBRATED_PREFIX)


def known_columns(classes: Iterable[str] = (), predicted: Iterable[str] = ()) -> dict[str, tuple[str, str | None, str]]:
    """:data:`COLUMNS` with the ``p_<class>`` column of each of ``classes`` (zero-shot) and
    the ``cal_p_<class>`` column of each of ``predicted`` (the stored predictions')."""
    known = dict(COLUMNS)
    for cls in classes:
        known[probability_column(cls)] = ("stat.probability", None, f"probability of class {cls}")
    for cls in predicted:
        known[calibrated_column(cls)] = ("stat.probability", None, f"calibrated probability of class {cls}")
    return known


def column_meta(name: str, known: dict) -> tuple[str | None, str | None, str | None]:
    """``(ucd, unit, description)`` of column ``name``: from ``known``, else by its prefix
    (a class's probability), else ``(None, None, None)``."""
    if name in known:
        return known[name]
    if name.startswith(CALIBRATED_PREFIX):
        return "stat.probability", None, f"calibrated probability of class {name[len(CALIBRATED_PREFIX):]}"
    if name.startswith(PROBABILITY_PREFIX):
        return "stat.probability", None, f"probability of class {name[len(PROBABILITY_PREFIX):]}"
    return None, None, None


def describe(table, classes: Iterable[str] = (), predicted: Iterable[str] = ()) -> object:
    """Put :data:`COLUMNS`'s UCDs, units and descriptions on ``table``'s columns (in
    place) and return it; ``classes`` names the ``p_<class>`` columns' classes and
    ``predicted`` the ``cal_p_<class>`` columns'."""
    import astropy.units as u

    known = known_columns(classes, predicted)
    for name in table.colnames:
        ucd, unit, text = column_meta(name, known)
        if ucd is not None:
            column = table[name]
            column.meta["ucd"] = ucd
            column.description = text
            if unit is not None:
                column.unit = u.Unit(unit)
    return table


def _votable_file(table, resource_name: str, infos: dict[str, str] | None):
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Info

    votable = from_table(table)
    votable.version = "1.4"
    resource = votable.resources[0]
    resource.name = resource_name
    for field in resource.tables[0].fields:
        ucd = table[field.name].meta.get("ucd")
        if ucd:
            field.ucd = ucd
    for key, value in (infos or {}).items():
        resource.infos.append(Info(name=key, value=str(value)))
    return votable


def votable_bytes(table, *, resource_name: str = "radioalign", infos: dict[str, str] | None = None) -> bytes:
    """``table`` as VOTable 1.4 bytes (TABLEDATA), with its columns' UCDs as FIELD
    ``ucd`` attributes and ``infos`` as ``INFO`` elements of the resource."""
    buf = io.BytesIO()
    _votable_file(table, resource_name, infos).to_xml(buf, tabledata_format="tabledata")
    return buf.getvalue()


def votable_parts(table, *, resource_name: str = "radioalign", infos: dict[str, str] | None = None) -> tuple[str, str]:
    """``(head, tail)``: the VOTable of ``table``'s columns (described, e.g. an empty
    table) split where its rows go, so that a writer streams ``head``, then
    :func:`tabledata` of each batch, then ``tail``. Text columns get ``arraysize="*"``."""
    votable = _votable_file(table[:0], resource_name, infos)
    for field in votable.resources[0].tables[0].fields:
        if field.datatype in ("char", "unicodeChar"):
            field.arraysize = "*"
    buf = io.BytesIO()
    votable.to_xml(buf, tabledata_format="tabledata")
    text = buf.getvalue().decode("utf-8")
    cut = text.rindex("</TABLE>")
    cut = text.rindex("\n", 0, cut) + 1
    return text[:cut] + "   <DATA>\n    <TABLEDATA>\n", "    </TABLEDATA>\n   </DATA>\n" + text[cut:]


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _td(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "<TD/>"  # null (a missing position, an unlabelled source)
    if isinstance(value, float):
        return f"<TD>{value!r}</TD>"
    return f"<TD>{escape(_NOT_XML.sub('', str(value)))}</TD>"


def tabledata(columns: Sequence[Sequence]) -> str:
    """``<TR>`` rows of TABLEDATA for the values of each column (in FIELD order): text
    XML-escaped, characters XML cannot hold dropped, None and NaN as empty cells."""
    return "".join("     <TR>" + "".join(map(_td, row)) + "</TR>\n" for row in zip(*columns))


def error_votable(message: str) -> bytes:
    """A VOTable that reports an error as Simple Cone Search 1.03 asks (an ``INFO`` named
    ``Error``) and as DALI does (``QUERY_STATUS`` = ``ERROR``), with no table."""
    from xml.sax.saxutils import quoteattr

    text = quoteattr(" ".join(str(message).split())[:300])
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
        f' <RESOURCE type="results">\n  <INFO name="QUERY_STATUS" value="ERROR">{text[1:-1]}</INFO>\n'
        f'  <INFO name="Error" value={text}/>\n </RESOURCE>\n</VOTABLE>\n'
    ).encode("utf-8")
