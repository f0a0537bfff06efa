"""The obstore backend of :class:`~dataio.storage.obstore_store.ObstoreStore`: ``s3://`` through the Rust
``object_store`` crate, ranged GETs with little CPU and without the GIL.

s3fs spends 1.4–3.2 ms of CPU per ranged GET in Python (botocore's request machinery on an asyncio loop);
obstore signs, sends and parses in Rust on its own tokio threads and releases the GIL while it waits.
:meth:`ObstoreStore.read_ranges` hands a whole batch of ranges of one object to obstore's ``get_ranges``, which
runs them concurrently inside Rust: one Python call for up to :attr:`batch_reads` GETs.

One retry layer: obstore's own retries are off (``max_retries=0``) and every request goes through dataio's
:class:`~dataio.storage.retry.RetryPolicy`. obstore reports failures as its own exception types with a status or
an error kind in the text; :func:`translate_error` turns them into the exceptions the policy classifies (a
server's 5xx/429 → transient, 4xx → permanent, connect/reset/timeout/body errors → :class:`ConnectionError`).
Messages keep obstore's first line (method, URL, status), never its debug dump, and never a credential.

It serves one process: :class:`~dataio.storage.obstore_store.ObstoreStore` makes it, and makes an s3fs store
instead in a process forked after obstore's runtime started (:func:`runtime_started_elsewhere`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

from dataio.storage.base import StorageError, Store, storage_error, store_path
from dataio.storage.deadline import slow_body
from dataio.storage.fsspec_store import UPLOAD_FIX
from dataio.storage.obstore_errors import translate_error
from dataio.storage.redirects import obstore_guard
from dataio.storage.retry import RETRY_FIX, RetryPolicy, call_with_retry
from dataio.storage.s3_client import obstore_settings
from dataio.storage.secrets import scrub_chain, secrets_of, without_userinfo
from dataio.storage.staging import staged_file
from dataio.storage.streams import RangeStream

__all__ = ["ObstoreBackend", "runtime_started_elsewhere"]

_log = logging.getLogger(__name__)
_STREAM_CHUNK = 4 << 20
#: Objects up to this size are uploaded in one PUT (atomic, retried whole); larger ones in parts.
_SINGLE_PUT_MAX = 4 << 30
_SECRET_KEYS = ("secret_access_key", "session_token", "access_key_id")


#: The process whose obstore runtime is running (None: none yet). A forked child inherits the parent's value.
_runtime_pid: int | None = None


def runtime_started_elsewhere() -> bool:
    """Whether this process was forked from one that had started obstore's runtime (tokio does not survive
    ``fork()``: a request from here would hang)."""
    return _runtime_pid is not None and _runtime_pid != os.getpid()


def _obstore() -> Any:
    try:
        import obstore
    except ImportError as exc:  # choose_client checks first; this is for direct construction
        raise ImportError(f"ObstoreStore needs the 'obstore' package: pip install 'dataio[s3]' ({exc})") from exc
    return obstore


class ObstoreBackend(Store):
    """An ``s3://bucket/prefix`` on S3 or an S3-compatible endpoint (SeaweedFS, MinIO, OSS's S3 endpoint), served
    by obstore in this process (see :class:`~dataio.storage.obstore_store.ObstoreStore` for the public store).

    Args:
        url: ``s3://bucket/prefix`` (``s3a://`` too).
        storage_options: s3fs-style options (see :mod:`dataio.storage.s3_client`); never logged.
        retry: Backoff policy for transient failures (default :class:`RetryPolicy`).
    """

    default_threads = 32
    batch_reads = 10  # obstore's get_ranges runs up to 10 requests at once
    client = "obstore"

    def __init__(
        self, url: str, storage_options: dict[str, Any] | None = None, *, retry: RetryPolicy | None = None
    ) -> None:
        protocol, _, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if protocol not in ("s3", "s3a") or not bucket:
            raise ValueError(f"not an s3:// URL with a bucket: {url!r}")
        self._url = url.rstrip("/")
        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._options = {k: v for k, v in dict(storage_options or {}).items() if k != "client"}
        self._settings = obstore_settings(self._options)
        self._secrets = tuple(
            sorted(
                {
                    *secrets_of(self._options),
                    *(str(self._settings.config[k]) for k in _SECRET_KEYS if self._settings.config.get(k)),
                },
                key=len,
                reverse=True,
            )
        )
        endpoint = self._settings.config.get("endpoint")
        self._endpoint = without_userinfo(str(endpoint)) if endpoint else None
        self._retry = retry or RetryPolicy()
        self.retries = 0  # transient failures retried so far (approximate under threads)
        self._client: Any = None
        self._bulk: Any = None
        #: Deadline of one request of the ranged-read client: a 4 MiB range at the policy's min_throughput, and
        #: never more than the budget (a trickling server is cut off; see RetryPolicy).
        self._deadline = min(self._retry.request_deadline(_STREAM_CHUNK), self._retry.budget)
        self._client = self._connect(self._deadline)

    def _connect(self, timeout: float | None = None) -> Any:
        """An obstore client; ``timeout``: the deadline of each of its requests (default: obstore's setting)."""
        global _runtime_pid
        _obstore()
        from obstore.store import S3Store

        _runtime_pid = os.getpid()
        options = {**self._settings.client_options, **obstore_guard(self._endpoint)}
        if timeout is not None:
            options["timeout"] = f"{timeout:.3f}s"
        try:
            return S3Store(
                self._bucket,
                config=dict(self._settings.config),
                client_options=options,
                retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=1)},
            )
        except Exception as exc:
            err = translate_error(exc, self._secrets)
            failure = storage_error(OSError(f"cannot configure the S3 client: {err}"), self._url)
            raise scrub_chain(failure, self._secrets) from None

    @property
    def _store(self) -> Any:
        """This process's obstore client for ranged reads, sizes, listings and deletes (made again after a fork):
        each request has the policy's deadline (see :attr:`_deadline`)."""
        client = self._client
        if client is None:
            client = self._client = self._connect(self._deadline)
        return client

    @property
    def _bulk_store(self) -> Any:
        """The client for whole-object reads and uploads (sizes unknown beforehand, or large): obstore's own
        per-request ``timeout`` (600 s unless configured), not the ranged reads' deadline."""
        client = self._bulk
        if client is None:
            client = self._bulk = self._connect()
        return client

    @property
    def root(self) -> str:
        return self._url

    def url(self, path: str) -> str:
        return f"{self._url}/{path}"

    def _key(self, path: str) -> str:
        path = store_path(path)
        return f"{self._prefix}/{path}" if self._prefix else path

    def _call(self, fn: Any, where: str | Callable[[], str], fix: str = RETRY_FIX, *, nbytes: int | None = None) -> Any:
        """Runs ``fn`` under the retry policy; ``where`` (or the string it returns) names the object and range.

        ``nbytes``: the bytes a ranged read asks for; its timeout then says how slow the answer was."""
        secrets, endpoint = self._secrets, self._endpoint
        describe = where if callable(where) else (lambda: where)

        def attempt() -> Any:
            start = time.monotonic()
            try:
                return fn()
            except Exception as exc:
                err = translate_error(exc, secrets, endpoint)
                if nbytes is not None and isinstance(err, TimeoutError):
                    err = slow_body(describe(), nbytes, None, time.monotonic() - start, self._deadline)
                raise err from None

        def count(_: BaseException) -> None:
            self.retries += 1

        try:
            return call_with_retry(attempt, self._retry, describe, on_retry=count, fix=fix)
        except StorageError as exc:
            raise scrub_chain(exc, secrets) from exc.__cause__
        except Exception as exc:
            raise scrub_chain(storage_error(exc, describe()), secrets) from None

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.read_ranges(path, [(offset, length)])[0]

    def read_ranges(self, path: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Reads several ranges of one object in one call; obstore runs the GETs concurrently."""
        obstore = _obstore()
        key = self._key(path)
        wanted = [(int(o), int(n)) for o, n in ranges]
        if any(o < 0 or n < 0 for o, n in wanted):
            raise ValueError(f"{self.url(path)}: negative offset or length in {wanted}")
        live = [(o, n) for o, n in wanted if n > 0]

        def where() -> str:
            if len(live) == 1:
                return f"{self.url(path)} [{live[0][0]}, +{live[0][1]})"
            return f"{self.url(path)} ({len(live)} ranges from {min(o for o, _ in live)})"

        got: list[Any] = []
        if len(live) == 1:
            start, length = live[0]
            got = [
                self._call(
                    lambda: obstore.get_range(self._store, key, start=start, length=length), where, nbytes=length
                )
            ]
        elif live:
            starts, lengths = [o for o, _ in live], [n for _, n in live]
            got = self._call(
                lambda: obstore.get_ranges(self._store, key, starts=starts, lengths=lengths, coalesce=0),
                where,
                nbytes=sum(lengths),
            )
        out, pieces = [], iter(got)
        for offset, length in wanted:
            data = bytes(next(pieces)) if length else b""
            if len(data) != length:
                raise storage_error(EOFError(f"got {len(data)} bytes"), f"{self.url(path)} [{offset}, +{length})")
            out.append(data)
        return out

    def read(self, path: str) -> bytes:
        obstore = _obstore()
        key = self._key(path)
        return self._call(lambda: bytes(obstore.get(self._bulk_store, key).bytes()), self.url(path))

    def read_limited(self, path: str, limit: int) -> bytes | None:
        """Asks for the size first: an object over ``limit`` is never downloaded. A whole-object read: through the
        bulk client (obstore's own timeout, see :attr:`_bulk_store`)."""
        size = self.size(path)
        if size > limit:
            return None
        if size == 0:
            return b""
        obstore, key = _obstore(), self._key(path)
        data = self._call(lambda: bytes(obstore.get_range(self._bulk_store, key, start=0, length=size)), self.url(path))
        if len(data) != size:
            raise storage_error(EOFError(f"got {len(data)} of {size} bytes"), self.url(path))
        return data

    def size(self, path: str) -> int:
        obstore = _obstore()
        key = self._key(path)
        return int(self._call(lambda: obstore.head(self._store, key)["size"], f"{self.url(path)} (size)"))

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
        except FileNotFoundError:
            return False
        return True

    def delete(self, path: str) -> None:
        obstore = _obstore()
        key = self._key(path)
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda: obstore.delete(self._store, key), f"{self.url(path)} (delete)")

    def _listing(self, prefix: str) -> Any:
        obstore = _obstore()
        base = self._key(prefix) + "/" if prefix else (self._prefix + "/" if self._prefix else "")
        where = f"{self.url(prefix) if prefix else self._url} (listing)"
        return self._call(lambda: obstore.list_with_delimiter(self._store, base or None), where)

    def list(self, prefix: str) -> list[str]:
        names = sorted(meta["path"].rsplit("/", 1)[-1] for meta in self._listing(prefix)["objects"])
        return [f"{prefix}/{n}" if prefix else n for n in names]

    def list_folders(self, prefix: str) -> list[str]:
        names = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self._listing(prefix)["common_prefixes"])
        return [f"{prefix}/{n}" if prefix else n for n in names]

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        obstore = _obstore()
        key = self._key(path)
        with staged_file(path) as tmp:
            with open(tmp, "wb") as f:
                yield f
            nbytes = os.path.getsize(tmp)
            self._call(
                lambda: obstore.put(self._bulk_store, key, Path(tmp), use_multipart=nbytes > _SINGLE_PUT_MAX),
                f"{self.url(path)} (upload of {nbytes} bytes)",
                fix=UPLOAD_FIX,
            )

    def open_stream(self, path: str) -> BinaryIO:
        """Sequential reads as ranged reads of ``_STREAM_CHUNK`` bytes, each retried by the policy."""
        return io.BufferedReader(RangeStream(self, path, self.size(path)), _STREAM_CHUNK)  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"ObstoreBackend({self._url!r})"
