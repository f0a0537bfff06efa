"""Bounded hypothesis fuzz of every format parser: shard header (and the schema in it), footer and index, record,
zstd fields (hostile frame content sizes), ndarray and manifest. Hostile bytes raise a DataioError naming what is
wrong, never MemoryError, RecursionError, OverflowError, IndexError, struct.error or a numpy error (issue 13, items
5 and 10). The Parquet index has its own module (test_fuzz_index.py); ``pytest --fuzz-seconds S`` fuzzes longer."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import strategies as st

from dataio.errors import DataioError
from dataio.format import Field, Schema, ShardWriter
from dataio.format.manifest import CHECKSUM_KEY, Manifest, seal_manifest
from dataio.format.ndarray import decode_ndarray, encode_ndarray
from dataio.format.shard import FOOTER_SIZE, HEADER_FIXED_SIZE, SHARD_MAGIC, parse_footer, parse_header, parse_index
from tests.fuzzing import Fuzz

SCHEMA = Schema(
    (
        Field("key", "str"),
        Field("label", "int"),
        Field("w", "float"),
        Field("arr", "ndarray", "zstd"),
        Field("blob", "bytes", "zstd"),
    )
)
SAMPLE = {"key": "k0", "label": 3, "w": 0.5, "arr": np.arange(6, dtype="<f4").reshape(2, 3), "blob": b"abc" * 50}


def _shard() -> bytes:
    buf = io.BytesIO()
    w = ShardWriter(buf, SCHEMA)
    w.add(SAMPLE)
    w.add({**SAMPLE, "key": "k1"})
    w.close()
    return buf.getvalue()


SHARD = _shard()
RECORD = SCHEMA.encode(SAMPLE)
NDARRAY = encode_ndarray(np.arange(12, dtype="<i8").reshape(3, 4))


def mutated(valid: bytes) -> st.SearchStrategy[bytes]:
    """``valid`` with some bytes replaced (often by 0xff: huge little-endian counts), truncated or extended."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(0, 6))):
            at = draw(st.integers(0, len(data) - 1))
            width = draw(st.sampled_from([1, 4, 8]))
            data[at : at + width] = draw(
                st.sampled_from([b"\xff" * width, b"\x00" * width, draw(st.binary(min_size=width, max_size=width))])
            )
        cut = draw(st.integers(0, len(data)))
        tail = draw(st.binary(max_size=16))
        return bytes(data[:cut] + tail) if draw(st.booleans()) else bytes(data)

    return build() | st.binary(max_size=64)


def _only_dataio_errors(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except DataioError as exc:
        assert str(exc)


def test_fuzz_shard_header(fuzz: Fuzz) -> None:
    fuzz(lambda buf: _only_dataio_errors(parse_header, buf, "s.dio"), mutated(SHARD[:200]))


def _header(body: bytes) -> bytes:
    """A shard header around ``body`` whose checksum is right: the schema parser behind the CRC gets the bytes."""
    return struct.pack("<8sHHII", SHARD_MAGIC, 1, 0, len(body), zlib.crc32(body)) + body


SCHEMA_BODY = json.dumps({"fields": SCHEMA.to_json()}).encode()
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["a", "b", "", "1x", "a" * 65]) | JSON,
        "type": st.sampled_from(["bytes", "str", "int", "float", "ndarray"]) | JSON,
        "compression": st.sampled_from([None, "zstd", "lz4"]) | JSON,
    },
)
#: Found by this fuzzer: a schema nested a million levels deep behind a valid CRC ended in RecursionError.
DEEP = b"[" * 100_000 + b"]" * 100_000


def test_fuzz_header_schema(fuzz: Fuzz) -> None:
    def target(body: bytes) -> None:
        _only_dataio_errors(parse_header, _header(body), "s.dio")

    examples = [(DEEP,), (b'{"fields":' + DEEP + b"}",), (b'{"fields":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001,)]
    fuzz(target, mutated(SCHEMA_BODY) | JSON.map(lambda doc: json.dumps(doc).encode()), examples=examples)


def test_fuzz_schema_json(fuzz: Fuzz) -> None:
    fuzz(lambda doc: _only_dataio_errors(Schema.from_json, doc), JSON | st.lists(FIELD | JSON, max_size=4))


def test_fuzz_shard_footer(fuzz: Fuzz) -> None:
    fuzz(
        lambda buf, size: _only_dataio_errors(parse_footer, buf, size, "s.dio"),
        mutated(SHARD[-FOOTER_SIZE:]),
        st.integers(0, 1 << 64),
    )


def test_fuzz_shard_index(fuzz: Fuzz) -> None:
    def target(buf: bytes, n: int, offset: int) -> None:
        _only_dataio_errors(parse_index, buf, n % 4 if n & 1 else n, offset, zlib.crc32(buf), "s.dio")

    fuzz(target, mutated(SHARD[-FOOTER_SIZE - 28 : -FOOTER_SIZE]), st.integers(0, 1 << 64), st.integers(0, 1 << 64))


def test_fuzz_ndarray(fuzz: Fuzz) -> None:
    fuzz(lambda buf: _only_dataio_errors(decode_ndarray, buf), mutated(NDARRAY))


DIMS = st.sampled_from([0, 1, 3, 7, 1 << 31, 1 << 32, 1 << 62, 1 << 63, (1 << 64) - 1])
DTYPES = st.sampled_from(["<f8", "|u1", "|b1", ">c16", "<U4", "O", "V8", "(2147483647,2147483647)f8", "<f8,<i4", "M8"])


def test_fuzz_ndarray_header_fields(fuzz: Fuzz) -> None:
    def target(dtype: str, shape: list[int], body: int) -> None:
        raw = dtype.encode()
        buf = struct.pack(f"<B{len(raw)}sB{len(shape)}Q", len(raw), raw, len(shape), *shape) + b"\0" * body
        _only_dataio_errors(decode_ndarray, buf)

    fuzz(target, DTYPES, st.lists(DIMS, max_size=4), st.integers(0, 64))


def test_fuzz_record_and_zstd_fields(fuzz: Fuzz) -> None:
    fuzz(lambda buf: _only_dataio_errors(SCHEMA.decode, buf), mutated(RECORD))


ZSTD_BLOCKS = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(range(256)) * 8)[6:]  # after FHD + FCS
SIZES = st.sampled_from([0, 1, 2047, 2048, 2049, 1 << 16, (1 << 31) - 1, 1 << 31, 1 << 32, 1 << 63, (1 << 64) - 1])


@st.composite
def zstd_frames(draw: st.DrawFn) -> bytes:
    """zstd frames with hostile headers: any frame header descriptor with any content size field, or a single-segment
    frame declaring an absurd (or slightly wrong) content size, in front of real or mutated blocks."""
    blocks = draw(mutated(ZSTD_BLOCKS))
    if draw(st.booleans()):
        size = draw(SIZES | st.integers(0, (1 << 64) - 1))
        return b"\x28\xb5\x2f\xfd\xe0" + struct.pack("<Q", size) + blocks  # FCS: 8 bytes, single segment
    fhd = draw(st.integers(0, 255))
    return b"\x28\xb5\x2f\xfd" + bytes([fhd]) + draw(st.binary(max_size=9)) + blocks


ZSTD_FIELDS = [Field("b", "bytes", "zstd"), Field("a", "ndarray", "zstd"), Field("s", "str", "zstd")]


def test_fuzz_zstd_fields(fuzz: Fuzz) -> None:
    def target(frame: bytes, field: Field) -> None:
        try:
            value = field.decode(memoryview(frame))
        except DataioError as exc:
            assert str(exc)
            return
        if field.type == "bytes":
            assert len(value) <= (1 << 16) * len(frame)  # no more than zstd can make of it

    fuzz(target, zstd_frames(), st.sampled_from(ZSTD_FIELDS))


def _manifest_json() -> bytes:
    size = len(SHARD)
    index_offset = struct.unpack_from("<Q", SHARD, size - FOOTER_SIZE)[0]
    doc = {
        "format": "dataio-dataset",
        "version": 1,
        "num_samples": 2,
        "schema": SCHEMA.to_json(),
        "classes": ["a", "b"],
        "index": "index.parquet",
        "shards": [
            {
                "path": "shards/s.dio",
                "num_samples": 2,
                "size": size,
                "sha256": "0" * 64,
                "index_offset": index_offset,
                "index_crc32": 0,
            }
        ],
        "skipped": [],
        "extra": {},
    }
    return json.dumps(seal_manifest(doc)).encode()


MANIFEST = _manifest_json()
#: The same manifest as an older dataio wrote it (no seal): its fuzzing reaches every validator behind the seal.
UNSEALED = json.dumps({k: v for k, v in json.loads(MANIFEST).items() if k != CHECKSUM_KEY}).encode()


def test_the_fuzzed_manifest_is_valid() -> None:
    assert Manifest.loads(MANIFEST).num_samples == 2 and len(SHARD) > HEADER_FIXED_SIZE


def test_fuzz_manifest_bytes(fuzz: Fuzz) -> None:
    original = Manifest.loads(MANIFEST)

    def target(buf: bytes) -> None:
        try:
            manifest = Manifest.loads(buf)
        except DataioError as exc:
            assert str(exc)
            return
        assert manifest == original and manifest.sealed  # a sealed manifest loads unchanged or not at all

    fuzz(target, mutated(MANIFEST))


@pytest.mark.filterwarnings("ignore::dataio.errors.UnsealedManifestWarning")
def test_fuzz_unsealed_manifest_bytes(fuzz: Fuzz) -> None:
    fuzz(lambda buf: _only_dataio_errors(Manifest.loads, buf), mutated(UNSEALED))


def test_fuzz_manifest_fields(fuzz: Fuzz) -> None:
    def target(name: str, value: object) -> None:
        doc = json.loads(MANIFEST)
        doc["shards"][0][name] = value
        try:
            data = json.dumps(seal_manifest(doc)).encode()
        except (ValueError, DataioError):  # NaN cannot be sealed
            return
        try:
            manifest = Manifest.loads(data)
        except DataioError as exc:
            assert str(exc)
            return
        # what a reader builds from an accepted manifest must not overflow
        np.array([(e.num_samples, e.size, e.index_offset) for e in manifest.shards], dtype=np.int64)

    values = st.one_of(
        st.sampled_from([-1, 0, 1 << 32, (1 << 63) - 1, 1 << 63, 1 << 64, 1 << 70, 10**30]),
        st.integers(-(1 << 70), 1 << 70),
        st.floats(),
        st.text(max_size=8),
        st.none(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    )
    fuzz(target, st.sampled_from(["num_samples", "size", "index_offset", "index_crc32", "path", "sha256"]), values)


def test_fuzz_manifest_nesting(fuzz: Fuzz) -> None:
    def target(depth: int, opener: str) -> None:
        closer = "]" if opener == "[" else "}"
        _only_dataio_errors(Manifest.loads, (opener * depth + "1" + closer * depth).encode())

    fuzz(target, st.integers(1, 100_000), st.sampled_from(["[", '{"a":']), max_examples=100)
