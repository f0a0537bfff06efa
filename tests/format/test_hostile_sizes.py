"""Every size or count read from a manifest, index, header or zstd frame is bounded before memory is allocated,
with an error naming the file and field: never MemoryError, RecursionError or OverflowError (issue 13, item 5)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard

from dataio import open_dataset
from dataio.errors import DataioError, FormatError, ManifestError
from dataio.format import Field
from dataio.format.manifest import Manifest, seal_manifest
from dataio.format.ndarray import decode_ndarray, encode_ndarray
from dataio.format.shard import FOOTER_SIZE, index_size, parse_footer

HUGE = 466 << 30  # 466 GiB


def zstd_frame(content_size: int | None, data: bytes = b"x" * 100) -> bytes:
    """One zstd frame of a raw block; the header declares ``content_size`` (``None``: not declared)."""
    if content_size is None:
        head = struct.pack("<IBB", 0xFD2FB528, 0b00000000, 0x58)  # window descriptor, no content size
    else:
        head = struct.pack("<IB", 0xFD2FB528, 0b11100000) + struct.pack("<Q", content_size)
    return head + struct.pack("<I", (len(data) << 3) | 1)[:3] + data


def test_zstd_frame_declaring_a_huge_content_size_is_refused() -> None:
    field = Field("blob", "bytes", "zstd")
    for declared in (HUGE, 1 << 30):
        with pytest.raises(FormatError, match=r"field 'blob'.*declares") as err:
            field.decode(memoryview(zstd_frame(declared)))
        assert str(err.value)


def test_zstd_output_is_capped_also_without_a_declared_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataio.format import schema

    field = Field("blob", "bytes", "zstd")
    assert field.decode(memoryview(zstd_frame(None))) == b"x" * 100
    assert field.decode(memoryview(zstandard.ZstdCompressor().compress(b"y" * 5000))) == b"y" * 5000
    monkeypatch.setattr(schema, "_MAX_DECOMPRESSED", 64)
    with pytest.raises(FormatError, match=r"field 'blob'.*(more than|at most) 64"):
        field.decode(memoryview(zstd_frame(None)))
    with pytest.raises(FormatError, match=r"field 'blob'.*(more than|at most) 64"):
        field.decode(memoryview(zstandard.ZstdCompressor().compress(b"y" * 5000)))


def test_zstd_output_without_a_declared_size_is_bounded_by_the_payloads_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19 item 14: a frame that declares no content size used to decompress up to the 2 GiB per-field cap,
    whatever its length; now it stops where a frame of its length could not reach (32768x, zstd's RLE bound)."""
    from dataio.format import schema

    zeros = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(4 << 20))
    field = Field("blob", "bytes", "zstd")
    assert field.decode(memoryview(zeros)) == bytes(4 << 20)  # a real frame is within the bound
    monkeypatch.setattr(schema, "_MAX_ZSTD_RATIO", 16)  # as if zstd could compress only 16x
    with pytest.raises(FormatError, match=rf"field 'blob'.*{len(zeros)} bytes decompresses to more than"):
        field.decode(memoryview(zeros))


@pytest.mark.parametrize(
    "shape",
    [(1 << 40, 1 << 40), (1 << 63, 2), (1 << 64 - 1,), (0, 1 << 63), (0, 1 << 40, 1 << 40), (3, 1 << 62, 4)],
    ids=str,
)
def test_ndarray_header_with_an_absurd_shape_is_refused(shape: tuple[int, ...]) -> None:
    head = struct.pack(f"<B3sB{len(shape)}Q", 3, b"<f8", len(shape), *shape)
    for body in (b"", b"\0" * 64):
        with pytest.raises(FormatError, match="shape"):
            decode_ndarray(head + body)


@pytest.mark.parametrize("dtype", [b"(2147483647,2147483647)f8", b"V2147483647", b"<f8,<i4", b"S9999999999", b"O"])
def test_ndarray_header_with_a_hostile_dtype_is_refused(dtype: bytes) -> None:
    buf = struct.pack("<B", len(dtype)) + dtype + struct.pack("<BQ", 1, 1) + b"\0" * 8
    with pytest.raises(FormatError, match="dtype"):
        decode_ndarray(buf)


def test_ndarray_round_trip_still_works() -> None:
    for arr in (np.arange(12, dtype="<i4").reshape(3, 4), np.zeros((0, 5), ">f8"), np.array(True), np.ones(3, "c8")):
        back = decode_ndarray(encode_ndarray(arr))
        assert back.dtype == arr.dtype and back.shape == arr.shape and np.array_equal(back, arr)


def test_footer_with_a_huge_count_is_a_format_error() -> None:
    head = struct.pack("<QQI", 64, 1 << 62, 0)
    import zlib

    buf = head + struct.pack("<I", zlib.crc32(head)) + b"DIOINDEX"
    with pytest.raises(FormatError, match="samples"):
        parse_footer(buf, 4096)


def _manifest_doc(packed: Path) -> dict:
    return json.loads((packed / "manifest.json").read_text())


def test_deeply_nested_manifest_is_a_manifest_error() -> None:
    for deep in (b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
        with pytest.raises(ManifestError, match=r"manifest.json.*nest"):
            Manifest.loads(deep, "manifest.json")


def test_huge_manifest_is_refused_before_it_is_read(packed_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataio.format import manifest

    size = (packed_copy / "manifest.json").stat().st_size
    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", size - 1)
    with pytest.raises(ManifestError, match=r"manifest.json.*bytes"):
        open_dataset(packed_copy)
    with pytest.raises(ManifestError, match=r"manifest.json.*bytes"):
        Manifest.loads(b" " * size)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_samples", 1 << 70),
        ("num_samples", 10**12),
        ("size", 1 << 64),
        ("index_offset", 1 << 63),
        ("index_crc32", 1 << 40),
    ],
)
def test_manifest_counts_are_bounded_by_the_shard_size(packed_copy: Path, field: str, value: int) -> None:
    doc = _manifest_doc(packed_copy)
    doc["shards"][0][field] = value
    if field == "num_samples":
        doc["num_samples"] = sum(s["num_samples"] for s in doc["shards"])
    (packed_copy / "manifest.json").write_text(json.dumps(seal_manifest(doc)))
    with pytest.raises(ManifestError, match=field) as err:
        open_dataset(packed_copy)
    assert doc["shards"][0]["path"] in str(err.value)


def test_a_manifest_promising_a_466_gib_index_does_not_allocate_it(packed_copy: Path) -> None:
    """A consistent entry (index offset + index + footer == size) for a shard that is not that big on disk."""
    doc = _manifest_doc(packed_copy)
    entry = doc["shards"][0]
    n = HUGE // 12
    entry["num_samples"] = n
    entry["size"] = entry["index_offset"] + index_size(n) + FOOTER_SIZE
    doc["num_samples"] = sum(s["num_samples"] for s in doc["shards"])
    (packed_copy / "manifest.json").write_text(json.dumps(seal_manifest(doc)))
    ds = open_dataset(packed_copy)
    with pytest.raises(DataioError, match=entry["path"]) as err:
        ds[0]
    assert "beyond the end of the file" in str(err.value)
