"""``fcntl.flock`` helpers: locks the kernel drops when their holder dies, so no lock is ever stale.

A flock belongs to an open file description: two ``open()`` calls conflict even inside one process, and
closing the descriptor (or dying) releases the lock. Lock files are never deleted while the cache is in use
(deleting a lock file that someone is about to lock would let two holders in); every helper that locks a
path re-checks after locking that the path still names the locked inode.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator

from dataio.cache.fds import REGISTRY
from dataio.cache.safedir import UnsafeCacheEntry, lstat_at, open_dir, open_file

__all__ = ["LockTimeout", "hold", "is_locked", "is_locked_at", "lock_fd", "open_locked", "try_lock_fd"]


class LockTimeout(TimeoutError):
    """A lock was not granted in time (or the wait was cancelled by a stop event)."""


def try_lock_fd(fd: int, exclusive: bool) -> bool:
    """Tries to lock ``fd`` without waiting; True if granted."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lock_fd(
    fd: int,
    exclusive: bool,
    *,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    what: str = "lock",
) -> float:
    """Waits for a lock on ``fd``, polling with backoff so a stop event or a timeout can end the wait.

    Returns:
        Seconds waited (0.0 if granted at once).

    Raises:
        LockTimeout: after ``timeout`` seconds, or when ``stop`` is set.
    """
    if try_lock_fd(fd, exclusive):
        return 0.0
    start = time.monotonic()
    delay = 0.0005
    while not try_lock_fd(fd, exclusive):
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise LockTimeout(f"{what}: not granted within {timeout:.1f} s")
        if stop is not None and stop.wait(delay):
            raise LockTimeout(f"{what}: wait cancelled (closing)")
        if stop is None:
            time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return time.monotonic() - start


def _same_file(fd: int, dfd: int, name: str) -> bool:
    st = lstat_at(dfd, name)
    if st is None:
        return False
    fst = os.fstat(fd)
    return fst.st_nlink > 0 and (st.st_ino, st.st_dev) == (fst.st_ino, fst.st_dev)


def _split(path: str, below: str | None) -> tuple[str, list[str], str]:
    """``(trusted root, folders below it, file name)`` of ``path``; the root defaults to its parent."""
    root = os.path.dirname(path) if below is None else below
    rel = os.path.relpath(path, root)
    if rel.startswith("..") or os.path.isabs(rel):
        raise ValueError(f"{path} is not below {root}")
    parts = rel.split(os.sep)
    return root, parts[:-1], parts[-1]


def open_locked(
    path: str,
    exclusive: bool,
    *,
    create: bool = False,
    blocking: bool = True,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    below: str | None = None,
) -> tuple[int, float] | None:
    """Opens ``path`` and locks it, re-checking that the path still names the locked file.

    ``path`` must be a regular file reached from ``below`` (the cache directory the user named, trusted as
    given; default: ``path``'s parent) without a symlink: every folder on the way is opened with
    ``O_NOFOLLOW`` relative to its parent, the file with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO never blocks) and
    ``fstat`` must say "regular file" (:mod:`dataio.cache.safedir`). Lock files are created (``create``) in
    the folder reached that way, never through a symlink.

    Args:
        path: File to lock.
        exclusive: ``LOCK_EX`` (True) or ``LOCK_SH``.
        create: Create the file if missing (lock files, opened read-write); otherwise read-only, and a missing
            file returns None.
        blocking: Wait for the lock (see :func:`lock_fd`); otherwise return None if it is held.

    Returns:
        ``(fd, seconds waited)`` with the lock held (the caller releases it with ``REGISTRY.close(fd)``), or
        None if the file does not exist (``create=False``) or the lock is held and ``blocking`` is False.

    Raises:
        UnsafeCacheEntry: a symlink on the way, or a symlink, FIFO, socket or device at ``path``.
    """
    root, folders, name = _split(path, below)
    flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
    waited = 0.0
    try:
        dfd = open_dir(root, folders, create=create)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        while True:
            try:
                fd = REGISTRY.open_with(lambda: open_file(dfd, name, flags, path))
            except FileNotFoundError:
                if create:
                    raise
                return None
            try:
                if blocking:
                    waited += lock_fd(fd, exclusive, timeout=timeout, stop=stop, what=path)
                elif not try_lock_fd(fd, exclusive):
                    REGISTRY.close(fd)
                    return None
                if _same_file(fd, dfd, name):
                    return fd, waited
            except BaseException:
                REGISTRY.close(fd)
                raise
            REGISTRY.close(fd)  # replaced or removed while we waited: lock what is there now (if anything)
    finally:
        os.close(dfd)


@contextlib.contextmanager
def hold(
    path: str,
    exclusive: bool = True,
    *,
    timeout: float | None = None,
    stop: threading.Event | None = None,
    below: str | None = None,
) -> Iterator[float]:
    """``with hold(lockfile):`` creates the lock file if needed and holds its lock; yields seconds waited."""
    got = open_locked(path, exclusive, create=True, timeout=timeout, stop=stop, below=below)
    if got is None:  # pragma: no cover - create=True never returns None
        raise LockTimeout(path)
    fd, waited = got
    try:
        yield waited
    finally:
        REGISTRY.close(fd)


def is_locked_at(dfd: int, name: str, exclusive: bool = True) -> bool | None:
    """Whether someone holds a lock on the file ``name`` of the folder ``dfd`` that conflicts with an
    ``exclusive`` (or shared) lock. Takes and drops the lock if it is free (a moment only).

    None if the file does not exist or is not a regular file: it is opened ``O_NONBLOCK | O_NOFOLLOW``, so a
    FIFO or symlink planted there never blocks the caller nor is followed; the caller skips it.
    """
    try:
        fd = REGISTRY.open_with(lambda: open_file(dfd, name, os.O_RDONLY, name))
    except (FileNotFoundError, UnsafeCacheEntry):
        return None
    try:
        return not try_lock_fd(fd, exclusive)
    finally:
        REGISTRY.close(fd)


def is_locked(path: str, exclusive: bool = True, *, below: str | None = None) -> bool | None:
    """:func:`is_locked_at` of ``path``, reached from ``below`` (default: its parent) without a symlink; None
    also if a folder on the way is missing or not a real folder."""
    root, folders, name = _split(path, below)
    try:
        dfd = open_dir(root, folders)
    except (FileNotFoundError, UnsafeCacheEntry):
        return None
    try:
        return is_locked_at(dfd, name, exclusive)
    finally:
        os.close(dfd)
