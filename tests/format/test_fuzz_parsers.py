"""Bounded hypothesis fuzz of every format parser: hostile bytes raise a DataioError naming what is wrong, never
MemoryError, RecursionError, OverflowError, IndexError or a numpy error (issue 13, items 5 and 10)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataio.errors import DataioError
from dataio.format import Field, Schema, ShardWriter
from dataio.format.manifest import Manifest
from dataio.format.ndarray import decode_ndarray, encode_ndarray
from dataio.format.shard import FOOTER_SIZE, HEADER_FIXED_SIZE, parse_footer, parse_header, parse_index

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
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


@FUZZ
@given(mutated(SHARD[:200]))
def test_fuzz_shard_header(buf: bytes) -> None:
    _only_dataio_errors(parse_header, buf, "s.dio")


@FUZZ
@given(mutated(SHARD[-FOOTER_SIZE:]), st.integers(0, 1 << 64))
def test_fuzz_shard_footer(buf: bytes, size: int) -> None:
    _only_dataio_errors(parse_footer, buf, size, "s.dio")


@FUZZ
@given(mutated(SHARD[-FOOTER_SIZE - 28 : -FOOTER_SIZE]), st.integers(0, 1 << 64), st.integers(0, 1 << 64))
def test_fuzz_shard_index(buf: bytes, n: int, offset: int) -> None:
    import zlib

    _only_dataio_errors(parse_index, buf, n % 4 if n & 1 else n, offset, zlib.crc32(buf), "s.dio")


@FUZZ
@given(mutated(NDARRAY))
def test_fuzz_ndarray(buf: bytes) -> None:
    _only_dataio_errors(decode_ndarray, buf)


DIMS = st.sampled_from([0, 1, 3, 7, 1 << 31, 1 << 32, 1 << 62, 1 << 63, (1 << 64) - 1])
DTYPES = st.sampled_from(["<f8", "|u1", "|b1", ">c16", "<U4", "O", "V8", "(2147483647,2147483647)f8", "<f8,<i4", "M8"])


@FUZZ
@given(DTYPES, st.lists(DIMS, max_size=4), st.integers(0, 64))
def test_fuzz_ndarray_header_fields(dtype: str, shape: list[int], body: int) -> None:
    raw = dtype.encode()
    buf = struct.pack(f"<B{len(raw)}sB{len(shape)}Q", len(raw), raw, len(shape), *shape) + b"\0" * body
    _only_dataio_errors(decode_ndarray, buf)


@FUZZ
@given(mutated(RECORD))
def test_fuzz_record_and_zstd_fields(buf: bytes) -> None:
    _only_dataio_errors(SCHEMA.decode, buf)


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
    return json.dumps(doc).encode()


MANIFEST = _manifest_json()


def test_the_fuzzed_manifest_is_valid() -> None:
    assert Manifest.loads(MANIFEST).num_samples == 2 and len(SHARD) > HEADER_FIXED_SIZE


@FUZZ
@given(mutated(MANIFEST))
def test_fuzz_manifest_bytes(buf: bytes) -> None:
    _only_dataio_errors(Manifest.loads, buf)


@FUZZ
@given(
    st.sampled_from(["num_samples", "size", "index_offset", "index_crc32", "path", "sha256"]),
    st.one_of(
        st.sampled_from([-1, 0, 1 << 32, (1 << 63) - 1, 1 << 63, 1 << 64, 1 << 70, 10**30]),
        st.integers(-(1 << 70), 1 << 70),
        st.floats(),
        st.text(max_size=8),
        st.none(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_fuzz_manifest_fields(name: str, value: object) -> None:
    doc = json.loads(MANIFEST)
    doc["shards"][0][name] = value
    try:
        data = json.dumps(doc).encode()
    except ValueError:
        return
    try:
        manifest = Manifest.loads(data)
    except DataioError as exc:
        assert str(exc)
        return
    # what a reader builds from an accepted manifest must not overflow
    np.array([(e.num_samples, e.size, e.index_offset) for e in manifest.shards], dtype=np.int64)


@FUZZ
@given(st.integers(1, 100_000), st.sampled_from(["[", '{"a":']))
def test_fuzz_manifest_nesting(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    _only_dataio_errors(Manifest.loads, (opener * depth + "1" + closer * depth).encode())
