"""Named, typed fields of a sample and their byte encodings.

A :class:`Schema` is an ordered tuple of :class:`Field` s. Each field has a type (``bytes``, ``str``,
``int``, ``float`` or ``ndarray``) and an optional per-field compression (``zstd``). A record — one sample
on disk — is ``F`` little-endian ``u32`` payload lengths followed by the ``F`` payloads (see docs/format.md).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from dataio.errors import FormatError
from dataio.format.ndarray import decode_ndarray, encode_ndarray

__all__ = ["COMPRESSIONS", "FIELD_TYPES", "Field", "Schema"]

FIELD_TYPES = ("bytes", "str", "int", "float", "ndarray")
COMPRESSIONS = (None, "zstd")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ZSTD_LEVEL = 3
_MAX_DECOMPRESSED = 1 << 31  # bytes one zstd field may decompress to
# zstd emits at most one 128 KiB block per 4 bytes of input (an RLE block: 3-byte header + 1 byte), so no frame
# holds more than 32768 times its own length (256 MiB of zeros compress to 8,211 bytes, 32,692x). A frame that
# declares more is lying and is refused before its size is allocated; a frame that declares nothing is stopped
# as soon as its output passes that bound.
_MAX_ZSTD_RATIO = 1 << 15
_ZSTD_CHUNK = 1 << 20


def _zstd_decompress(payload: memoryview) -> bytes:
    """Decompresses one zstd frame; memory grows with the real output, never with a size the frame claims.

    Raises:
        FormatError: for a corrupt frame, a declared content size beyond the caps, or output beyond
            ``_MAX_DECOMPRESSED``.
    """
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise FormatError(f"bad zstd frame header: {exc}") from exc
    if declared > _MAX_DECOMPRESSED or declared > _MAX_ZSTD_RATIO * len(payload):
        raise FormatError(
            f"zstd frame declares {declared} bytes of content from {len(payload)} compressed bytes "
            f"(a field holds at most {_MAX_DECOMPRESSED} bytes, at most {_MAX_ZSTD_RATIO}x its compressed size)"
        )
    dctx = zstandard.ZstdDecompressor()
    try:
        if declared >= 0:  # a known, plausible size: one allocation of it, checked by zstd against the output
            return dctx.decompress(payload, max_output_size=_MAX_DECOMPRESSED)
        # no declared size (dataio's writer always declares it): the same bound, enforced on the output as it grows
        limit = min(_MAX_DECOMPRESSED, _MAX_ZSTD_RATIO * len(payload))
        chunks, total = [], 0
        with dctx.stream_reader(payload, read_across_frames=False) as reader:
            while chunk := reader.read(min(_ZSTD_CHUNK, limit - total + 1)):
                total += len(chunk)
                if total > limit:
                    raise FormatError(
                        f"zstd payload of {len(payload)} bytes decompresses to more than {limit} bytes (at most "
                        f"{_MAX_DECOMPRESSED} bytes, at most {_MAX_ZSTD_RATIO}x its compressed size)"
                    )
                chunks.append(chunk)
        return b"".join(chunks)
    except zstandard.ZstdError as exc:
        raise FormatError(f"bad zstd payload: {exc}") from exc


def _enc_int(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"expected an int, got {type(value).__name__}")
    return struct.pack("<q", int(value))


def _enc_float(value: Any) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"expected a float, got {type(value).__name__}")
    return struct.pack("<d", float(value))


def _enc_bytes(value: Any) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _enc_str(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected a str, got {type(value).__name__}")
    return value.encode("utf-8")


def _dec_fixed(fmt: str) -> Callable[[memoryview], Any]:
    def decode(buf: memoryview) -> Any:
        if len(buf) != 8:
            raise FormatError(f"expected 8 bytes, found {len(buf)}")
        return struct.unpack(fmt, buf)[0]

    return decode


def _dec_str(buf: memoryview) -> str:
    try:
        return str(buf, "utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"invalid UTF-8: {exc}") from exc


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "bytes": _enc_bytes,
    "str": _enc_str,
    "int": _enc_int,
    "float": _enc_float,
    "ndarray": lambda v: encode_ndarray(v) if isinstance(v, np.ndarray) else _raise_type("an ndarray", v),
}
_DECODERS: dict[str, Callable[[memoryview], Any]] = {
    "bytes": bytes,
    "str": _dec_str,
    "int": _dec_fixed("<q"),
    "float": _dec_fixed("<d"),
    "ndarray": decode_ndarray,
}


def _raise_type(what: str, value: Any) -> bytes:
    raise TypeError(f"expected {what}, got {type(value).__name__}")


@dataclass(frozen=True)
class Field:
    """One named field of a sample.

    Args:
        name: Identifier (letters, digits, underscore; at most 64 characters).
        type: One of :data:`FIELD_TYPES`.
        compression: ``None`` or ``"zstd"`` (use for compressible payloads; JPEG bytes gain nothing).
    """

    name: str
    type: str
    compression: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f"invalid field name {self.name!r}")
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name!r}: unknown type {self.type!r}, expected one of {FIELD_TYPES}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"field {self.name!r}: unknown compression {self.compression!r}")

    def encode(self, value: Any) -> bytes:
        """Value → stored payload bytes."""
        try:
            payload = _ENCODERS[self.type](value)
        except TypeError as exc:
            raise TypeError(f"field {self.name!r}: {exc}") from None
        if self.compression == "zstd":
            payload = zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(payload)
        return payload

    def decode(self, payload: memoryview) -> Any:
        """Stored payload bytes → value."""
        if self.compression == "zstd":
            try:
                payload = memoryview(_zstd_decompress(payload))
            except FormatError as exc:
                raise FormatError(f"field {self.name!r}: {exc}") from exc
        try:
            return _DECODERS[self.type](payload)
        except FormatError as exc:
            raise FormatError(f"field {self.name!r}: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "compression": self.compression}


@dataclass(frozen=True)
class Schema:
    """An ordered collection of :class:`Field` s with unique names."""

    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("a schema needs at least one field")
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in schema: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def encode_parts(self, sample: Mapping[str, Any]) -> list[bytes]:
        """Encodes one sample into the parts of its record: the lengths header, then one payload per field.

        ``b"".join(parts)`` is the record; writers that stream may write the parts without joining them.
        """
        if len(sample) != len(self.fields) or any(f.name not in sample for f in self.fields):
            missing = [n for n in self.names if n not in sample]
            extra = [k for k in sample if k not in self.names]
            raise ValueError(f"sample does not match schema {self.names}: missing {missing}, unexpected {extra}")
        payloads = [f.encode(sample[f.name]) for f in self.fields]
        return [struct.pack(f"<{len(payloads)}I", *(len(p) for p in payloads)), *payloads]

    def encode(self, sample: Mapping[str, Any]) -> bytes:
        """Encodes one sample (a mapping with exactly the schema's field names) into record bytes."""
        return b"".join(self.encode_parts(sample))

    def decode(self, record: bytes | memoryview, *, views: bool = False) -> dict[str, Any]:
        """Decodes record bytes into a ``{name: value}`` dict.

        Args:
            record: One record's bytes.
            views: Uncompressed ``bytes`` fields as zero-copy memoryviews of ``record`` instead of copies (the
                fast path hands image payloads to the native decoder this way).

        Raises:
            FormatError: if the record's lengths do not add up or a payload is invalid.
        """
        view = memoryview(record)
        nf = len(self.fields)
        if len(view) < 4 * nf:
            raise FormatError(f"record of {len(view)} bytes is shorter than its {nf} field lengths")
        lengths = struct.unpack_from(f"<{nf}I", view)
        if 4 * nf + sum(lengths) != len(view):
            raise FormatError(f"record is {len(view)} bytes but its field lengths add up to {4 * nf + sum(lengths)}")
        out: dict[str, Any] = {}
        pos = 4 * nf
        for f, n in zip(self.fields, lengths, strict=True):
            payload = view[pos : pos + n]
            out[f.name] = payload if views and f.type == "bytes" and f.compression is None else f.decode(payload)
            pos += n
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.fields]

    @classmethod
    def from_json(cls, data: Any) -> Schema:
        """Builds a schema from its JSON form (a list of field dicts)."""
        if not isinstance(data, list):
            raise FormatError(f"schema must be a list of fields, got {type(data).__name__}")
        try:
            return cls(tuple(Field(d["name"], d["type"], d.get("compression")) for d in data))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"invalid schema: {exc}") from exc


IMAGE_SCHEMA = Schema((Field("key", "str"), Field("label", "int"), Field("image", "bytes")))
"""Schema of packed image datasets: ``key`` (relative source path), ``label`` (class index), ``image``."""
