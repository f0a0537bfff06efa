"""The shard file: header, records, index and footer (specified in docs/format.md).

Pure byte handling: a :class:`ShardWriter` streams records into any binary file object; the parse
functions turn byte strings read by any storage backend into typed, validated structures.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from dataio.errors import ChecksumError, FormatError, VersionError
from dataio.format.schema import Schema

__all__ = [
    "FOOTER_SIZE",
    "HEADER_FIXED_SIZE",
    "SHARD_VERSION",
    "Footer",
    "Header",
    "ShardIndex",
    "ShardInfo",
    "ShardWriter",
    "check_record",
    "index_size",
    "iter_records",
    "parse_footer",
    "parse_header",
    "parse_index",
    "read_header",
]

SHARD_MAGIC = b"DIOSHARD"
FOOTER_MAGIC = b"DIOINDEX"
SHARD_VERSION = 1
_HEADER = struct.Struct("<8sHHII")  # magic, version, flags, schema_len, schema_crc
_FOOTER = struct.Struct("<QQII8s")  # index_offset, num_samples, index_crc, footer_crc, magic
HEADER_FIXED_SIZE = _HEADER.size
FOOTER_SIZE = _FOOTER.size
_MAX_SCHEMA_BYTES = 1 << 20


def index_size(num_samples: int) -> int:
    """Bytes of the index region for ``num_samples`` records: (n+1) u64 offsets + n u32 CRCs."""
    return 8 * (num_samples + 1) + 4 * num_samples


@dataclass(frozen=True)
class Header:
    version: int
    schema: Schema
    data_offset: int


@dataclass(frozen=True)
class Footer:
    index_offset: int
    num_samples: int
    index_crc32: int


@dataclass(frozen=True)
class ShardInfo:
    """What a finished shard looks like; recorded in the manifest."""

    num_samples: int
    size: int
    sha256: str
    index_offset: int
    index_crc32: int


def encode_header(schema: Schema) -> bytes:
    body = json.dumps({"fields": schema.to_json()}, sort_keys=True, separators=(",", ":")).encode()
    return _HEADER.pack(SHARD_MAGIC, SHARD_VERSION, 0, len(body), zlib.crc32(body)) + body


def parse_header(buf: bytes, where: str = "shard") -> Header:
    """Parses a shard header from the first bytes of a shard (at least the whole schema must be present).

    Raises:
        VersionError: for a shard written by an unknown format version.
        FormatError: for bad magic, a truncated header or a corrupt schema.
    """
    if len(buf) < HEADER_FIXED_SIZE:
        raise FormatError(f"{where}: truncated header ({len(buf)} bytes)")
    magic, version, flags, slen, scrc = _HEADER.unpack_from(buf)
    if magic != SHARD_MAGIC:
        raise FormatError(f"{where}: not a dataio shard (its first 8 bytes are not the shard magic)")
    if version != SHARD_VERSION:
        raise VersionError(f"{where}: shard format version {version} is not supported (this reader: {SHARD_VERSION})")
    if flags != 0 or slen > _MAX_SCHEMA_BYTES:
        raise FormatError(f"{where}: corrupt header (flags={flags}, schema length={slen})")
    body = buf[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + slen]
    if len(body) != slen:
        raise FormatError(f"{where}: truncated header schema")
    if zlib.crc32(body) != scrc:
        raise ChecksumError(f"{where}: header schema checksum mismatch", shard=where)
    try:
        schema = Schema.from_json(json.loads(body)["fields"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FormatError(f"{where}: corrupt schema: {exc}") from exc
    except RecursionError:  # a valid CRC over JSON nested too deeply for the parser
        raise FormatError(f"{where}: corrupt schema: JSON nested too deeply; not a dataio schema") from None
    return Header(version, schema, HEADER_FIXED_SIZE + slen)


def parse_footer(buf: bytes, file_size: int, where: str = "shard") -> Footer:
    """Parses the fixed-size footer (the last :data:`FOOTER_SIZE` bytes of a shard) and checks it fits."""
    if len(buf) != FOOTER_SIZE:
        raise FormatError(f"{where}: truncated footer")
    index_offset, n, index_crc, footer_crc, magic = _FOOTER.unpack(buf)
    if magic != FOOTER_MAGIC:
        raise FormatError(f"{where}: footer magic missing: the shard is truncated or not a dataio shard")
    if zlib.crc32(buf[:20]) != footer_crc:
        raise ChecksumError(f"{where}: footer checksum mismatch", shard=where)
    if index_offset + index_size(n) + FOOTER_SIZE != file_size:
        raise FormatError(f"{where}: footer says {n} samples with index at {index_offset}, file is {file_size} bytes")
    return Footer(index_offset, n, index_crc)


@dataclass(frozen=True)
class ShardIndex:
    """Per-shard record index: O(1) byte range and checksum of any sample."""

    offsets: np.ndarray  # uint64, n + 1 entries; offsets[n] == index_offset
    crcs: np.ndarray  # uint32, n entries

    def __len__(self) -> int:
        return len(self.crcs)

    def record_range(self, position: int) -> tuple[int, int]:
        """Returns ``(offset, length)`` of the record at ``position``."""
        start = int(self.offsets[position])
        return start, int(self.offsets[position + 1]) - start


def parse_index(buf: bytes, num_samples: int, index_offset: int, index_crc32: int, where: str = "shard") -> ShardIndex:
    """Parses and validates the index region (offsets must be increasing and end at the index)."""
    if len(buf) != index_size(num_samples):
        raise FormatError(f"{where}: index is {len(buf)} bytes, expected {index_size(num_samples)}")
    if zlib.crc32(buf) != index_crc32:
        raise ChecksumError(f"{where}: index checksum mismatch", shard=where)
    offsets = np.frombuffer(buf, dtype="<u8", count=num_samples + 1).astype(np.uint64)
    crcs = np.frombuffer(buf, dtype="<u4", offset=8 * (num_samples + 1)).astype(np.uint32)
    if num_samples and (int(offsets[-1]) != index_offset or np.any(offsets[1:] < offsets[:-1])):
        raise FormatError(f"{where}: index offsets are not increasing up to the index at {index_offset}")
    return ShardIndex(offsets, crcs)


def check_record(record: bytes | memoryview, crc: int, where: str, position: int, offset: int) -> None:
    """Raises :class:`ChecksumError` naming shard, position and offset if ``record`` fails its CRC."""
    if zlib.crc32(record) != crc:
        raise ChecksumError(
            f"{where}: sample {position} at byte offset {offset} ({len(record)} bytes) fails its CRC-32 checksum",
            shard=where,
            position=position,
        )


class ShardWriter:
    """Streams records into a binary file object and finishes with the index and footer.

    The writer hashes everything it writes (sha256 for the manifest), so no second pass over the shard is
    needed. It never seeks: it works on pipes, sockets and upload streams.

    Args:
        fileobj: Destination opened for binary writing, positioned at 0.
        schema: Field layout of every record.
    """

    def __init__(self, fileobj: BinaryIO, schema: Schema) -> None:
        self._f = fileobj
        self.schema = schema
        self._sha = hashlib.sha256()
        self._offsets: list[int] = []
        self._crcs: list[int] = []
        self._pos = 0
        self._closed = False
        self._write(encode_header(schema))

    def _write(self, data: bytes) -> None:
        self._f.write(data)
        self._sha.update(data)
        self._pos += len(data)

    @property
    def num_samples(self) -> int:
        return len(self._crcs)

    @property
    def bytes_written(self) -> int:
        return self._pos

    def add(self, sample: dict[str, Any]) -> int:
        """Encodes and appends one sample; returns its position in the shard.

        The record's parts are checksummed and written one after the other, never joined into one buffer:
        a large payload (an image) is not copied on its way to the file.
        """
        if self._closed:
            raise ValueError("shard writer is closed")
        parts = self.schema.encode_parts(sample)
        crc = 0
        for part in parts:
            crc = zlib.crc32(part, crc)
        self._offsets.append(self._pos)
        self._crcs.append(crc)
        for part in parts:
            self._write(part)
        return len(self._crcs) - 1

    def close(self) -> ShardInfo:
        """Writes index and footer; returns the shard's :class:`ShardInfo`. Does not close ``fileobj``."""
        if self._closed:
            raise ValueError("shard writer is already closed")
        self._closed = True
        index_offset = self._pos
        index = np.asarray([*self._offsets, index_offset], dtype="<u8").tobytes()
        index += np.asarray(self._crcs, dtype="<u4").tobytes()
        index_crc = zlib.crc32(index)
        self._write(index)
        head = struct.pack("<QQI", index_offset, len(self._crcs), index_crc)
        self._write(head + struct.pack("<I", zlib.crc32(head)) + FOOTER_MAGIC)
        return ShardInfo(len(self._crcs), self._pos, self._sha.hexdigest(), index_offset, index_crc)


def read_header(stream: BinaryIO, where: str = "shard") -> Header:
    """Reads and parses the header from the current position of a sequential stream."""
    head = stream.read(HEADER_FIXED_SIZE)
    schema_len = _HEADER.unpack_from(head)[3] if len(head) == HEADER_FIXED_SIZE else 0
    return parse_header(head + stream.read(min(schema_len, _MAX_SCHEMA_BYTES)), where)


def iter_records(stream: BinaryIO, schema: Schema, index: ShardIndex, where: str = "shard") -> Iterator[dict[str, Any]]:
    """Streams the samples of a shard sequentially from its start (one pass, no seeks).

    ``index`` comes from the shard's tail (one small ranged read before streaming); every record is checked
    against its CRC and the stream stops exactly where the index begins.
    """
    header = read_header(stream, where)
    if header.schema != schema:
        raise FormatError(f"{where}: shard schema {header.schema.names} differs from the manifest's {schema.names}")
    pos = header.data_offset
    for i in range(len(index)):
        start, length = index.record_range(i)
        if start != pos:
            raise FormatError(f"{where}: record {i} expected at offset {pos}, index says {start}")
        record = stream.read(length)
        if len(record) != length:
            raise FormatError(f"{where}: truncated at sample {i} (offset {start})")
        check_record(record, int(index.crcs[i]), where, i, start)
        pos += length
        yield schema.decode(record)
