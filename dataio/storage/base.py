"""The storage interface every backend implements: byte ranges of named objects under one root.

Storage knows paths and byte ranges, never samples. Paths are relative POSIX paths under the store's
root; every write is atomic (a reader sees the old object, or the complete new one, never a torn one).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import BinaryIO

from dataio.errors import DataioError, ManifestError
from dataio.format.manifest import check_relative_path

__all__ = [
    "StorageError",
    "StorageNotFoundError",
    "StoragePermissionError",
    "Store",
    "UnsafeFileError",
    "UnsafePathError",
    "storage_error",
    "store_path",
]


class StorageError(DataioError, OSError):
    """A read or write that failed; the message names the URL, the byte range and the cause."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The object does not exist (HTTP 404, ENOENT): permanent, never retried."""


class StoragePermissionError(StorageError, PermissionError):
    """Access denied or bad credentials (HTTP 403): permanent, never retried."""


class UnsafeFileError(StoragePermissionError):
    """A path inside a dataset that dataio refuses to open: a symbolic link (it may point outside the dataset's
    root), a FIFO, socket or device file (reading one hangs or never ends). Permanent, never retried."""


class UnsafePathError(StorageError, ValueError):
    """A path a store refuses to form: absolute, a URL, ``..``, a backslash, empty (it could leave the store's root).
    Permanent, never retried."""


def store_path(path: str) -> str:
    """``path`` if it is a safe relative POSIX path inside a store's root, else :class:`UnsafePathError` naming it
    (the same rule as the manifest's paths: :func:`dataio.format.manifest.check_relative_path`)."""
    try:
        return check_relative_path(path, "path")
    except ManifestError as exc:
        raise UnsafePathError(str(exc)) from None


def storage_error(exc: BaseException, where: str) -> StorageError:
    """Wraps ``exc`` in the :class:`StorageError` subclass of its kind, with ``where`` (URL and range) in front."""
    if isinstance(exc, FileNotFoundError):
        cls: type[StorageError] = StorageNotFoundError
    elif isinstance(exc, PermissionError):
        cls = StoragePermissionError
    else:
        cls = StorageError
    err = cls(f"{where}: {exc}")
    err.__cause__ = exc
    return err


class Store(ABC):
    """A root directory or URL prefix holding a dataset's objects."""

    #: Whether other processes see what this store writes (False for per-process stores like memory://).
    shared_between_processes: bool = True
    #: Reads a :class:`~dataio.storage.reader.RangeReader` keeps in flight by default on this backend.
    default_threads: int = 8
    #: Ranges of one object :meth:`read_ranges` fetches concurrently in one call (1: one at a time).
    batch_reads: int = 1
    #: The client library serving this store (reported in stats and by ``dataio info``).
    client: str = "posix"

    @property
    @abstractmethod
    def root(self) -> str:
        """The root as the user gave it (path or URL, without credentials)."""

    @abstractmethod
    def url(self, path: str) -> str:
        """Full path or URL of ``path`` (for messages and logs)."""

    @abstractmethod
    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Reads exactly ``length`` bytes at ``offset``; raises :class:`StorageError` if fewer exist."""

    def read_ranges(self, path: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Reads several ``(offset, length)`` ranges of one object; stores with :attr:`batch_reads` > 1 fetch
        them concurrently in one call."""
        return [self.read_range(path, offset, length) for offset, length in ranges]

    @abstractmethod
    def read(self, path: str) -> bytes:
        """Reads a whole object."""

    def read_limited(self, path: str, limit: int) -> bytes | None:
        """Reads a whole object, or returns ``None`` if it holds more than ``limit`` bytes.

        Stores that know an object's size cheaply (POSIX: ``fstat``) decide before reading; the default reads
        first (a remote size costs a request, and some servers answer it in another dialect).
        """
        data = self.read(path)
        return data if len(data) <= limit else None

    @abstractmethod
    def size(self, path: str) -> int:
        """Size of an object in bytes; raises ``FileNotFoundError`` if it does not exist."""

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether an object exists."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Deletes an object (missing objects are ignored)."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Relative paths of the objects directly below the directory ``prefix`` (empty if none)."""

    def forget(self, path: str) -> None:
        """Drops any handle of ``path`` this store keeps open (a writer is about to replace the file); the next
        read opens it again. Stores that keep none do nothing."""

    def list_folders(self, prefix: str) -> list[str]:
        """Relative paths of the folders (sub-prefixes) directly below ``prefix``; stores that cannot list them
        return an empty list."""
        return []

    @abstractmethod
    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        """Opens ``path`` for writing; the object appears only when the block exits without error."""

    def write_bytes(self, path: str, data: bytes) -> None:
        """Atomically writes a whole object."""
        with self.open_atomic(path) as f:
            f.write(data)

    def open_stream(self, path: str) -> BinaryIO:
        """Opens an object for sequential reading."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases open descriptors and connections. Idempotent."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
