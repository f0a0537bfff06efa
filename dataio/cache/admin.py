"""Inspecting and clearing a cache directory (``dataio cache stats|clear CACHE_DIR``).

Both are safe while training runs: a shard some process has open (pinned), a download in progress and the
plan of a live process are reported and left alone. ``clear`` deletes files only, never directories, so a
running process never finds its cache directory gone.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from dataio.cache.fds import REGISTRY
from dataio.cache.layout import DATASET_META, CacheLayout, read_json
from dataio.cache.locks import hold, is_locked, open_locked
from dataio.cache.plans import load_plans
from dataio.cache.space import evict, is_in_use, scan

__all__ = ["ClearReport", "DatasetUsage", "clear_cache", "inspect_cache"]


@dataclass(frozen=True)
class DatasetUsage:
    """One dataset's part of a cache directory.

    Attributes:
        key: Its directory name; root: the remote root URL (without credentials); limit, policy: as last
        opened. shards/bytes: verified cached shards; in_use: of them, pinned by a live process.
        downloading: downloads in progress (temp files locked by a live downloader) and their reserved bytes.
        stale_temp: temp files of dead downloaders. download_locks_held: per-shard download locks held now.
        plans: live processes that published an access order.
    """

    key: str
    root: str | None
    limit: int | None
    policy: str | None
    shards: int
    bytes: int
    in_use: int
    downloading: int
    downloading_bytes: int
    stale_temp: int
    download_locks_held: int
    plans: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClearReport:
    """What ``clear`` did: shards and bytes removed, shards kept because in use (their names), and other
    files removed (stale temp files, dead plans, unused lock files)."""

    removed: int = 0
    removed_bytes: int = 0
    kept_in_use: tuple[str, ...] = ()
    kept_bytes: int = 0
    other_files: int = 0
    downloading: int = 0
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layouts(cache_dir: str) -> list[CacheLayout]:
    if not os.path.isdir(cache_dir):
        raise FileNotFoundError(f"{cache_dir}: no such cache directory")
    return [
        CacheLayout(cache_dir, d)
        for d in sorted(os.listdir(cache_dir))
        if os.path.isfile(os.path.join(cache_dir, d, DATASET_META)) or os.path.isdir(os.path.join(cache_dir, d, "data"))
    ]


def _locks_held(layout: CacheLayout) -> int:
    try:
        names = os.listdir(layout.locks_dir)
    except FileNotFoundError:
        return 0
    return sum(bool(is_locked(os.path.join(layout.locks_dir, n))) for n in names)


def inspect_cache(cache_dir: str | os.PathLike[str]) -> list[DatasetUsage]:
    """Usage of every dataset in ``cache_dir`` (reads only; probes locks without waiting)."""
    out = []
    for layout in _layouts(os.fspath(cache_dir)):
        meta = read_json(layout.meta_path) or {}
        usage = scan(layout, remove_stale=False)
        temps = os.listdir(layout.tmp_dir) if os.path.isdir(layout.tmp_dir) else []
        stale = sum(is_locked(os.path.join(layout.tmp_dir, t)) is False for t in temps)
        out.append(
            DatasetUsage(
                key=layout.key,
                root=meta.get("root"),
                limit=meta.get("limit"),
                policy=meta.get("policy"),
                shards=len(usage.residents),
                bytes=usage.shard_bytes,
                in_use=sum(is_in_use(layout, r.name) for r in usage.residents),
                downloading=usage.temp_files - stale,
                downloading_bytes=usage.temp_bytes,
                stale_temp=stale,
                download_locks_held=_locks_held(layout),
                plans=len(_live_plan_ids(layout)),
            )
        )
    return out


def _live_plan_ids(layout: CacheLayout) -> set[str]:
    try:
        names = os.listdir(layout.plans_dir)
    except FileNotFoundError:
        return set()
    return {n[: -len(".alive")] for n in names if n.endswith(".alive") and is_locked(os.path.join(layout.plans_dir, n))}


def _remove_unlocked(directory: str) -> int:
    """Deletes the files in ``directory`` nobody holds a lock on (while holding it, so a late locker
    re-opens a fresh file)."""
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for n in os.listdir(directory):
            path = os.path.join(directory, n)
            got = open_locked(path, True, blocking=False)
            if got is None:
                continue
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                pass
            finally:
                REGISTRY.close(got[0])
    return removed


def clear_cache(cache_dir: str | os.PathLike[str]) -> ClearReport:
    """Removes every cached shard that no process is using, stale temp files, dead plans and unused locks."""
    removed = removed_bytes = kept_bytes = other = downloading = 0
    kept: list[str] = []
    per: dict[str, dict[str, Any]] = {}
    for layout in _layouts(os.fspath(cache_dir)):
        with hold(layout.global_lock):
            usage = scan(layout, remove_stale=True)
            n = nbytes = 0
            for r in usage.residents:
                if evict(layout, r.name):
                    n += 1
                    nbytes += r.size
                else:
                    kept.append(f"{layout.key}/{r.name}")
                    kept_bytes += r.size
            load_plans(layout)  # deletes plans of dead processes
            others = usage.stale_removed + _remove_unlocked(layout.locks_dir)
        removed += n
        removed_bytes += nbytes
        other += others
        downloading += usage.temp_files
        per[layout.key] = {"removed": n, "removed_bytes": nbytes, "downloading": usage.temp_files}
    return ClearReport(removed, removed_bytes, tuple(kept), kept_bytes, other, downloading, per)
