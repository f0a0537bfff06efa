"""Inspecting and clearing a cache directory (``dataio cache stats|clear CACHE_DIR``).

Both are safe while training runs: a shard some process has open (pinned), a download in progress and the
plan of a live process are reported and left alone. ``clear`` deletes files only, never directories, so a
running process never finds its cache directory gone; it deletes only names the cache creates, reached
without a symlink (:mod:`dataio.cache.safedir`), and lists everything else it found as left alone.
"""

from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass, field
from typing import Any

from dataio.cache.fds import REGISTRY
from dataio.cache.layout import DATASET_META, FOLDERS, CacheLayout, owned
from dataio.cache.locks import hold, is_locked_at, open_locked
from dataio.cache.plans import load_plans
from dataio.cache.safedir import UnsafeCacheEntry, describe, lstat_at, opened_dir, read_json_at, unlink_at
from dataio.cache.space import Usage, evict, is_in_use, scan

__all__ = ["ClearReport", "DatasetUsage", "clear_cache", "inspect_cache", "left_alone_at_top"]


@dataclass(frozen=True)
class DatasetUsage:
    """One dataset's part of a cache directory.

    Attributes:
        key: Its directory name; root: the remote root URL (without credentials); limit, policy: as last
        opened. shards/bytes: verified cached shards; in_use: of them, pinned by a live process.
        downloading: downloads in progress (temp files locked by a live downloader) and their reserved bytes.
        stale_temp: temp files of dead downloaders. download_locks_held: per-shard download locks held now.
        plans: live processes that published an access order.
        left_alone: entries the cache did not create (foreign names, symlinks, FIFOs, devices), never
        followed, opened or deleted; each with what it is.
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
    left_alone: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ClearReport:
    """What ``clear`` did: shards and bytes removed, shards kept because in use (their names), other files
    removed (stale temp files, dead plans, unused lock files), and the entries it left alone because the cache
    did not create them (foreign names, symlinks, FIFOs: each with what it is)."""

    removed: int = 0
    removed_bytes: int = 0
    kept_in_use: tuple[str, ...] = ()
    kept_bytes: int = 0
    other_files: int = 0
    downloading: int = 0
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    left_alone: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layouts(cache_dir: str, left: list[str]) -> list[CacheLayout]:
    """The datasets' folders in ``cache_dir``: real folders only (a symlink is never descended: noted in
    ``left``) that hold ``dataset.json`` or ``data/``."""
    if not os.path.isdir(cache_dir):
        raise FileNotFoundError(f"{cache_dir}: no such cache directory")
    root = os.path.realpath(cache_dir)
    out = []
    with opened_dir(root, []) as dfd:
        for d in sorted(os.listdir(dfd)):
            st = lstat_at(dfd, d)
            if st is None or not stat.S_ISDIR(st.st_mode):
                if st is not None and stat.S_ISLNK(st.st_mode):
                    left.append(f"{os.path.join(root, d)}: a symlink, not followed")
                continue
            layout = CacheLayout(root, d)
            try:
                with layout.folder() as sub:
                    if lstat_at(sub, DATASET_META) is not None or lstat_at(sub, "data") is not None:
                        out.append(layout)
            except UnsafeCacheEntry:  # pragma: no cover - checked just above (a race)
                continue
    return out


def _foreign(layout: CacheLayout, left: list[str]) -> None:
    """Notes in ``left`` every entry of the dataset's folders the cache did not create (left alone)."""
    for sub in ("", "tmp", "locks", "plans"):
        try:
            with layout.folder(sub) if sub else layout.folder() as dfd:
                names = os.listdir(dfd)
                for n in sorted(names):
                    st = lstat_at(dfd, n)
                    if st is None or (sub == "" and n in FOLDERS and stat.S_ISDIR(st.st_mode)):
                        continue
                    if not owned(sub, n) or not stat.S_ISREG(st.st_mode):
                        left.append(f"{os.path.join(layout.base, sub, n).rstrip('/')}: {describe(st.st_mode)} the "
                                    "cache did not create, left alone")  # fmt: skip
        except FileNotFoundError:
            continue
        except UnsafeCacheEntry as exc:
            left.append(f"{exc}".split(";")[0] + ", not followed")
    try:
        with layout.folder("data") as dfd:
            for dirpath, _dirs, files, fd in os.fwalk(".", dir_fd=dfd, follow_symlinks=False):
                for n in sorted(files):
                    st = lstat_at(fd, n)
                    if st is not None and (not owned("data", n) or not stat.S_ISREG(st.st_mode)):
                        where = os.path.normpath(os.path.join(layout.data_dir, dirpath, n))
                        left.append(f"{where}: {describe(st.st_mode)} the cache did not create, left alone")
    except (FileNotFoundError, UnsafeCacheEntry):
        pass


def left_alone_at_top(cache_dir: str | os.PathLike[str]) -> list[str]:
    """Entries directly in ``cache_dir`` that ``stats`` and ``clear`` never descend (symlinks)."""
    left: list[str] = []
    _layouts(os.fspath(cache_dir), left)
    return left


def _locks_held(layout: CacheLayout) -> int:
    try:
        with layout.folder("locks") as dfd:
            return sum(bool(is_locked_at(dfd, n)) for n in os.listdir(dfd) if owned("locks", n))
    except (FileNotFoundError, UnsafeCacheEntry):
        return 0


def _stale_temps(layout: CacheLayout) -> int:
    try:
        with layout.folder("tmp") as dfd:
            return sum(is_locked_at(dfd, t) is False for t in os.listdir(dfd) if owned("tmp", t))
    except (FileNotFoundError, UnsafeCacheEntry):
        return 0


def inspect_cache(cache_dir: str | os.PathLike[str]) -> list[DatasetUsage]:
    """Usage of every dataset in ``cache_dir`` (reads only; probes locks without waiting; never follows a
    symlink nor opens anything but regular files, never blocking; entries the cache did not create are listed
    in ``DatasetUsage.left_alone``)."""
    out = []
    for layout in _layouts(os.fspath(cache_dir), []):
        left: list[str] = []
        _foreign(layout, left)
        try:
            with layout.folder() as dfd:
                meta = read_json_at(dfd, DATASET_META) or {}
            usage = scan(layout, remove_stale=False)
        except UnsafeCacheEntry:
            meta = meta if isinstance(meta, dict) else {}
            usage = Usage((), 0, 0, 0)
        if not isinstance(meta, dict):
            meta = {}
        stale = _stale_temps(layout)
        out.append(
            DatasetUsage(
                key=layout.key,
                root=meta.get("root"),
                limit=meta.get("limit"),
                policy=meta.get("policy"),
                shards=len(usage.residents),
                bytes=usage.shard_bytes,
                in_use=sum(is_in_use(layout, r.name) for r in usage.residents),
                downloading=max(usage.temp_files - stale, 0),
                downloading_bytes=usage.temp_bytes,
                stale_temp=stale,
                download_locks_held=_locks_held(layout),
                plans=len(_live_plan_ids(layout)),
                left_alone=tuple(left),
            )
        )
    return out


def _live_plan_ids(layout: CacheLayout) -> set[str]:
    try:
        with layout.folder("plans") as dfd:
            return {
                n[: -len(".alive")]
                for n in os.listdir(dfd)
                if n.endswith(".alive") and owned("plans", n) and is_locked_at(dfd, n)
            }
    except (FileNotFoundError, UnsafeCacheEntry):
        return set()


def _remove_unlocked_locks(layout: CacheLayout) -> int:
    """Deletes the download locks (names the cache creates only, regular files only) nobody holds (while
    holding them, so a late locker re-opens a fresh file)."""
    removed = 0
    try:
        with layout.folder("locks") as dfd:
            for n in os.listdir(dfd):
                if not owned("locks", n):
                    continue
                got = open_locked(os.path.join(layout.locks_dir, n), True, blocking=False, below=layout.cache_dir)
                if got is None:
                    continue
                try:
                    removed += unlink_at(dfd, n)
                finally:
                    REGISTRY.close(got[0])
    except (FileNotFoundError, UnsafeCacheEntry):
        pass
    return removed


def clear_cache(cache_dir: str | os.PathLike[str]) -> ClearReport:
    """Removes every cached shard that no process is using, stale temp files, dead plans and unused locks.

    Deletes only names the cache creates, only through folders reached without a symlink; a symlinked folder
    is neither followed nor removed, and every entry left alone is listed in ``ClearReport.left_alone``.
    """
    removed = removed_bytes = kept_bytes = other = downloading = 0
    kept: list[str] = []
    left: list[str] = []
    per: dict[str, dict[str, Any]] = {}
    for layout in _layouts(os.fspath(cache_dir), left):
        _foreign(layout, left)
        try:
            with hold(layout.global_lock, below=layout.cache_dir):
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
                others = usage.stale_removed + _remove_unlocked_locks(layout)
        except UnsafeCacheEntry as exc:  # a symlinked data/ or tmp/, or cache.lock: that dataset is left alone
            left.append(f"{exc}".split(";")[0] + f": {layout.key} not cleared")
            continue
        removed += n
        removed_bytes += nbytes
        other += others
        downloading += usage.temp_files
        per[layout.key] = {"removed": n, "removed_bytes": nbytes, "downloading": usage.temp_files}
    return ClearReport(removed, removed_bytes, tuple(kept), kept_bytes, other, downloading, per, tuple(left))
