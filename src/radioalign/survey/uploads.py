"""Images uploaded to the search page, read as an ingest reads a file, under hostile input.

An upload is a stranger's bytes, so every step is bounded before it is taken:

* the request streams into a buffer in memory (no temporary file) that refuses more than
  ``MAX_UPLOAD_BYTES`` as soon as they arrive;
* gzip (a ``.gz`` name or gzip's magic bytes) is inflated a chunk at a time and refused
  as soon as the output would pass ``MAX_DECOMPRESSED_BYTES``: a bomb never unfolds;
* a FITS file's headers are walked on the raw bytes before astropy parses anything:
  at most ``MAX_HDUS`` HDUs and ``MAX_FITS_HEADER_BYTES`` of headers, and at most
  ``MAX_PIXELS`` image pixels declared, so no data is read for an oversized image;
* a PNG or JPEG's declared size is checked before its pixels are decoded.

What passes is read by the ingest's own readers (:func:`~.readers.read_fits`,
:func:`~.readers.read_picture`) and :func:`~.images.model_image`. A refusal is a
:class:`Refused` carrying an HTTP status and a fixed sentence for the client: never a
path, a file name or an exception's text (the real error goes to the server's log).
"""

from __future__ import annotations

import io
import logging
import math
import re
import zlib
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 64 * 2**20  # the file as sent
MAX_DECOMPRESSED_BYTES = 64 * 2**20  # a .gz file once inflated
MAX_PIXELS = 4096 * 4096  # all image HDUs of a FITS file together, or a picture
MAX_HDUS = 64
MAX_FITS_HEADER_BYTES = 2 * 2**20  # all headers together: 26 000 cards
MAX_FORM_OVERHEAD = 64 * 2**10  # boundaries, part headers and the small fields beside the file
MAX_FIELD_BYTES = 1024  # k, ra, dec, radius
MAX_PARTS = 16
CHUNK = 2**20

MiB = 2**20
UNREADABLE = "cannot read the upload as a FITS, PNG or JPEG image"
NO_IMAGE = "the upload holds no usable 2-D image (it is truncated, blank, constant or not 2-D)"
BAD_FORM = "send the image as multipart/form-data in a field named 'image'"
TOO_BIG = f"images up to {MAX_UPLOAD_BYTES // MiB} MiB"
TOO_BIG_INFLATED = f"the image decompresses to more than {MAX_DECOMPRESSED_BYTES // MiB} MiB"
TOO_MANY_PIXELS = f"images up to {MAX_PIXELS} pixels (4096 x 4096)"
TOO_MANY_HEADERS = f"FITS files up to {MAX_HDUS} HDUs and {MAX_FITS_HEADER_BYTES // MiB} MiB of headers"

GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class Refused(ValueError):
    """A request the server refuses: ``status`` (HTTP) and ``detail``, a fixed sentence
    the client may see."""

    status = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class TooLarge(Refused):
    """An upload past one of the caps (413)."""

    status = 413


# ---------------------------------------------------------------------------
# The request: multipart/form-data streamed into a bounded buffer


@dataclass
class Upload:
    """The form of ``POST /api/search``: the image's bytes and name, and the text fields."""

    filename: str
    data: bytearray
    fields: dict[str, str] = field(default_factory=dict)


class _FormReader:
    """python-multipart callbacks keeping the one file part (field ``image``) in a bounded
    buffer and the other fields as short texts."""

    def __init__(self, file_field: str = "image"):
        self.file_field, self.upload, self.fields, self.parts = file_field, None, {}, 0
        self._header, self._disposition, self._name, self._value, self._is_file = [b"", b""], b"", "", bytearray(), False

    def callbacks(self) -> dict:
        names = ("on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value",
                 "on_header_end", "on_headers_finished")  # fmt: skip
        return {name: getattr(self, name) for name in names}

    def on_part_begin(self):
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Refused(BAD_FORM)
        self._disposition, self._name, self._value, self._is_file = b"", "", bytearray(), False

    def on_header_field(self, data, start, end):
        self._header[0] += data[start:end]  # the parser caps a header line's length

    def on_header_value(self, data, start, end):
        self._header[1] += data[start:end]

    def on_header_end(self):
        if self._header[0].strip().lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def on_headers_finished(self):
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = self._name == self.file_field and b"filename" in options
        if self._is_file:
            if self.upload is not None:
                raise Refused(BAD_FORM)  # one image per query
            self.upload = Upload(options[b"filename"].decode("utf-8", "replace"), self._value)

    def on_part_data(self, data, start, end):
        if len(self._value) + (end - start) > (MAX_UPLOAD_BYTES if self._is_file else MAX_FIELD_BYTES):
            raise TooLarge(TOO_BIG) if self._is_file else Refused(BAD_FORM)
        self._value += data[start:end]

    def on_part_end(self):
        if not self._is_file:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


async def read_upload(request) -> Upload:
    """The form of a ``multipart/form-data`` request, streamed from the client into memory:
    refused (413) as soon as the body passes the image cap (or at once, from its declared
    Content-Length), and (400) when it is no such form or holds no ``image`` file."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    limit = MAX_UPLOAD_BYTES + MAX_FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(TOO_BIG)
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise Refused(BAD_FORM)
    reader, received = _FormReader(), 0
    try:
        parser = MultipartParser(options[b"boundary"], reader.callbacks(), max_header_size=8192)
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:  # a body sent without (or past) its Content-Length
                raise TooLarge(TOO_BIG)
            parser.write(chunk)
        parser.finalize()
    except FormParserError:
        raise Refused(BAD_FORM) from None
    if reader.upload is None:
        raise Refused(BAD_FORM)
    reader.upload.fields = reader.fields
    return reader.upload


# ---------------------------------------------------------------------------
# The image: gzip, then FITS or PNG/JPEG by their magic bytes


def gunzip(data: bytes | bytearray, limit: int = MAX_DECOMPRESSED_BYTES) -> bytearray:
    """gzip data inflated a chunk at a time (several members are read one after the
    other, as ``gzip`` does), refused (413) as soon as the output passes ``limit`` bytes:
    no more than ``limit`` plus one chunk is ever held."""
    view, out = memoryview(data), bytearray()
    inflater, offset, pending = zlib.decompressobj(16 + zlib.MAX_WBITS), 0, b""
    try:
        while pending or offset < len(view):
            if not pending:  # feed the input a chunk at a time: the unconsumed tail is copied on each call
                pending, offset = view[offset : offset + CHUNK], offset + CHUNK
            if inflater.eof:  # a member ended and more bytes follow: the next member
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += inflater.decompress(pending, CHUNK)
            if len(out) > limit:
                raise TooLarge(TOO_BIG_INFLATED)
            pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
    except zlib.error:
        raise Refused(UNREADABLE) from None
    if not inflater.eof:
        raise Refused(UNREADABLE)  # the stream stops short: a truncated file
    return out


def read_upload_image(data: bytes | bytearray, filename: str):
    """The upload as the :class:`~.images.Picture` an ingest would read from such a file,
    within the caps; what it is comes from its magic bytes, not from its name."""
    from .readers import read_fits, read_picture

    if filename.lower().endswith(".gz") or data[:2] == GZIP_MAGIC:
        data = gunzip(data)
    if data[:9] == FITS_MAGIC:
        check_fits_headers(data)
        # read_fits hands its argument to astropy's fits.open, which takes a file object too.
        return read_fits(io.BytesIO(data))
    if data[:8] == PNG_MAGIC or data[:3] == JPEG_MAGIC:
        check_picture_size(data)
        return read_picture(io.BytesIO(data))
    raise Refused(UNREADABLE)


def model_input(data: bytes | bytearray, filename: str) -> np.ndarray:
    """The model's ``uint8`` image of an upload, preprocessed as at ingest. Anything a
    hostile file makes the readers raise becomes a fixed :class:`Refused` sentence; the
    real error is logged here."""
    from .images import BadImageError, model_image

    try:
        image, _ = model_image(read_upload_image(data, filename))
    except Refused:
        raise
    except BadImageError as err:
        log.info("upload %r: no model input: %s", filename, err)
        raise Refused(NO_IMAGE) from None
    except Exception as err:  # noqa: BLE001 - a hostile file can make a reader raise anything
        log.info("upload %r unreadable: %r", filename, err)
        raise Refused(UNREADABLE) from None
    return image


def check_picture_size(data: bytes | bytearray) -> None:
    """Refuse (413) a PNG or JPEG that declares more than ``MAX_PIXELS`` pixels, from its
    header alone (Pillow decodes pixels only on ``load``)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as im:
            width, height = im.size
    except Image.DecompressionBombError:  # Pillow's own, far higher, cap
        raise TooLarge(TOO_MANY_PIXELS) from None
    if width * height > MAX_PIXELS:
        raise TooLarge(TOO_MANY_PIXELS)


# ---------------------------------------------------------------------------
# FITS headers, walked on the raw bytes

BLOCK, CARD = 2880, 80
BITPIX = {8, 16, 32, 64, -32, -64}
STRUCTURAL = re.compile(rb"(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|GROUPS|ZIMAGE|ZNAXIS\d*)")


def check_fits_headers(data: bytes | bytearray) -> None:
    """Refuse a FITS file before astropy parses it: more than ``MAX_HDUS`` HDUs or
    ``MAX_FITS_HEADER_BYTES`` of headers, or more than ``MAX_PIXELS`` image pixels
    declared (413); ambiguous structure (400). Only the structural cards are read, and
    each HDU's data is skipped by the size its header declares, as astropy does."""
    offset = headers = pixels = 0
    for hdu in range(MAX_HDUS + 1):
        if offset >= len(data):
            return
        if hdu == MAX_HDUS:
            raise TooLarge(TOO_MANY_HEADERS)
        found = _header_cards(data, offset, MAX_FITS_HEADER_BYTES - headers)
        if found is None:
            return  # the bytes end before an END card: astropy stops there too (and reads nothing big)
        cards, end = found
        headers += end - offset
        size, image = _hdu_sizes(cards)
        pixels += image
        if pixels > MAX_PIXELS:
            raise TooLarge(TOO_MANY_PIXELS)
        offset = end + math.ceil(size / BLOCK) * BLOCK


def _header_cards(data, start: int, budget: int) -> tuple[dict[bytes, bytes], int] | None:
    """The structural cards (keyword -> raw value) of the header at ``start`` and the
    offset just past it; None when the data end first; refused past ``budget`` bytes."""
    cards: dict[bytes, bytes] = {}
    for block in range(start, start + max(budget, 0), BLOCK):
        if block + BLOCK > len(data):
            return None
        for pos in range(block, block + BLOCK, CARD):
            key = bytes(data[pos : pos + 8]).rstrip()
            if key == b"END":
                return cards, block + BLOCK
            if STRUCTURAL.fullmatch(key) and data[pos + 8 : pos + 10] == b"= ":
                if key in cards:  # which one astropy would believe is a guess: refuse
                    raise Refused(UNREADABLE)
                cards[key] = bytes(data[pos + 10 : pos + CARD]).split(b"/")[0].strip()
    raise TooLarge(TOO_MANY_HEADERS)


def _hdu_sizes(cards: dict[bytes, bytes]) -> tuple[int, int]:
    """``(data bytes, image pixels)`` of one HDU from its structural cards (FITS 4.0,
    section 4.4.1); random groups and malformed structure are refused."""
    xtension = cards.get(b"XTENSION", b"").strip(b"' ").upper()
    bitpix, naxis = _integer(cards, b"BITPIX"), _integer(cards, b"NAXIS")
    if bitpix not in BITPIX or not 0 <= naxis <= 999 or cards.get(b"GROUPS", b"").startswith(b"T"):
        raise Refused(UNREADABLE)
    axes = [_integer(cards, b"NAXIS%d" % n) for n in range(1, naxis + 1)]
    pcount, gcount = _integer(cards, b"PCOUNT", 0), _integer(cards, b"GCOUNT", 1)
    size = abs(bitpix) // 8 * gcount * (pcount + math.prod(axes)) if naxis else 0
    if xtension in (b"BINTABLE", b"TABLE"):
        if not cards.get(b"ZIMAGE", b"").startswith(b"T"):
            return size, 0  # a table: never read as an image
        znaxis = _integer(cards, b"ZNAXIS")  # a tile-compressed image: its pixels once decompressed
        return size, math.prod(_integer(cards, b"ZNAXIS%d" % n) for n in range(1, min(znaxis, 999) + 1))
    if pcount != 0 or gcount != 1:  # an image has neither: astropy and this walk could disagree
        raise Refused(UNREADABLE)
    return size, math.prod(axes) if naxis else 0


def _integer(cards: dict[bytes, bytes], key: bytes, default: int | None = None) -> int:
    """A structural card's value: a non-negative integer (BITPIX may be negative)."""
    value = cards.get(key)
    if value is None and default is not None:
        return default
    if value is None or not re.fullmatch(rb"[+-]?\d{1,18}", value) or (int(value) < 0 and key != b"BITPIX"):
        raise Refused(UNREADABLE)
    return int(value)
