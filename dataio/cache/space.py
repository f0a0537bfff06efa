"""Space accounting and eviction in one dataset's cache directory (callers hold ``cache.lock``).

Usage is what is on disk: the verified shards under ``data/`` plus the downloads in progress under
``tmp/`` (each created at its full size, so concurrent downloaders see each other's reservations). A temp
file whose flock is free belongs to a dead downloader and is deleted by the next scan.

A shard is evicted only if an exclusive, non-blocking flock on it is granted: a reader anywhere holds a
shared flock on every shard it is using, so a shard in use is never evicted (and a reader that opened a
shard just before it was unlinked notices, see :func:`dataio.cache.locks.open_locked`).

Only regular files under ``data/`` with names the cache creates are shards; nothing is reached through a
symlink (:mod:`dataio.cache.safedir`). A symlink (planted by another user of a shared node, or pointing
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
from dataio.cache.layout import CacheLayout, owned
from dataio.cache.locks import is_locked, is_locked_at, open_locked
from dataio.cache.safedir import describe, lstat_at, unlink_at
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


def scan(layout: CacheLayout, *, remove_stale: bool = True) -> Usage:
    """Lists shards and temp files; deletes temp files of dead downloaders if ``remove_stale``.

    Only names the cache creates count (:func:`~dataio.cache.layout.owned`); in ``tmp/`` only regular files
    are opened (never blocking, never through a symlink) and only unlocked ``*.part`` temps are deleted.

    Raises:
        UnsafeCacheEntry: ``data/`` or ``tmp/`` is a symlink or not a folder.
    """
    residents = tuple(Resident(name, st.st_size, st.st_mtime_ns) for name, st in layout.data_names())
    temp_bytes = temp_files = stale = 0
    live: list[str] = []
    with contextlib.suppress(FileNotFoundError), layout.folder("tmp", create=remove_stale) as dfd:
        for t in os.listdir(dfd):
            if not owned("tmp", t):
                continue
            locked = is_locked_at(dfd, t)
            if locked is None:  # gone, or not a regular file: left alone
                continue
            if not locked and remove_stale:
                stale += unlink_at(dfd, t)
                continue
            st = lstat_at(dfd, t)
            if st is not None:
                temp_bytes += st.st_size
                temp_files += 1
                live.append(t)
    return Usage(residents, temp_bytes, temp_files, stale, tuple(live))


def evict(layout: CacheLayout, name: str) -> bool:
    """Deletes a cached shard unless someone is using it; True if it was deleted."""
    path = layout.data_path(name)
    try:
        got = open_locked(path, True, blocking=False, below=layout.cache_dir)
    except (UnsafeFileError, NotADirectoryError):
        return False
    if got is None:
        return False
    fd, _ = got
    folders, leaf = layout.parent_of(path)
    try:
        with layout.folder(*folders) as dfd:
            return unlink_at(dfd, leaf)
    except (UnsafeFileError, FileNotFoundError):
        return False
    finally:
        REGISTRY.close(fd)


def remove_unsafe(layout: CacheLayout, name: str) -> list[str]:
    """Removes whatever stands on the way to ``data/<name>`` without being a real directory (a symlink, a
    file where a directory belongs) or, at ``name`` itself, without being a regular file (a symlink, a FIFO, a
    socket, a device). Only the entry itself is removed, never what a symlink points to; every folder is
    reached without following a symlink. The caller holds the shard's download lock. Returns the removed
    paths (each logged).

    Raises:
        OSError: a directory where the shard belongs (not removed: it may hold someone's files).
        UnsafeCacheEntry: ``data/`` itself (or the dataset's folder) is a symlink or not a folder.
    """
    removed: list[str] = []
    parts = name.split("/")
    where = layout.data_dir
    with layout.folder("data", create=True) as top:
        dfd = os.dup(top)
    try:
        for i, part in enumerate(parts):
            where = os.path.join(where, part)
            st = lstat_at(dfd, part)
            if st is None:
                break
            last = i == len(parts) - 1
            if stat.S_ISREG(st.st_mode) if last else stat.S_ISDIR(st.st_mode):
                if not last:
                    sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
                    os.close(dfd)
                    dfd = sub
                continue
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(f"{where}: a directory where the cached shard {name} belongs; remove it")
            unlink_at(dfd, part)
            log.warning("removed %s from the cache: %s, not a regular file or directory", where, describe(st.st_mode))
            removed.append(where)
            break
    finally:
        os.close(dfd)
    return removed


def is_in_use(layout: CacheLayout, name: str) -> bool:
    """Whether some process holds a shard open (a shared flock on it)."""
    return bool(is_locked(layout.data_path(name), below=layout.cache_dir))
