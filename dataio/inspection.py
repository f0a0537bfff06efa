"""``dataio info`` and ``dataio verify``: what a dataset holds, and whether every byte is still intact."""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataio.dataset import ShardDataset, open_dataset
from dataio.errors import DataioError
from dataio.format.manifest import ShardEntry
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
    """Every problem found, one line each, naming shard, sample position, key and byte offset."""

    shards: int = 0
    samples: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_shard(ds: ShardDataset, shard: int) -> tuple[int, list[str], list[tuple[str, int]]]:
    """Checks one shard; returns (samples checked, problems, [(key, label)] of intact samples in order)."""
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
    try:
        header = parse_header(data[:65536], where)
        if header.schema != ds.manifest.schema:
            problems.append(f"{where}: schema {header.schema.names} differs from the manifest's")
        footer = parse_footer(data[-FOOTER_SIZE:], len(data), where)
        if (footer.num_samples, footer.index_offset) != (entry.num_samples, entry.index_offset):
            problems.append(
                f"{where}: footer ({footer.num_samples} samples, index at {footer.index_offset}) "
                f"disagrees with the manifest ({entry.num_samples}, {entry.index_offset})"
            )
        index = parse_index(
            data[footer.index_offset : len(data) - FOOTER_SIZE],
            footer.num_samples,
            footer.index_offset,
            footer.index_crc32,
            where,
        )
    except DataioError as exc:
        return 0, [*problems, str(exc)], []
    rows = []
    schema: Schema = ds.manifest.schema
    view = memoryview(data)
    for pos in range(len(index)):
        off, length = index.record_range(pos)
        record = view[off : off + length]
        try:
            sample = schema.decode(record)
            key = sample.get("key", "?")
        except DataioError as exc:
            sample, key = {}, f"? ({exc})"
        if zlib.crc32(record) != int(index.crcs[pos]):
            problems.append(f"{where}: sample {pos} (key {key!s}) at byte offset {off}: CRC-32 mismatch")
        rows.append((sample.get("key"), sample.get("label")))
    return len(index), problems, rows


def _check_index(ds: ShardDataset, rows: list[list[tuple[str, int]]]) -> list[str]:
    """The Parquet sample index must list every sample at its shard, position, offset and length."""
    where = ds.manifest.index_path
    try:
        table = ds.index_table().to_pydict()
    except Exception as exc:
        return [f"{where}: cannot read the sample index: {exc}"]
    n = len(table.get("key", []))
    if n != len(ds):
        return [f"{where}: {n} rows for {len(ds)} samples"]
    problems = []
    for i in range(n):
        shard, pos = ds.locate(i)
        if (table["shard"][i], table["position"][i]) != (shard, pos):
            problems.append(
                f"{where}: row {i} points at shard {table['shard'][i]} position {table['position'][i]}, "
                f"expected {shard}/{pos}"
            )
        elif pos < len(rows[shard]) and rows[shard][pos] != (table["key"][i], table["label"][i]):
            problems.append(f"{where}: row {i} (key {table['key'][i]}) disagrees with shard {shard} position {pos}")
        if len(problems) > 100:
            problems.append(f"{where}: stopping after 100 index problems")
            break
    return problems


def verify_dataset(
    url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None, *, threads: int = 2
) -> VerifyReport:
    """Checks every shard's size, sha256, header, footer and index, every sample's CRC-32, and the Parquet
    index against the shards. Never stops at the first problem: the report lists all of them."""
    report = VerifyReport()
    with open_dataset(url, storage_options) as ds:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda s: _check_shard(ds, s), range(len(ds.manifest.shards))))
        for samples, problems, _ in results:
            report.samples += samples
            report.problems.extend(problems)
        report.shards = len(results)
        report.bytes = ds.manifest.total_bytes
        report.problems.extend(_check_index(ds, [r for _, _, r in results]))
    return report
