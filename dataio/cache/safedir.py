"""The cache's folders and files, reached without following a symlink (issue 19 items 4 and 5).

A node-local cache disk is shared by the node's users; another user may plant a symlink, a FIFO, a device or a
foreign file anywhere below the cache directory. Every cache module reaches what it reads, writes, renames or
deletes through these helpers:

* the cache directory the user named (``cache_dir``) is trusted as given: it is resolved once
  (:class:`~dataio.cache.layout.CacheLayout`) and may itself be a symlink the user chose;
* every folder below it is opened component by component with ``O_DIRECTORY | O_NOFOLLOW`` relative to its
  parent's descriptor (:func:`open_dir`), so no later step can be redirected out of the cache;
* every file is opened relative to its folder's descriptor with ``O_NOFOLLOW | O_NONBLOCK`` and must be a
  regular file (``fstat``) before it is used (:func:`open_file`): a FIFO never blocks the opener;
* names are listed, stat-ed, renamed and unlinked relative to a folder descriptor, never through a path.

A symlink or a non-directory where a folder belongs raises :class:`UnsafeCacheEntry` naming the path and
what to remove; a symlink or special file where a file belongs raises it too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from dataio.storage.base import UnsafeFileError

__all__ = [
    "UnsafeCacheEntry",
    "describe",
    "lstat_at",
    "open_dir",
    "open_file",
    "opened_dir",
    "read_json_at",
    "unlink_at",
    "write_json_at",
]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC
_KINDS = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFREG: "a regular file",
}

#: Bytes a JSON file of the cache (a plan, a position, dataset.json) may have; a larger one is ignored.
MAX_JSON_BYTES = 64 << 20


class UnsafeCacheEntry(UnsafeFileError):
    """Something other than what the cache created stands where it needs a folder or a file (a symlink, a
    FIFO, a device, a file where a folder belongs): never followed, opened blocking or written through."""


def describe(mode: int) -> str:
    """``"a symlink"``, ``"a FIFO"``, … for an ``st_mode``."""
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def _unsafe(where: str, what: str, dfd: int | None = None, name: str = "") -> UnsafeCacheEntry:
    if dfd is not None:
        st = lstat_at(dfd, name)
        if st is not None:
            what = describe(st.st_mode)
    return UnsafeCacheEntry(
        f"{where}: is {what}, not what the cache created there; the cache never follows or writes through it "
        f"(another user of this node may have planted it): remove {where}"
    )


def lstat_at(dfd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in the folder ``dfd`` (never follows), None if it is missing."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _open_sub(dfd: int, part: str, where: str, create: bool) -> int:
    for attempt in range(2):
        try:
            return os.open(part, _DIR, dir_fd=dfd)
        except FileNotFoundError:
            if not create or attempt:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=dfd)  # less the umask, as os.makedirs
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _unsafe(where, "not a directory", dfd, part) from None
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def open_dir(root: str, parts: Sequence[str], *, create: bool = False) -> int:
    """A descriptor of the folder ``root/parts[0]/parts[1]/…``: ``root`` (the user's cache directory) as given,
    each part with ``O_DIRECTORY | O_NOFOLLOW`` relative to its parent; missing parts are made if ``create``.

    Raises:
        UnsafeCacheEntry: a part is a symlink or not a directory.
        FileNotFoundError: a part is missing and ``create`` is False.
    """
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    where = root
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise ValueError(f"bad cache path component {part!r} below {root}")
            where = os.path.join(where, part)
            sub = _open_sub(dfd, part, where, create)
            os.close(dfd)
            dfd = sub
    except BaseException:
        os.close(dfd)
        raise
    return dfd


@contextlib.contextmanager
def opened_dir(root: str, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
    """``with opened_dir(root, parts) as dfd:`` (see :func:`open_dir`); closes the descriptor."""
    dfd = open_dir(root, parts, create=create)
    try:
        yield dfd
    finally:
        os.close(dfd)


def open_file(dfd: int, name: str, flags: int, where: str, mode: int = 0o666) -> int:
    """Opens the regular file ``name`` in the folder ``dfd`` (``O_NOFOLLOW | O_NONBLOCK``: a FIFO never
    blocks; the descriptor is made blocking again once ``fstat`` said "regular file").

    Args:
        where: The file's full path, for errors.

    Raises:
        UnsafeCacheEntry: a symlink, FIFO, socket, device or directory at ``name``.
        OSError: the usual (missing file, no space, permission).
    """
    try:
        fd = os.open(name, flags | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dfd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENOTDIR, errno.EWOULDBLOCK):
            raise _unsafe(where, "not a regular file", dfd, name) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _unsafe(where, describe(st.st_mode))
    os.set_blocking(fd, True)
    return fd


def unlink_at(dfd: int, name: str) -> bool:
    """Removes the entry ``name`` of the folder ``dfd`` (a symlink itself, never what it points to); False if
    it was already gone, or is a directory or not ours to remove (left alone)."""
    try:
        os.unlink(name, dir_fd=dfd)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return False
    return True


def write_json_at(dfd: int, name: str, value: Any) -> None:
    """Writes JSON to a fresh temp file (``O_EXCL | O_NOFOLLOW``) in the folder ``dfd`` and renames it over
    ``name`` (replacing the entry itself, whatever it is, never writing through it)."""
    tmp = f"{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666, dir_fd=dfd)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(value, f, sort_keys=True, separators=(",", ":"))
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        unlink_at(dfd, tmp)


def read_json_at(dfd: int, name: str) -> Any | None:
    """Parsed JSON of the regular file ``name`` in the folder ``dfd``; None if it is missing, not a regular
    file (never opened blocking), larger than :data:`MAX_JSON_BYTES` or not valid JSON."""
    try:
        fd = open_file(dfd, name, os.O_RDONLY, name)
    except (FileNotFoundError, UnsafeCacheEntry):
        return None
    with os.fdopen(fd, "rb") as f:
        if os.fstat(f.fileno()).st_size > MAX_JSON_BYTES:
            return None
        blob = f.read(MAX_JSON_BYTES + 1)
    try:
        return json.loads(blob)
    except (ValueError, UnicodeDecodeError):
        return None
