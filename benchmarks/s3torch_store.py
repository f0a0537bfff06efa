"""AWS's s3torchconnector (the CRT S3 client) behind dataio's small Store interface, for the IO benchmark only.

Each ``read_range`` is one ranged GET through s3torchconnector's range-based reader (``RangedS3Reader`` with its
buffer off), so RangeReader drives it exactly as it drives s3fs and obstore: same request order, coalescing and
reads in flight; only the client differs. Read-only: the benchmark uploads with s3fs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from dataio.storage import Store

__all__ = ["S3TorchStore"]


class S3TorchStore(Store):
    """``s3://bucket/prefix`` read through s3torchconnector. The CRT client reads its credentials from the
    environment: :meth:`__init__` sets ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` from ``key``/``secret``."""

    default_threads = 32
    client = "s3torchconnector"

    def __init__(self, url: str, endpoint: str, key: str, secret: str, region: str = "us-east-1") -> None:
        from s3torchconnector import S3ReaderConstructor
        from s3torchconnector._s3client import S3Client, S3ClientConfig

        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = key, secret
        self._url = url.rstrip("/")
        self._bucket, _, self._prefix = url.partition("://")[2].partition("/")
        self._client = S3Client(region, endpoint=endpoint, s3client_config=S3ClientConfig(force_path_style=True))
        self._reader = S3ReaderConstructor.range_based(buffer_size=0)
        self._info: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        return self._url

    def url(self, path: str) -> str:
        return f"{self._url}/{path}"

    def _key(self, path: str) -> str:
        return f"{self._prefix}/{path}" if self._prefix else path

    def _object_info(self, key: str) -> Any:
        with self._lock:
            info = self._info.get(key)
        if info is None:
            info = self._client.head_object(self._bucket, key)
            with self._lock:
                self._info[key] = info
        return info

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        key = self._key(path)
        reader = self._client.get_object(
            self._bucket, key, object_info=self._object_info(key), reader_constructor=self._reader
        )
        reader.seek(offset)
        data = reader.read(length)
        if len(data) != length:
            raise OSError(f"{self.url(path)} [{offset}, +{length}): got {len(data)} bytes")
        return data

    def read(self, path: str) -> bytes:
        return self.read_range(path, 0, self.size(path))

    def size(self, path: str) -> int:
        return int(self._object_info(self._key(path)).size)

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
        except Exception:
            return False
        return True

    def delete(self, path: str) -> None:
        raise NotImplementedError("benchmark store: read-only")

    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError("benchmark store: read-only")

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        raise NotImplementedError("benchmark store: read-only")
        yield  # pragma: no cover
