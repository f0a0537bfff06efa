"""``s3://`` through obstore (the Rust ``object_store`` crate): ranged GETs with little CPU and without the GIL.

s3fs spends 1.4–3.2 ms of CPU per ranged GET in Python (botocore's request machinery on an asyncio loop);
obstore signs, sends and parses in Rust on its own tokio threads and releases the GIL while it waits.
:meth:`ObstoreStore.read_ranges` hands a whole batch of ranges of one object to obstore's ``get_ranges``, which
runs them concurrently inside Rust: one Python call for up to :attr:`batch_reads` GETs.

One retry layer: obstore's own retries are off (``max_retries=0``) and every request goes through dataio's
:class:`~dataio.storage.retry.RetryPolicy`; :func:`translate_error` turns obstore's exceptions into the ones the
policy classifies (:mod:`dataio.storage.obstore_errors`). Messages keep obstore's first line (method, URL,
status), never its debug dump, and never a credential.

One backend per process: obstore runs every request on one tokio runtime per process, and tokio does not survive
``fork()`` (in a child forked after the parent used obstore, every request would hang). So the store chooses its
backend when it is made and again, once, in a forked child (on first use: no IO in a fork hook): obstore
(:class:`~dataio.storage.obstore_backend.ObstoreBackend`), or in a child forked after obstore ran, s3fs with the
same options and retry policy (a warning says so once per process). Every method then goes to that backend
without another check. Spawned or forkserver workers (torch's ``multiprocessing_context="spawn"`` or
``"forkserver"``) get a pickled copy, which chooses obstore again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

from dataio._forksafe import on_fork_child
from dataio.storage.base import Store
from dataio.storage.obstore_backend import ObstoreBackend, runtime_started_elsewhere
from dataio.storage.obstore_errors import ServerError, translate_error
from dataio.storage.retry import RetryPolicy

__all__ = ["ObstoreStore", "ServerError", "translate_error"]

_log = logging.getLogger(__name__)
_warned_pid: int | None = None
#: :attr:`ObstoreStore.client_reason` in a process forked after obstore's runtime started.
FORKED_REASON = "forked after obstore's runtime started (tokio is not fork-safe)"


def _warn_fallback_once() -> None:
    global _warned_pid
    if _warned_pid != os.getpid():
        _warned_pid = os.getpid()
        _log.warning(
            "this process was forked after obstore started its tokio runtime, which does not survive fork(): "
            "s3:// reads here go through s3fs instead; use multiprocessing_context='spawn' or "
            "'forkserver' to keep obstore in them."
        )


class ObstoreStore(Store):
    """An ``s3://bucket/prefix`` on S3 or an S3-compatible endpoint (SeaweedFS, MinIO, OSS's S3 endpoint).

    Args:
        url: ``s3://bucket/prefix`` (``s3a://`` too).
        storage_options: s3fs-style options (see :mod:`dataio.storage.s3_client`); never logged.
        retry: Backoff policy for transient failures (default :class:`RetryPolicy`).
        client_reason: Why obstore serves this URL (:func:`~dataio.storage.s3_client.choose_client` says it).
    """

    default_threads = 32

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        client_reason: str = "obstore is installed",
    ) -> None:
        protocol, _, rest = url.partition("://")
        if protocol not in ("s3", "s3a") or not rest.partition("/")[0]:
            raise ValueError(f"not an s3:// URL with a bucket: {url!r}")
        self._url = url.rstrip("/")
        self._options = {k: v for k, v in dict(storage_options or {}).items() if k != "client"}
        self._retry = retry or RetryPolicy()
        self._reason = client_reason
        self._lock = threading.Lock()
        self._forked = runtime_started_elsewhere()
        self._impl: Store | None = self._make()
        on_fork_child(self)

    def _make(self) -> Store:
        if not self._forked:
            return ObstoreBackend(self._url, self._options, retry=self._retry)
        from dataio.storage.fsspec_store import FsspecStore

        _warn_fallback_once()
        return FsspecStore(self._url, self._options, retry=self._retry, client_reason=FORKED_REASON)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._forked = runtime_started_elsewhere()
        self._impl = None  # chosen again on first use (no IO in a fork hook)

    @property
    def _backend(self) -> Store:
        impl = self._impl
        if impl is None:
            with self._lock:
                if self._impl is None:
                    self._impl = self._make()
                impl = self._impl
        return impl

    @property
    def client(self) -> str:  # type: ignore[override]
        """``"obstore"``, or ``"fsspec"`` in a process forked after obstore ran (see the module docstring)."""
        return "fsspec" if self._forked else "obstore"

    @property
    def client_reason(self) -> str:
        """Why :attr:`client` serves this store."""
        return FORKED_REASON if self._forked else self._reason

    @property
    def batch_reads(self) -> int:  # type: ignore[override]
        return self._backend.batch_reads

    @property
    def retries(self) -> int:
        """Transient failures retried so far by this process's backend (approximate under threads)."""
        return int(getattr(self._backend, "retries", 0))

    @property
    def root(self) -> str:
        return self._url

    def url(self, path: str) -> str:
        return f"{self._url}/{path}"

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self._backend.read_range(path, offset, length)

    def read_ranges(self, path: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return self._backend.read_ranges(path, ranges)

    def read(self, path: str) -> bytes:
        return self._backend.read(path)

    def read_limited(self, path: str, limit: int) -> bytes | None:
        return self._backend.read_limited(path, limit)

    def size(self, path: str) -> int:
        return self._backend.size(path)

    def exists(self, path: str) -> bool:
        return self._backend.exists(path)

    def delete(self, path: str) -> None:
        self._backend.delete(path)

    def list(self, prefix: str) -> list[str]:
        return self._backend.list(prefix)

    def list_folders(self, prefix: str) -> list[str]:
        return self._backend.list_folders(prefix)

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        with self._backend.open_atomic(path) as f:
            yield f

    def open_stream(self, path: str) -> BinaryIO:
        return self._backend.open_stream(path)

    def close(self) -> None:
        impl, self._impl = self._impl, None
        if impl is not None:
            impl.close()

    def __repr__(self) -> str:
        return f"ObstoreStore({self._url!r})"

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self._url, "storage_options": self._options, "retry": self._retry, "reason": self._reason}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["url"], state["storage_options"], retry=state["retry"], client_reason=state["reason"]
        )
