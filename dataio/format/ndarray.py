"""A non-pickle byte encoding for numpy arrays.

Layout (all integers little-endian)::

    u8  len(dtype)      dtype string as numpy spells it (``'<f4'``, ``'|u1'``, ``'|b1'`` …), ASCII
    u8  ndim
    u64 × ndim          shape
    …                   the array's bytes in C order

Only plain numeric dtypes (bool, signed/unsigned integers, floats, complex) are accepted: object, string,
structured and datetime dtypes are refused on both sides, so decoding can never construct Python objects
from stored bytes.
"""

from __future__ import annotations

import math
import re
import struct

import numpy as np

from dataio.errors import FormatError

__all__ = ["decode_ndarray", "encode_ndarray"]

_ALLOWED_KINDS = frozenset("biufc")
_MAX_NDIM = 32
# Byte order, kind and item size, as numpy's ``dtype.str`` spells plain numeric dtypes: nothing else is parsed.
_DTYPE = re.compile(r"^[<>|=](?:b1|[iu](?:1|2|4|8)|f(?:2|4|8|10|12|16)|c(?:8|16|20|24|32))$")


def _check_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise TypeError(f"ndarray fields hold plain numeric dtypes only, got {dtype!r}")


def encode_ndarray(array: np.ndarray) -> bytes:
    """Encodes ``array`` (any numeric dtype, any shape) without pickle."""
    arr = np.asarray(array)
    _check_dtype(arr.dtype)
    dtype = arr.dtype.str.encode("ascii")
    head = struct.pack(f"<BB{arr.ndim}Q", len(dtype), arr.ndim, *arr.shape)
    return head[:1] + dtype + head[1:] + np.ascontiguousarray(arr).tobytes()


def decode_ndarray(buf: bytes | memoryview) -> np.ndarray:
    """Decodes bytes written by :func:`encode_ndarray`; returns a writable array owning its memory.

    Raises:
        FormatError: if the bytes are not a valid encoding (bad dtype, shape/size mismatch, truncation).
    """
    view = memoryview(buf)
    try:
        dlen = view[0]
        raw_dtype = bytes(view[1 : 1 + dlen]).decode("ascii")
        ndim = view[1 + dlen]
        if ndim > _MAX_NDIM:
            raise FormatError(f"ndarray with {ndim} dimensions (at most {_MAX_NDIM})")
        start = 2 + dlen
        shape = struct.unpack_from(f"<{ndim}Q", view, start)
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise FormatError(f"corrupt ndarray header: {exc}") from exc
    if not _DTYPE.match(raw_dtype):
        raise FormatError(f"ndarray dtype {raw_dtype[:40]!r} is not a plain numeric dtype")
    try:
        dtype = np.dtype(raw_dtype)
        _check_dtype(dtype)
    except TypeError as exc:
        raise FormatError(f"ndarray dtype {raw_dtype!r}: {exc}") from exc
    body = view[start + 8 * ndim :]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no wrap-around, compared before anything is built
    if len(body) != expected or any(d >= 1 << 62 for d in shape):
        raise FormatError(f"ndarray of shape {shape} and dtype {dtype} needs {expected} bytes, found {len(body)}")
    try:
        return np.frombuffer(body, dtype=dtype).reshape(shape).copy()
    except ValueError as exc:  # an empty array whose other dimensions numpy cannot represent
        raise FormatError(f"ndarray of shape {shape}: {exc}") from exc
