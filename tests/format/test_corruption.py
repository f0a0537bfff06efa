"""Every corruption is detected and reported with shard, position and offset — never a crash or wrong bytes."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.errors import ChecksumError, FormatError, VersionError
from dataio.format import Field, Schema, ShardWriter
from dataio.format.shard import FOOTER_SIZE, check_record, parse_footer, parse_header, parse_index
from dataio.inspection import verify_dataset

SCHEMA = Schema((Field("key", "str"), Field("label", "int"), Field("image", "bytes")))


def small_shard() -> tuple[bytes, list[tuple[int, int]]]:
    buf = io.BytesIO()
    w = ShardWriter(buf, SCHEMA)
    ranges = []
    for i in range(3):
        start = w.bytes_written
        w.add({"key": f"k{i}", "label": i, "image": bytes(range(i, i + 40))})
        ranges.append((start, w.bytes_written - start))
    w.close()
    return buf.getvalue(), ranges


def test_every_single_byte_flip_inside_a_sample_is_detected(packed_copy: Path) -> None:
    """Exhaustive over one real sample's bytes (in memory), then end to end through the file for a few."""
    ds = open_dataset(packed_copy)
    i = len(ds) // 2
    path, offset, length = ds.record_range(i)
    shard, pos = ds.locate(i)
    record = bytearray(ds.read_record(i))
    crc = int(ds.shard_index(shard).crcs[pos])
    for at in range(length):
        record[at] ^= 0xA5
        with pytest.raises(ChecksumError):
            check_record(record, crc, path, pos, offset)
        record[at] ^= 0xA5
    original = ds[i]
    shard_file = packed_copy / path
    data = bytearray(shard_file.read_bytes())
    for at in (offset, offset + 13, offset + length // 2, offset + length - 1):
        data[at] ^= 0x01
        shard_file.write_bytes(data)
        with pytest.raises(ChecksumError) as err:
            open_dataset(packed_copy)[i]
        assert err.value.shard == path and err.value.position == pos
        assert f"sample {pos}" in str(err.value) and f"offset {offset}" in str(err.value)
        data[at] ^= 0x01
    shard_file.write_bytes(data)
    assert open_dataset(packed_copy)[i] == original


def test_every_byte_flip_in_a_small_shard_is_detected() -> None:
    """Exhaustive: each byte of each record, flipped, fails that record's CRC (CRC-32 catches all bursts ≤ 32 bit)."""
    data, ranges = small_shard()
    footer = parse_footer(data[-FOOTER_SIZE:], len(data))
    index = parse_index(data[footer.index_offset : -FOOTER_SIZE], 3, footer.index_offset, footer.index_crc32)
    import zlib

    for pos, (start, length) in enumerate(ranges):
        for at in range(start, start + length):
            bad = bytearray(data[start : start + length])
            bad[at - start] ^= 0x5A
            assert zlib.crc32(bad) != index.crcs[pos]


def test_index_footer_and_header_corruption_reported() -> None:
    data, _ = small_shard()
    footer = parse_footer(data[-FOOTER_SIZE:], len(data))
    idx = bytearray(data[footer.index_offset : -FOOTER_SIZE])
    idx[3] ^= 1
    with pytest.raises(ChecksumError, match="index checksum"):
        parse_index(bytes(idx), 3, footer.index_offset, footer.index_crc32, "s.dio")
    foot = bytearray(data[-FOOTER_SIZE:])
    foot[2] ^= 1
    with pytest.raises(FormatError):
        parse_footer(bytes(foot), len(data), "s.dio")
    with pytest.raises(FormatError, match="truncated"):
        parse_footer(data[-FOOTER_SIZE - 10 : -10], len(data) - 10, "s.dio")
    head = bytearray(data)
    head[30] ^= 1  # inside the schema JSON
    with pytest.raises(ChecksumError, match="header schema"):
        parse_header(bytes(head), "s.dio")
    with pytest.raises(FormatError, match="not a dataio shard"):
        parse_header(b"PK\x03\x04" + data[4:], "s.dio")


def test_unknown_version_is_refused() -> None:
    data = bytearray(small_shard()[0])
    struct.pack_into("<H", data, 8, 99)
    with pytest.raises(VersionError, match="version 99 is not supported"):
        parse_header(bytes(data), "s.dio")


def test_truncated_shard_is_reported_by_read_and_verify(packed_copy: Path) -> None:
    manifest = json.loads((packed_copy / "manifest.json").read_text())
    shard = manifest["shards"][-1]["path"]
    f = packed_copy / shard
    f.write_bytes(f.read_bytes()[:-100])
    ds = open_dataset(packed_copy)
    with pytest.raises(Exception, match=shard.rsplit("/", 1)[-1]):
        ds[len(ds) - 1]
    report = verify_dataset(packed_copy)
    assert not report.ok
    assert any(shard in p and "truncated" in p for p in report.problems)


def test_bad_index_region_is_reported(packed_copy: Path) -> None:
    manifest = json.loads((packed_copy / "manifest.json").read_text())
    entry = manifest["shards"][0]
    f = packed_copy / entry["path"]
    data = bytearray(f.read_bytes())
    data[entry["index_offset"] + 9] ^= 0xFF
    f.write_bytes(data)
    with pytest.raises(ChecksumError, match="index checksum"):
        open_dataset(packed_copy)[0]
    report = verify_dataset(packed_copy)
    assert any(entry["path"] in p and "index checksum" in p for p in report.problems)


def test_verify_names_every_bad_sample(packed_copy: Path) -> None:
    ds = open_dataset(packed_copy)
    targets = [1, len(ds) - 2]
    for i in targets:
        path, offset, length = ds.record_range(i)
        f = packed_copy / path
        data = bytearray(f.read_bytes())
        data[offset + length - 5] ^= 0x10
        f.write_bytes(data)
    report = verify_dataset(packed_copy)
    crc_lines = [p for p in report.problems if "CRC-32 mismatch" in p]
    assert len(crc_lines) == 2
    for i, line in zip(targets, crc_lines, strict=True):
        path, offset, _ = ds.record_range(i)
        _, pos = ds.locate(i)
        assert path in line and f"sample {pos}" in line and f"offset {offset}" in line
        assert ds.index_table().column("key")[i].as_py() in line
