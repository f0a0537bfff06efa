"""``dataio info`` and ``dataio verify``: what a dataset holds, and whether every byte is still intact."""

from __future__ import annotations

import hashlib
import os
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataio.dataset import ShardDataset, open_dataset
from dataio.errors import DataioError, UnsealedManifestWarning
from dataio.format.manifest import MANIFEST_NAME, ShardEntry
from dataio.format.schema import Schema
from dataio.format.shard import FOOTER_SIZE, parse_footer, parse_header, parse_index

__all__ = ["VerifyReport", "dataset_info", "verify_dataset"]


def dataset_info(url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summary of a dataset: samples, shards, bytes, classes, per-class counts, format version, skipped files."""
    with open_dataset(url, storage_options) as ds:
        m = ds.manifest
        counts: dict[str, int] = {}
        if "label" in m.schema.names:
            bins = np.bincount(ds.labels[ds.labels >= 0], minlength=len(m.classes or []))
            names = m.classes or [str(i) for i in range(len(bins))]
            counts = {names[i] if i < len(names) else str(i): int(c) for i, c in enumerate(bins)}
        return {
            "root": ds.root,
            "format_version": 1,
            "samples": len(ds),
            "shards": len(m.shards),
            "bytes": m.total_bytes,
            "schema": m.schema.to_json(),
            "classes": len(m.classes) if m.classes is not None else None,
            "class_counts": counts,
            "skipped": [dict(s) for s in m.skipped],
            "source_kind": m.extra.get("source_kind"),
            "pack_options": m.extra.get("pack_options"),
        }


@dataclass
class VerifyReport:
    """Every problem found, one line each, naming shard, sample position, key and byte offset.

    ``warnings`` name what could not be checked in a dataset packed by an older dataio (a manifest without its
    ``manifest_sha256``, an index without its ``index_sha256``); they do not make the report fail. The same gaps
    in a sealed manifest are problems.
    """

    shards: int = 0
    samples: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Record:
    """What one intact-or-not record of a shard says, for the check of the Parquet index against it."""

    key: Any
    label: Any
    offset: int
    length: int
    intact: bool  # CRC-32 passed and the record decoded: key and label are the stored ones


def _schema_differences(header: Schema, manifest: Schema) -> str:
    """``label: shard int, manifest float; …`` naming every field whose name, type or compression differs."""
    if header.names != manifest.names:
        return f"fields {list(header.names)} in the shard, {list(manifest.names)} in the manifest"
    diffs = []
    for h, m in zip(header.fields, manifest.fields, strict=True):
        if h != m:
            diffs.append(
                f"field {h.name!r} is {h.type}/{h.compression} in the shard, {m.type}/{m.compression} in the manifest"
            )
    return "; ".join(diffs)


def _check_shard(ds: ShardDataset, shard: int) -> tuple[int, list[str], list[_Record]]:
    """Checks one shard against its manifest entry and the manifest's schema.

    Returns (samples checked, problems, one :class:`_Record` per position in order).
    """
    entry: ShardEntry = ds.manifest.shards[shard]
    where = entry.path
    try:
        data = ds.store.read(entry.path)
    except (OSError, DataioError) as exc:
        return 0, [f"{where}: cannot read: {exc}"], []
    problems = []
    if len(data) != entry.size:
        problems.append(f"{where}: {len(data)} bytes, manifest says {entry.size} (truncated or replaced)")
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        problems.append(f"{where}: sha256 differs from the manifest")
    schema: Schema = ds.manifest.schema
    try:
        header = parse_header(data[:65536], where)
        if header.schema != schema:
            problems.append(
                f"{where}: header schema differs from the manifest's: {_schema_differences(header.schema, schema)}"
            )
        footer = parse_footer(data[-FOOTER_SIZE:], len(data), where)
        if (footer.num_samples, footer.index_offset) != (entry.num_samples, entry.index_offset):
            problems.append(
                f"{where}: footer ({footer.num_samples} samples, index at {footer.index_offset}) "
                f"disagrees with the manifest ({entry.num_samples}, {entry.index_offset})"
            )
        if footer.index_crc32 != entry.index_crc32:
            problems.append(
                f"{where}: footer index CRC-32 {footer.index_crc32:#010x} disagrees with the manifest's "
                f"index_crc32 {entry.index_crc32:#010x} (readers check the index against the manifest's)"
            )
        index = parse_index(
            data[footer.index_offset : len(data) - FOOTER_SIZE],
            footer.num_samples,
            footer.index_offset,
            footer.index_crc32,
            where,
        )
        if len(index) and int(index.offsets[0]) != header.data_offset:
            problems.append(f"{where}: first record at {int(index.offsets[0])}, header ends at {header.data_offset}")
    except DataioError as exc:
        return 0, [*problems, str(exc)], []
    records = []
    view = memoryview(data)
    for pos in range(len(index)):
        off, length = index.record_range(pos)
        record = view[off : off + length]
        crc_ok = zlib.crc32(record) == int(index.crcs[pos])
        try:
            sample = schema.decode(record)
            key = sample.get("key", "?")
        except DataioError as exc:
            sample, key = {}, "?"
            if crc_ok:  # intact bytes that readers cannot decode: the schema or the writer is wrong
                problems.append(
                    f"{where}: sample {pos} at byte offset {off}: does not decode under the manifest's schema: {exc}"
                )
        if not crc_ok:
            problems.append(f"{where}: sample {pos} (key {key!s}) at byte offset {off}: CRC-32 mismatch")
        records.append(_Record(sample.get("key"), sample.get("label"), off, length, crc_ok and bool(sample)))
    return len(index), problems, records


_INDEX_COLUMNS = {
    "key": "string",
    "label": "int64",
    "shard": "int32",
    "position": "int64",
    "offset": "int64",
    "length": "int64",
}
_MAX_INDEX_PROBLEMS = 100


def _read_index(ds: ShardDataset, report: VerifyReport) -> dict[str, list[Any]] | None:
    """The Parquet index's columns, after checking its bytes against the manifest; ``None`` (and a problem)
    if it cannot be trusted enough to read."""
    m = ds.manifest
    where = m.index_path
    try:
        data = ds.store.read(where)
    except (OSError, DataioError) as exc:
        report.problems.append(f"{where}: cannot read the sample index: {exc}")
        return None
    if m.index_sha256 is None and m.sealed:
        report.problems.append(
            f"{where}: the manifest is sealed but records no index_sha256: the sample index cannot be checked "
            "(repack the dataset)"
        )
    elif m.index_sha256 is None:
        report.warnings.append(
            f"{where}: the manifest records no index_sha256 (packed by an older dataio): the file's bytes are "
            "unchecked; only its rows were compared with the shards"
        )
    else:
        try:
            m.check_index_bytes(data, where)
        except DataioError as exc:
            report.problems.append(str(exc))
            return None  # not parsed: a reader refuses it too
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # arrow raises many types (OSError, ArrowInvalid, UnicodeDecodeError, …) for corrupt files
        sink = pa.BufferOutputStream()  # arrow-owned copy, as in ShardDataset.index_table
        sink.write(data)
        table = pq.read_table(pa.BufferReader(sink.getvalue()), use_threads=False, pre_buffer=False)
        types = {f.name: str(f.type) for f in table.schema}
        wrong = [
            f"{where}: column {name!r} is missing"
            if name not in types
            else f"{where}: column {name!r} is {types[name]}, expected {typ}"
            for name, typ in _INDEX_COLUMNS.items()
            if types.get(name) != typ
        ]
        if wrong:
            report.problems.extend(wrong)
            return None
        return table.select(list(_INDEX_COLUMNS)).to_pydict()
    except Exception as exc:
        report.problems.append(f"{where}: not a readable Parquet sample index: {type(exc).__name__}: {exc}")
        return None


def _check_index(ds: ShardDataset, records: list[list[_Record]], report: VerifyReport) -> None:
    """Every row of the Parquet index must name its sample's shard, position, offset, length, key and label, and
    a label must be -1 (unlabelled) or a class of the manifest."""
    columns = _read_index(ds, report)
    if columns is None:
        return
    where = ds.manifest.index_path
    n = len(columns["key"])
    if n != len(ds):
        report.problems.append(f"{where}: {n} rows for {len(ds)} samples")
        return
    classes = ds.manifest.classes
    nclasses = len(classes) if classes is not None else None
    problems = []
    for i in range(n):
        shard, pos = ds.locate(i)
        row = {name: columns[name][i] for name in _INDEX_COLUMNS}
        if (row["shard"], row["position"]) != (shard, pos):
            problems.append(
                f"{where}: row {i} points at shard {row['shard']} position {row['position']}, expected {shard}/{pos}"
            )
        elif pos < len(records[shard]):
            rec = records[shard][pos]
            truth = {"offset": rec.offset, "length": rec.length}
            if rec.intact:  # a bad record is reported once, by its shard's check
                truth.update(key=rec.key, label=rec.label)
            wrong = [f"{name} {row[name]!r} (shard: {value!r})" for name, value in truth.items() if row[name] != value]
            if wrong:
                problems.append(
                    f"{where}: row {i} (shard {shard} position {pos}) disagrees with the shard: {', '.join(wrong)}"
                )
        label = row["label"]
        if nclasses is not None and isinstance(label, int) and not -1 <= label < nclasses:
            problems.append(f"{where}: row {i} has label {label}, outside -1 … {nclasses - 1} (the manifest's classes)")
        if len(problems) >= _MAX_INDEX_PROBLEMS:
            problems.append(f"{where}: stopping after {_MAX_INDEX_PROBLEMS} index problems")
            break
    report.problems.extend(problems)


def verify_dataset(
    url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, *, threads: int = 2
) -> VerifyReport:
    """Checks everything a reader trusts (the guarantee is stated in docs/format.md, "What verify guarantees").

    Every shard's size, sha256, header (schema equal to the manifest's), footer and index (against the manifest's
    ``index_offset``, ``num_samples`` and ``index_crc32``); every sample's CRC-32 and that it decodes under the
    schema; the Parquet index's bytes against ``index_sha256`` and every row (shard, position, offset, length,
    key, label) against the shards. Never stops at the first problem: the report lists all of them.
    """
    report = VerifyReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsealedManifestWarning)  # reported below, as one of the report's lines
        ds = open_dataset(url, storage_options)
    with ds:
        if not ds.manifest.sealed:
            report.warnings.append(
                f"{MANIFEST_NAME}: no manifest_sha256 (packed by an older dataio): class names, schema and counts "
                "are not checksum-protected, so a damaged value there cannot be detected; repack to protect them"
            )
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda s: _check_shard(ds, s), range(len(ds.manifest.shards))))
        for samples, problems, _ in results:
            report.samples += samples
            report.problems.extend(problems)
        report.shards = len(results)
        report.bytes = ds.manifest.total_bytes
        _check_index(ds, [r for _, _, r in results], report)
    return report
