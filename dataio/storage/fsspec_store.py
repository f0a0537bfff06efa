"""Storage through fsspec: s3://, oss://, hdfs://, memory:// and any other registered protocol.

Sizes come from the manifest, so reading a dataset needs only ranged GETs: no listing, no HEAD per sample.
Writes are staged in a local temporary file and uploaded in one ``put_file`` call: object stores publish an
object only once its upload completes, so no reader sees a torn shard.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from dataio.format.manifest import check_relative_path
from dataio.storage.base import StorageError, Store

__all__ = ["EXTRAS", "FsspecStore"]

#: protocol -> (module fsspec needs, the dataio extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "oss": ("ossfs", "oss"),
    "hdfs": ("pyarrow", "hdfs"),
}


def _filesystem(protocol: str, storage_options: dict[str, Any]) -> Any:
    import fsspec

    try:
        return fsspec.filesystem(protocol, **storage_options)
    except ImportError as exc:
        module, extra = EXTRAS.get(protocol, (protocol, protocol))
        raise ImportError(
            f"reading {protocol}:// needs the {module!r} package: pip install 'dataio[{extra}]' ({exc})"
        ) from exc


class FsspecStore(Store):
    """A URL prefix on any fsspec filesystem.

    Args:
        url: ``protocol://bucket/prefix``.
        storage_options: Passed to the filesystem (endpoint, credentials, anon, …); never logged.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        protocol, _, rest = url.partition("://")
        if not rest:
            raise ValueError(f"not a URL: {url!r}")
        self._url = url.rstrip("/")
        self._protocol = protocol
        self._options = dict(storage_options or {})
        self._fs = _filesystem(protocol, self._options)
        self._prefix = self._fs._strip_protocol(self._url).rstrip("/")
        self.shared_between_processes = protocol not in ("memory",)

    @property
    def root(self) -> str:
        return self._url

    def _path(self, path: str) -> str:
        return f"{self._prefix}/{check_relative_path(path)}"

    def url(self, path: str) -> str:
        return f"{self._url}/{path}"

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        try:
            data = self._fs.cat_file(self._path(path), start=offset, end=offset + length)
        except Exception as exc:
            raise StorageError(f"{self.url(path)} [{offset}, +{length}): {exc!r}") from exc
        if len(data) != length:
            raise StorageError(f"{self.url(path)} [{offset}, +{length}): got {len(data)} bytes")
        return data

    def read(self, path: str) -> bytes:
        try:
            return self._fs.cat_file(self._path(path))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise StorageError(f"{self.url(path)}: {exc!r}") from exc

    def size(self, path: str) -> int:
        return int(self._fs.size(self._path(path)))

    def exists(self, path: str) -> bool:
        return bool(self._fs.exists(self._path(path)))

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._path(path))

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self._prefix
        try:
            entries = self._fs.ls(base, detail=True)
        except FileNotFoundError:
            return []
        names = sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")
        return [f"{prefix}/{n}" if prefix else n for n in names]

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        fd, tmp = tempfile.mkstemp(prefix="dataio-upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            self._fs.put_file(tmp, self._path(path))
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def open_stream(self, path: str) -> BinaryIO:
        return self._fs.open(self._path(path), "rb")

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self._url, "storage_options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["storage_options"])  # type: ignore[misc]
