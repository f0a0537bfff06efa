"""``verify`` checks everything a reader trusts: the Parquet index, the manifest against every shard header and
footer, and that every sample decodes under its schema (issue 13, item 4; guarantee stated in docs/format.md)."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataio import open_dataset
from dataio.errors import ChecksumError
from dataio.format import IMAGE_SCHEMA, Field, Manifest, Schema, ShardEntry, ShardWriter
from dataio.inspection import verify_dataset
from tests.helpers import edit_manifest

FLIPS = 150


def _manifest(root: Path) -> dict[str, Any]:
    return json.loads((root / "manifest.json").read_text())


def _table(data: bytes) -> dict[str, list[Any]] | None:
    """The index's decoded contents, or ``None`` if arrow cannot read the bytes."""
    try:
        return pq.read_table(pa.BufferReader(pa.py_buffer(data)), use_threads=False, pre_buffer=False).to_pydict()
    except Exception:
        return None


def _flip_positions(size: int) -> list[int]:
    return sorted(random.Random(13).sample(range(size), min(FLIPS, size)))


def test_pack_records_the_index_sha256_and_verify_checks_it(packed_copy: Path) -> None:
    index = packed_copy / "index.parquet"
    assert _manifest(packed_copy)["index_sha256"] == hashlib.sha256(index.read_bytes()).hexdigest()
    report = verify_dataset(packed_copy)
    assert report.ok and not report.warnings, report.problems


def test_every_byte_flip_of_the_parquet_index_fails_verify(packed_copy: Path) -> None:
    """150 deterministic single-byte flips of index.parquet: verify fails on every one (49 passed before)."""
    index = packed_copy / "index.parquet"
    original = index.read_bytes()
    passed = []
    for at in _flip_positions(len(original)):
        bad = bytearray(original)
        bad[at] ^= 0xFF
        index.write_bytes(bad)
        report = verify_dataset(packed_copy)
        if report.ok:
            passed.append(at)
        else:
            assert any("index.parquet" in p for p in report.problems), report.problems
    assert not passed, f"verify passed {len(passed)} of {FLIPS} flipped index files (byte offsets {passed})"


def test_without_index_sha256_every_content_changing_flip_still_fails(packed_copy: Path) -> None:
    """An older manifest (no index_sha256) still verifies, with a note that the index bytes are unchecked; the
    rows are compared with the shards, so a flip that changes any value of any column is still caught."""
    edit_manifest(packed_copy, lambda d: d.pop("index_sha256", None), seal=False)
    ok = verify_dataset(packed_copy)
    assert ok.ok, ok.problems
    assert any("index.parquet" in n and "unchecked" in n for n in ok.warnings)
    index = packed_copy / "index.parquet"
    original = index.read_bytes()
    truth = _table(original)
    missed = []
    for at in _flip_positions(len(original)):
        bad = bytearray(original)
        bad[at] ^= 0xFF
        index.write_bytes(bad)
        if verify_dataset(packed_copy).ok and _table(bytes(bad)) != truth:
            missed.append(at)
    assert not missed, f"verify passed flips that change the index's contents at byte offsets {missed}"


def _rewrite_index(root: Path, change: Any, *, record_sha: bool = True) -> None:
    """Rewrites index.parquet as a valid Parquet file with ``change`` applied to its columns (and, like a buggy
    tool would, records the new file's sha256 in the manifest)."""
    path = root / "index.parquet"
    table = pq.read_table(path)
    cols = table.to_pydict()
    change(cols)
    buf = io.BytesIO()
    pq.write_table(pa.table(cols, schema=table.schema), buf, compression="zstd")
    path.write_bytes(buf.getvalue())
    if record_sha:
        edit_manifest(root, lambda d: d.update(index_sha256=hashlib.sha256(buf.getvalue()).hexdigest()))


@pytest.mark.parametrize(("column", "delta"), [("offset", 1), ("offset", -4), ("length", 1), ("length", -1)])
def test_index_offset_and_length_are_checked_against_the_shard_index(
    packed_copy: Path, column: str, delta: int
) -> None:
    row = 5
    _rewrite_index(packed_copy, lambda c: c[column].__setitem__(row, c[column][row] + delta))
    report = verify_dataset(packed_copy)
    assert not report.ok
    (line,) = report.problems
    assert "index.parquet" in line and f"row {row}" in line and column in line


def test_index_column_of_the_wrong_type_is_reported(packed_copy: Path) -> None:
    path = packed_copy / "index.parquet"
    table = pq.read_table(path)
    table = table.set_column(table.column_names.index("offset"), "offset", table.column("offset").cast(pa.float64()))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path.write_bytes(buf.getvalue())
    edit_manifest(packed_copy, lambda d: d.update(index_sha256=hashlib.sha256(buf.getvalue()).hexdigest()))
    report = verify_dataset(packed_copy)
    assert any("column 'offset'" in p and "double" in p for p in report.problems), report.problems


def test_manifest_index_crc32_edited_is_reported(packed_copy: Path) -> None:
    """The shard is intact (its sha256 matches), but readers check its index against the manifest's CRC."""
    entry = _manifest(packed_copy)["shards"][1]
    edit_manifest(packed_copy, lambda d: d["shards"][1].update(index_crc32=(entry["index_crc32"] + 1) % 2**32))
    report = verify_dataset(packed_copy)
    assert not report.ok
    assert any(entry["path"] in p and "index_crc32" in p for p in report.problems), report.problems
    ds = open_dataset(packed_copy)
    with pytest.raises(ChecksumError, match="index checksum"):
        ds[int(ds.shard_sizes[0])]


def test_manifest_schema_that_differs_from_the_headers_names_the_field(packed_copy: Path) -> None:
    """A manifest saying "float" for the label makes readers return 0.0 labels; verify names field and types."""
    edit_manifest(packed_copy, lambda d: d["schema"][1].update(type="float"))
    assert open_dataset(packed_copy)[0]["label"] == pytest.approx(0.0)  # what a reader trusting it gets
    report = verify_dataset(packed_copy)
    lines = [p for p in report.problems if "schema" in p]
    assert len(lines) == len(_manifest(packed_copy)["shards"])
    assert all("'label'" in p and "int" in p and "float" in p for p in lines), lines


def _write_dataset(root: Path, samples: list[dict[str, Any]], written_as: Schema) -> None:
    """A one-shard dataset whose header and manifest say IMAGE_SCHEMA but whose records are encoded with
    ``written_as`` (a writer bug): every checksum is right, yet a record may not decode."""
    (root / "shards").mkdir(parents=True)
    buf = io.BytesIO()
    w = ShardWriter(buf, IMAGE_SCHEMA)
    w.schema = written_as
    ranges = []
    for s in samples:
        start = w.bytes_written
        w.add(s)
        ranges.append((start, w.bytes_written - start))
    info = w.close()
    (root / "shards" / "s.dio").write_bytes(buf.getvalue())
    keys = [s["key"] if isinstance(s["key"], str) else s["key"].decode("utf-8", "replace") for s in samples]
    labels = [s["label"] if isinstance(s["label"], int) else int.from_bytes(s["label"], "little") for s in samples]
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "label": pa.array(labels, pa.int64()),
            "shard": pa.array([0] * len(samples), pa.int32()),
            "position": pa.array(range(len(samples)), pa.int64()),
            "offset": pa.array([r[0] for r in ranges], pa.int64()),
            "length": pa.array([r[1] for r in ranges], pa.int64()),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    (root / "index.parquet").write_bytes(out.getvalue())
    entry = ShardEntry("shards/s.dio", info.num_samples, info.size, info.sha256, info.index_offset, info.index_crc32)
    manifest = Manifest(IMAGE_SCHEMA, (entry,), index_sha256=hashlib.sha256(out.getvalue()).hexdigest())
    (root / "manifest.json").write_bytes(manifest.dumps())


@pytest.mark.parametrize(
    ("written_as", "bad", "field"),
    [
        (
            Schema((Field("key", "str"), Field("label", "bytes"), Field("image", "bytes"))),
            {"label": b"\x01\x02\x03"},
            "label",
        ),
        (Schema((Field("key", "bytes"), Field("label", "int"), Field("image", "bytes"))), {"key": b"\xff\xfe"}, "key"),
    ],
)
def test_a_record_that_does_not_decode_under_its_schema_is_reported(
    tmp_path: Path, written_as: Schema, bad: dict[str, Any], field: str
) -> None:
    good = [{"key": f"k{i}", "label": i, "image": bytes([i]) * 50} for i in range(4)]
    if written_as.fields[0].type == "bytes":
        good = [{**s, "key": s["key"].encode()} for s in good]
    else:
        good = [{**s, "label": s["label"].to_bytes(8, "little")} for s in good]
    samples = [*good[:2], {**good[2], **bad}, good[3]]
    _write_dataset(tmp_path / "ds", samples, written_as)
    report = verify_dataset(tmp_path / "ds")
    assert not report.ok
    (line,) = report.problems  # the record, reported once (not again as an index row)
    assert "shards/s.dio" in line and "sample 2" in line and "decode" in line and repr(field) in line


def test_a_label_outside_the_manifests_classes_is_reported(packed_copy: Path) -> None:
    """Record and index agree, but the label names no class: the manifest lists one class fewer."""
    doc = _manifest(packed_copy)
    top = len(doc["classes"]) - 1
    edit_manifest(packed_copy, lambda d: d.update(classes=d["classes"][:top]))
    report = verify_dataset(packed_copy)
    labelled = [p for p in report.problems if f"has label {top}" in p]
    assert labelled and len(labelled) == len(report.problems), report.problems
