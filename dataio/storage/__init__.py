"""Ranged reads and atomic writes: ``os.pread`` for POSIX paths, fsspec for every URL protocol."""

from __future__ import annotations

import os
from typing import Any

from dataio.storage.base import StorageError, StorageNotFoundError, StoragePermissionError, Store, UnsafeFileError
from dataio.storage.fsspec_store import FsspecStore
from dataio.storage.local import LocalStore
from dataio.storage.reader import RangeReader
from dataio.storage.retry import RetryPolicy, is_transient

__all__ = [
    "FsspecStore",
    "LocalStore",
    "RangeReader",
    "RetryPolicy",
    "StorageError",
    "StorageNotFoundError",
    "StoragePermissionError",
    "Store",
    "UnsafeFileError",
    "is_transient",
    "is_url",
    "open_store",
]


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a URL other than ``file://`` (those are served by fsspec)."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


def open_store(
    location: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    *,
    retry: RetryPolicy | None = None,
) -> Store:
    """Returns the store serving ``location``: a :class:`LocalStore` for paths and ``file://`` (POSIX mounts of
    CPFS, Lustre, NFS included), else an fsspec store (s3://, oss://, hdfs://, …) retrying per ``retry``."""
    if is_url(location):
        return FsspecStore(os.fspath(location), storage_options, retry=retry)
    if storage_options:
        raise ValueError("storage_options apply to URLs only, not to the local path " + os.fspath(location))
    return LocalStore(location)
