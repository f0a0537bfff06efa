"""POSIX storage: local disks and mounted parallel filesystems (CPFS, Lustre, NFS).

Reads use ``os.pread`` on one cached descriptor per file: no seek state shared between threads, and the
GIL is released while the kernel copies. Writes go to a temporary file beside the target and are renamed
into place, so no reader ever sees a half-written file.

Only regular files are opened, and no path below the root may pass through a symbolic link: every component is
opened with ``O_NOFOLLOW`` relative to its parent's descriptor (no window for a swap between check and open),
the file itself also with ``O_NONBLOCK`` (opening a FIFO does not wait for a writer), and ``fstat`` must say
"regular file" before a byte is read. A symlink (it may point outside the dataset), a FIFO (it hangs), a
device (``/dev/zero`` never ends) or a socket raises :class:`UnsafeFileError` naming the path. The root itself
may be a symlink: it is what the user named.

A forked child keeps the inherited descriptors (``pread`` has no shared file position, so parent and child may
both read through them) with a fresh lock; a pickled copy opens its own.

``close()`` is final: every read after it (``read_range``, ``read``, ``read_limited``, ``size``, ``exists``,
``open_stream``) raises :class:`~dataio.errors.ClosedError` naming the store, and no file is opened again. The
reads in flight finish first: a :class:`~dataio.gate.ReadGate` counts them and the descriptors are closed only
when the last has left (never under a ``pread``, so no read meets a closed or reused descriptor number).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dataio._forksafe import on_fork_child
from dataio.gate import ReadGate
from dataio.storage.base import StorageError, Store, UnsafeFileError, storage_error, store_path

__all__ = ["LocalStore", "open_regular", "pread_full"]


def pread_full(fd: int, length: int, offset: int) -> bytes:
    """``os.pread`` until ``length`` bytes or the end of the file (network filesystems return short reads);
    the result is shorter than ``length`` only at the end of the file."""
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CHECK_SIZE_ABOVE = 1 << 24
#: Seconds ``close()`` waits for reads in flight; later, the last of them closes the descriptors.
_CLOSE_WAIT_S = 30.0
_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def _refuse_link(where: Path) -> UnsafeFileError:
    return UnsafeFileError(
        f"{where}: is a symbolic link; dataio opens no symlinks inside a dataset (one may point outside its root): "
        "replace it with the file or directory itself"
    )


def open_regular(root: Path, path: str) -> int:
    """Opens ``root/path`` read-only if it is a regular file reached without a symlink below ``root``.

    Raises:
        UnsafeFileError: a component is a symlink, or the file is a FIFO, socket or device.
        OSError: the usual (missing file, permission).
    """
    parts = store_path(path).split("/")
    where = root
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            where = where / part
            try:
                sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(where):
                    raise _refuse_link(where) from None
                raise
            os.close(dfd)
            dfd = sub
        where = where / parts[-1]
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP or (exc.errno == errno.ENXIO and os.path.islink(where)):
                raise _refuse_link(where) from None
            if exc.errno == errno.ENXIO:  # a socket
                msg = f"{where}: is not a regular file (a socket); dataio reads regular files only"
                raise UnsafeFileError(msg) from None
            raise
    finally:
        os.close(dfd)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = _KINDS.get(stat.S_IFMT(mode), "a directory" if stat.S_ISDIR(mode) else "a special file")
        raise UnsafeFileError(f"{where}: is not a regular file ({kind}); dataio reads regular files only") from None
    os.set_blocking(fd, True)
    return fd


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


class LocalStore(Store):
    """A directory on a POSIX filesystem.

    Args:
        root: Directory path (``file://`` prefix allowed).
        fsync: Whether atomic writes are flushed to stable storage before the rename.
    """

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        text = os.fspath(root)
        self._root = text
        self._dir = Path(text.removeprefix("file://")).expanduser()
        self._fsync = fsync
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._gate = ReadGate(f"store {text}")
        self._finalizer = weakref.finalize(self, _close_all, self._fds)
        on_fork_child(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # a parent thread may have held it at the fork
        self._gate.after_fork_in_child()

    @property
    def root(self) -> str:
        return self._root

    def _path(self, path: str) -> Path:
        return self._dir / store_path(path)

    def url(self, path: str) -> str:
        return str(self._path(path))

    def _fd(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is None:
                fd = open_regular(self._dir, path)
                self._fds[path] = fd
            return fd

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with self._gate.reading():
            return self._read_range(path, offset, length)

    def _read_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            fd = self._fd(path)
            if length > _CHECK_SIZE_ABOVE:  # a length from a hostile manifest must not become one huge buffer
                end = os.fstat(fd).st_size
                if offset + length > end:
                    raise StorageError(
                        f"{self.url(path)} [{offset}, +{length}): beyond the end of the file ({end} bytes); "
                        "the manifest or index does not describe this file"
                    )
            data = pread_full(fd, length, offset)
        except StorageError:
            raise
        except OSError as exc:
            raise storage_error(exc, f"{self.url(path)} [{offset}, +{length})") from exc
        if len(data) != length:
            raise StorageError(
                f"{self.url(path)} [{offset}, +{length}): got {len(data)} bytes, the file ends at {offset + len(data)}"
            )
        return data

    def read(self, path: str) -> bytes:
        with self.open_stream(path) as f:
            return f.read()

    def read_limited(self, path: str, limit: int) -> bytes | None:
        with self._gate.reading(), self.open_stream(path) as f:
            if os.fstat(f.fileno()).st_size > limit:
                return None
            data = f.read(limit + 1)  # the file may have grown since the fstat
        return data if len(data) <= limit else None

    def size(self, path: str) -> int:
        self._gate.check()
        fd = open_regular(self._dir, path)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def exists(self, path: str) -> bool:
        self._gate.check()
        return self._path(path).exists()

    def delete(self, path: str) -> None:
        self.forget(path)
        with contextlib.suppress(FileNotFoundError):
            self._path(path).unlink()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self._dir
        if not base.is_dir():
            return []
        return sorted(f"{prefix}/{p.name}" if prefix else p.name for p in base.iterdir() if p.is_file())

    def list_folders(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self._dir
        if not base.is_dir():
            return []
        dirs = (p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink())
        return sorted(f"{prefix}/{name}" if prefix else name for name in dirs)

    def forget(self, path: str) -> None:
        """Closes the cached descriptor of ``path`` (a writer is about to replace the file); callers make sure no
        read of ``path`` is in flight."""
        with self._lock:
            fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with open(tmp, "wb") as f:
                yield f
                f.flush()
                if self._fsync:
                    os.fsync(f.fileno())
            self.forget(path)
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def open_stream(self, path: str) -> BinaryIO:
        """A file object of its own (its descriptor is the caller's to close); refused after :meth:`close`."""
        self._gate.check()
        return os.fdopen(open_regular(self._dir, path), "rb")

    def close(self) -> None:
        """Refuses reads from now on and closes the cached descriptors once the reads in flight have left
        (see the module docstring). Idempotent."""
        self._gate.close(self._release, _CLOSE_WAIT_S)

    def _release(self) -> None:
        with self._lock:
            _close_all(self._fds)

    def __getstate__(self) -> dict[str, object]:
        return {"root": self._root, "fsync": self._fsync}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["root"], fsync=bool(state["fsync"]))  # type: ignore[misc, arg-type]
