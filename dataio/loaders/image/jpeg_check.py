"""The verdict on a damaged or oversized image that every decode path gives before decoding a pixel.

The native kernel (``native/jpeg_end.c``, ``native/jpeg_window.c``) and the Python path
(:mod:`dataio.loaders.image.decode`) refuse the same bytes, whatever the crop:

- declared ``width × height`` over :data:`MAX_PIXELS` (the kernel's limit, PIL's decompression-bomb limit): refused
  from the header, before anything is allocated, even when ``PIL.Image.MAX_IMAGE_PIXELS`` is turned off;
- a JPEG whose bytes end before the EOI marker that follows its last scan (a cut file): refused from the
  structure alone (:func:`jpeg_end`), even when ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is set;
- a JPEG whose entropy-coded data ends early (libjpeg's "premature end of data segment": e.g. a header declaring
  more pixels than the data holds): refused when it is the first damage libjpeg-turbo reports
  (:func:`entropy_ended_early`), which PIL would otherwise paper over with grey.

:func:`jpeg_end` is the Python twin of ``dw_jpeg_end`` (``dataio._native.jpeg_end``); tests check that both give
the same answer on every cut of real JPEGs and on fuzzed bytes.
"""

from __future__ import annotations

from typing import Any

from dataio.loaders import native

__all__ = [
    "BAD_LENGTH",
    "ENTROPY_ENDED_EARLY",
    "MAX_PIXELS",
    "NOT_JPEG",
    "NO_SCAN",
    "TRUNCATED",
    "entropy_ended_early",
    "jpeg_end",
    "refusal",
]

MAX_PIXELS = 178_956_970  # = dataio._native.MAX_PIXELS (DW_MAX_PIXELS): PIL's bomb limit, 2 x MAX_IMAGE_PIXELS
NOT_JPEG, TRUNCATED, NO_SCAN, BAD_LENGTH = -1, -2, -3, -4  # jpeg_end's answers (DW_END_* in native/jpeg_end.h)
#: libjpeg-turbo's words (lower case) for entropy-coded data that ends before the image does: a marker where data
#: should be (JWRN_HIT_MARKER), or EOI where a restart marker should be (JWRN_MUST_RESYNC with 0xd9)
ENTROPY_ENDED_EARLY = ("premature end of data segment", "found marker 0xd9 instead of rst")

_SOI, _EOI, _SOS, _TEM, _RST0, _RST7 = 0xD8, 0xD9, 0xDA, 0x01, 0xD0, 0xD7
_WHY = {
    NOT_JPEG: "not a JPEG (no SOI marker)",
    TRUNCATED: "truncated: the data ends before the EOI marker",
    NO_SCAN: "no image data (EOI before any scan)",
    BAD_LENGTH: "corrupt marker segment (length under 2)",
}


def jpeg_end(data: bytes | bytearray | memoryview) -> int:
    """The offset just past the JPEG's EOI, or :data:`NOT_JPEG`, :data:`TRUNCATED`, :data:`NO_SCAN` or
    :data:`BAD_LENGTH` (< 0). No decoding; O(len(data)).

    Markers are walked from SOI; a marker segment is skipped by its length; anything between markers (a scan's
    entropy-coded data, or garbage libjpeg skips with a warning) is skipped to the next marker, where 0xFF followed
    by 0x00 (a stuffed byte) or RST0-7 does not end it and 0xFF fill bytes before a marker code are skipped. The
    walk ends at the first EOI. Entropy-coded data cannot contain FF D9, so a file cut anywhere before its EOI
    gives :data:`TRUNCATED`.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    n = len(buf)
    if n < 2 or buf[0] != 0xFF or buf[1] != _SOI:
        return NOT_JPEG
    i, scans = 2, 0
    while True:
        ff = buf.find(b"\xff", i)
        if ff < 0:
            return TRUNCATED
        i = ff + 1
        while i < n and buf[i] == 0xFF:  # fill bytes
            i += 1
        if i == n:
            return TRUNCATED
        code = buf[i]
        i += 1
        if code == 0x00 or _RST0 <= code <= _RST7 or code in (_SOI, _TEM):
            continue
        if code == _EOI:
            return i if scans else NO_SCAN
        if n - i < 2:
            return TRUNCATED
        seg = (buf[i] << 8) | buf[i + 1]  # counts its own two bytes
        if seg < 2:
            return BAD_LENGTH
        if seg > n - i:
            return TRUNCATED
        i += seg
        scans += code == _SOS


def refusal(data: Any, width: int, height: int) -> str | None:
    """Why these bytes, whose header declares ``width × height``, are refused before decoding; None if they are not.

    Checks the pixel bound (any format) and, for bytes starting like a JPEG, the structure (:func:`jpeg_end`).
    """
    if width * height > MAX_PIXELS:
        return (
            f"the header declares {width}x{height} = {width * height} pixels, over the decode limit of "
            f"{MAX_PIXELS} (refused before decoding)"
        )
    if bytes(data[:2]) == b"\xff\xd8":
        end = _structure_end(data)
        if end < 0:
            return f"{_WHY[end]} (JPEG of {width}x{height} declared, {len(data)} bytes)"
    return None


def entropy_ended_early(message: str) -> bool:
    """Whether libjpeg-turbo's warning ``message`` says the entropy-coded data ended before the image did."""
    text = message.lower()
    return any(words in text for words in ENTROPY_ENDED_EARLY)


def _structure_end(data: Any) -> int:
    """:func:`jpeg_end` at C speed where ``dataio._native`` is built (the two agree on every input:
    tests/loaders/test_damaged_jpeg.py), the Python twin otherwise (or with ``pytest --no-native``)."""
    if native.AVAILABLE:
        return int(native.require().jpeg_end(data))
    return jpeg_end(data)

