"""Writing one shard (runs inside a worker process): read the source bytes with a few reads in flight,
validate or re-encode them, stream records into a temporary object and commit it atomically.

A finished shard has a small progress record (``.dataio-pack/<shard>.json``: plan hash, size, checksum, skipped
files), the proof that pack wrote it (:mod:`dataio.pack.ledger`). In a local output the record is written *before*
the shard is renamed into place, so a shard pack wrote always has its record; to a URL it is uploaded after the
shard (as before: a crash between the two uploads leaves a shard the next pack names as foreign). A rerun reuses
a shard only if its record's plan hash matches and the shard's bytes still hash to the recorded sha256. Local
outputs are written through :class:`~dataio.pack.owned_dir.OwnedDir` (no symlink followed, temp files journaled).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dataio.format.schema import IMAGE_SCHEMA
from dataio.format.shard import FOOTER_SIZE, ShardInfo, ShardWriter, parse_footer, parse_index
from dataio.pack.images import check_image, reencode
from dataio.pack.labels import Item
from dataio.pack.ledger import record_path
from dataio.pack.lifeline import die_with_parent
from dataio.pack.output import Writer, writer_for
from dataio.pack.owned_dir import PROGRESS_DIR, OwnedDir
from dataio.pack.plan import PackOptions, ShardJob
from dataio.pack.readahead import Readahead
from dataio.pack.sources import display_path
from dataio.storage import RetryPolicy, Store, open_store

__all__ = ["PROGRESS_DIR", "ShardResult", "close_writers", "init_worker", "run_job"]

_READ_AHEAD = 128  # files announced to the kernel ahead of the writer
_progress: tuple[Any, Any] | None = None  # (samples, bytes) multiprocessing.Value counters
_stores: dict[tuple[str, str], tuple[Store, Writer]] = {}


@dataclass
class ShardResult:
    """What a worker reports about one shard."""

    shard_id: int
    path: str
    status: str  # "written" | "reused" | "failed"
    info: ShardInfo | None = None
    positions: list[int] = field(default_factory=list)  # index into job.items of each stored sample
    offsets: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)


def init_worker(progress: tuple[Any, Any] | None, parent_pid: int | None = None) -> None:
    """Pool initializer: receives the shared progress counters; a worker (``parent_pid`` given) ends when the
    pack process that started it dies (:func:`~dataio.pack.lifeline.die_with_parent`)."""
    global _progress
    if parent_pid is not None:
        die_with_parent(parent_pid)
    _progress = progress


def close_writers() -> None:
    """Closes the temp journals of this process's writers (a later write starts a new journal)."""
    for _, out in _stores.values():
        if isinstance(out, OwnedDir):
            out.close()


def _report(samples: int, nbytes: int) -> None:
    if _progress is not None:
        for counter, value in zip(_progress, (samples, nbytes), strict=True):
            with counter.get_lock():
                counter.value += value


def _store(
    location: str, storage_options: dict[str, Any] | None, retry: RetryPolicy | None = None
) -> tuple[Store, Writer]:
    """This process's store of ``location`` and the writer pack writes it through."""
    key = (location, json.dumps(storage_options or {}, sort_keys=True) + repr(retry))
    if key not in _stores:
        store = open_store(location, storage_options, retry=retry)
        _stores[key] = (store, writer_for(store))
    return _stores[key]


def _prepare(item: Item, data: bytes | OSError, options: PackOptions) -> tuple[bytes | None, str | None]:
    """Validates (and re-encodes) one source file; returns ``(image bytes, None)`` or ``(None, reason)``."""
    if isinstance(data, OSError):
        return None, f"cannot read: {data.strerror or data}"
    reason = check_image(data)
    if reason is None and options.reencodes:
        try:
            data = reencode(data, options.max_size, options.quality)
        except Exception as exc:  # PIL raises many types for bad images
            reason = f"cannot re-encode: {exc}"
    return (None, reason) if reason is not None else (data, None)


def _display(item: Item) -> str:
    return display_path(item.path, item.offset, item.key)


def _record_of(store: Store, job: ShardJob) -> tuple[ShardInfo, list[int], list[str]] | None:
    """``(info, skipped positions, reasons)`` of ``job``'s progress record if it is one of this plan; a missing or
    malformed record is none (the shard is then written again)."""
    try:
        record = json.loads(store.read(record_path(job.path)))
        if record.get("plan_hash") != job.plan_hash:
            return None
        info = ShardInfo(**record["info"])
        positions = [int(i) for i in record["skipped_positions"]]
        reasons = [str(r) for r in record["reasons"]]
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if len(positions) != len(reasons) or not all(0 <= i < len(job.items) for i in positions):
        return None
    return info, positions, reasons


def _try_reuse(store: Store, job: ShardJob) -> ShardResult | None:
    found = _record_of(store, job)
    if found is None or not store.exists(job.path) or store.size(job.path) != found[0].size:
        return None
    info, skipped_positions, reasons = found
    sha = hashlib.sha256()
    with contextlib.closing(store.open_stream(job.path)) as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    if sha.hexdigest() != info.sha256:
        return None
    try:
        footer = parse_footer(store.read_range(job.path, info.size - FOOTER_SIZE, FOOTER_SIZE), info.size, job.path)
        index_bytes = store.read_range(job.path, footer.index_offset, info.size - FOOTER_SIZE - footer.index_offset)
        index = parse_index(index_bytes, footer.num_samples, footer.index_offset, footer.index_crc32, job.path)
    except ValueError:  # a format error: not a shard this plan wrote
        return None
    skipped = set(skipped_positions)
    positions = [i for i in range(len(job.items)) if i not in skipped]
    if len(positions) != len(index):
        return None
    offsets = [int(x) for x in index.offsets]
    _report(len(job.items), info.size)
    result = ShardResult(job.shard_id, job.path, "reused", info, positions, offsets[:-1])
    result.lengths = [b - a for a, b in itertools.pairwise(offsets)]
    result.skipped = [(_display(job.items[i]), r) for i, r in zip(skipped_positions, reasons, strict=True)]
    return result


class _Abort(Exception):
    """Raised inside the atomic write to discard a shard that must not be committed."""


def run_job(
    job: ShardJob,
    location: str,
    storage_options: dict[str, Any] | None,
    options: PackOptions,
    retry: RetryPolicy | None = None,
) -> ShardResult:
    """Writes (or reuses) one shard; bad images are skipped or make the shard fail, per ``options.on_error``.

    A failed shard is not written; its result lists every bad file with the reason. Uploads retry per ``retry``.
    """
    store, out = _store(location, storage_options, retry)
    try:
        reused = _try_reuse(store, job)
    finally:
        if out is not store:  # no cached descriptor outlives a replace of its file by ``out``
            store.forget(job.path)
            store.forget(record_path(job.path))
    if reused is not None:
        return reused
    result = ShardResult(job.shard_id, job.path, "written")
    skipped_positions: list[int] = []
    try:
        with out.open_atomic(job.path) as f, Readahead(job.items, _READ_AHEAD) as source:
            writer = ShardWriter(f, IMAGE_SCHEMA)
            done = 0
            for i, (item, raw) in enumerate(source):
                data, reason = _prepare(item, raw, options)
                if reason is not None:
                    result.skipped.append((_display(item), reason))
                    skipped_positions.append(i)
                elif not result.skipped or options.on_error == "skip":
                    start = writer.bytes_written
                    writer.add({"key": item.key, "label": item.label, "image": data})
                    result.positions.append(i)
                    result.offsets.append(start)
                    result.lengths.append(writer.bytes_written - start)
                done += 1
                if done == 64:
                    _report(done, 0)
                    done = 0
            _report(done, 0)
            if result.skipped and options.on_error == "fail":
                raise _Abort
            result.info = writer.close()
            record = {
                "plan_hash": job.plan_hash,
                "info": asdict(result.info),
                "skipped_positions": skipped_positions,
                "reasons": [r for _, r in result.skipped],
            }
            if out is not store:  # local: the record before the rename
                out.write_bytes(record_path(job.path), json.dumps(record, sort_keys=True).encode())
    except _Abort:
        result.status, result.bad, result.skipped = "failed", result.skipped, []
        return result
    if out is store:  # a URL: after the upload, as before (the shard is the first object a failing upload names)
        out.write_bytes(record_path(job.path), json.dumps(record, sort_keys=True).encode())
    _report(0, result.info.size)
    return result
