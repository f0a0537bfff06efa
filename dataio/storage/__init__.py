"""Ranged reads and atomic writes: ``os.pread`` for POSIX paths, obstore for ``s3://`` (when installed), fsspec
for every other URL protocol."""

from __future__ import annotations

import os
from typing import Any

from dataio.storage.base import (
    StorageError,
    StorageNotFoundError,
    StoragePermissionError,
    Store,
    UnsafeFileError,
    UnsafePathError,
)
from dataio.storage.fsspec_store import FsspecStore
from dataio.storage.local import LocalStore
from dataio.storage.obstore_store import ObstoreStore
from dataio.storage.reader import RangeReader
from dataio.storage.retry import RetryPolicy, is_transient
from dataio.storage.s3_client import choose_client

__all__ = [
    "FsspecStore",
    "LocalStore",
    "ObstoreStore",
    "RangeReader",
    "RetryPolicy",
    "StorageError",
    "StorageNotFoundError",
    "StoragePermissionError",
    "Store",
    "UnsafeFileError",
    "UnsafePathError",
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
    CPFS, Lustre, NFS included); for ``s3://`` an :class:`ObstoreStore` when obstore is installed; else an fsspec
    store (s3:// without obstore, oss://, hdfs://, …). Remote stores retry per ``retry``.

    ``storage_options["client"]`` chooses the ``s3://`` client: ``"auto"`` (default), ``"obstore"`` or
    ``"fsspec"`` (s3fs); see :mod:`dataio.storage.s3_client`. The chosen store's ``client`` and
    ``client_reason`` attributes say which serves and why.
    """
    if is_url(location):
        url = os.fspath(location)
        options = dict(storage_options or {})
        client, reason = choose_client(url.partition("://")[0], options)
        options.pop("client", None)
        if client == "obstore":
            return ObstoreStore(url, options, retry=retry, client_reason=reason)
        return FsspecStore(url, options, retry=retry, client_reason=reason)
    if storage_options:
        raise ValueError("storage_options apply to URLs only, not to the local path " + os.fspath(location))
    return LocalStore(location)
