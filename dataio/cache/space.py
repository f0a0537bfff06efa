"""Space accounting and eviction in one dataset's cache directory (callers hold ``cache.lock``).

Usage is what is on disk: the verified shards under ``data/`` plus the downloads in progress under
``tmp/`` (each created at its full size, so concurrent downloaders see each other's reservations). A temp
file whose flock is free belongs to a dead downloader and is deleted by the next scan.

A shard is evicted only if an exclusive, non-blocking flock on it is granted: a reader anywhere holds a
shared flock on every shard it is using, so a shard in use is never evicted (and a reader that opened a
shard just before it was unlinked notices, see :func:`dataio.cache.locks.open_locked`).

Only regular files under ``data/`` are shards. A symlink (planted by another user of a shared node, or pointing
outside the cache), a FIFO, socket or device there is never opened, never counted, and is removed by
:func:`remove_unsafe` before the shard is downloaded again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from dataclasses import dataclass

from dataio.cache.fds import REGISTRY
from dataio.cache.layout import CacheLayout
from dataio.cache.locks import is_locked, open_locked
from dataio.storage.base import UnsafeFileError

__all__ = ["Resident", "Usage", "evict", "remove_unsafe", "scan"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resident:
    """A verified shard in the cache: name (relative to ``data/``), bytes and last-opened time (ns)."""

    name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Usage:
    """What one dataset's cache directory holds right now."""

    residents: tuple[Resident, ...]
    temp_bytes: int
    temp_files: int
    stale_removed: int
    temp_names: tuple[str, ...] = ()

    @property
    def shard_bytes(self) -> int:
        return sum(r.size for r in self.residents)

    @property
    def total(self) -> int:
        return self.shard_bytes + self.temp_bytes


def iter_data_files(layout: CacheLayout) -> list[tuple[str, os.stat_result]]:
    """``(name, stat)`` of every regular file under ``data/`` (names are ``/``-separated, relative to ``data/``);
    symlinks and special files are left out (``os.walk`` does not follow symlinked directories either)."""
    out = []
    for dirpath, _dirs, files in os.walk(layout.data_dir):
        rel = os.path.relpath(dirpath, layout.data_dir)
        for f in files:
            full = os.path.join(dirpath, f)
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(full)
                if stat.S_ISREG(st.st_mode):
                    out.append((f if rel == "." else f"{rel.replace(os.sep, '/')}/{f}", st))
    return out


def scan(layout: CacheLayout, *, remove_stale: bool = True) -> Usage:
    """Lists shards and temp files; deletes temp files of dead downloaders if ``remove_stale``."""
    residents = tuple(Resident(name, st.st_size, st.st_mtime_ns) for name, st in iter_data_files(layout))
    temp_bytes = temp_files = stale = 0
    live: list[str] = []
    try:
        temps = os.listdir(layout.tmp_dir)
    except FileNotFoundError:
        temps = []
    for t in temps:
        path = os.path.join(layout.tmp_dir, t)
        locked = is_locked(path)
        if locked is None:
            continue
        if not locked and remove_stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            stale += 1
            continue
        with contextlib.suppress(FileNotFoundError):
            temp_bytes += os.stat(path).st_size
            temp_files += 1
            live.append(t)
    return Usage(residents, temp_bytes, temp_files, stale, tuple(live))


def evict(layout: CacheLayout, name: str) -> bool:
    """Deletes a cached shard unless someone is using it; True if it was deleted."""
    try:
        got = open_locked(layout.data_path(name), True, blocking=False, regular_in=layout.data_dir)
    except (UnsafeFileError, NotADirectoryError):
        return False
    if got is None:
        return False
    fd, _ = got
    try:
        os.unlink(layout.data_path(name))
    except FileNotFoundError:
        return False
    finally:
        REGISTRY.close(fd)
    return True


def remove_unsafe(layout: CacheLayout, name: str) -> list[str]:
    """Removes whatever stands on the way to ``data/<name>`` without being a real directory (a symlink, a
    file where a directory belongs) or, at ``name`` itself, without being a regular file (a symlink, a FIFO, a
    socket, a device). Only the entry itself is removed, never what a symlink points to. The caller holds the
    shard's download lock. Returns the removed paths (each logged).

    Raises:
        OSError: a directory where the shard belongs (not removed: it may hold someone's files).
    """
    removed: list[str] = []
    parts = name.split("/")
    where = layout.data_dir
    for i, part in enumerate(parts):
        where = os.path.join(where, part)
        try:
            st = os.lstat(where)
        except FileNotFoundError:
            break
        last = i == len(parts) - 1
        if stat.S_ISREG(st.st_mode) if last else stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{where}: a directory where the cached shard {name} belongs; remove it")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(where)
        log.warning("removed %s from the cache: not a regular file or directory (a symlink or special file)", where)
        removed.append(where)
        break
    return removed


def is_in_use(layout: CacheLayout, name: str) -> bool:
    """Whether some process holds a shard open (a shared flock on it)."""
    return bool(is_locked(layout.data_path(name)))
