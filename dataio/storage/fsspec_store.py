"""Storage through fsspec: s3://, oss://, hdfs://, memory:// and any other registered protocol.

Sizes come from the manifest, so reading a dataset needs only ranged GETs: no listing, no HEAD per sample.
Writes are staged in a local temporary file and uploaded in one ``put_file`` call: object stores publish an
object only once its upload completes, so no reader sees a torn shard.

Every request — ranged reads, uploads, sizes, listings and deletes — goes through one
:class:`~dataio.storage.retry.RetryPolicy`. The client libraries' own retry loops are switched off by default for
S3 (s3fs ``retries = 1``, botocore ``total_max_attempts=1``) so that a failing request is retried by one policy
with one budget, not by three nested ones (a retry storm). An upload is retried whole, from its staged file:
a cut-off upload never publishes an object, and a repeated one replaces it with the same bytes.

The filesystem client (its connection pool, and for async backends such as s3fs an event-loop thread) belongs
to the process that made it: a forked child (a torch DataLoader worker) drops the inherited one and connects
again on its first call; a pickled copy connects on unpickling.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from dataio._forksafe import on_fork_child
from dataio.storage.base import StorageError, Store, storage_error, store_path
from dataio.storage.deadline import timed_s3_range
from dataio.storage.log_filter import guard_client_logs, install_filter
from dataio.storage.redirects import RedirectRefused, guarded_session_class
from dataio.storage.retry import RETRY_FIX, RetryPolicy, call_with_retry, chain
from dataio.storage.secrets import scrub_chain, secrets_of
from dataio.storage.staging import staged_file
from dataio.storage.streams import RangeStream

__all__ = ["EXTRAS", "FsspecStore"]

#: protocol -> (module fsspec needs, the dataio extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "oss": ("ossfs", "oss"),
}

#: What to do when an upload fails for a whole retry budget: nothing was published, and pack resumes.
UPLOAD_FIX = (
    "nothing was published under that name; check the endpoint and the network, then run the same command "
    "again (pack reuses every shard already uploaded), or give it a longer retry budget (dataio pack "
    "--retry-budget SECONDS, pack(retry=RetryPolicy(budget=...)))"
)

_STREAM_CHUNK = 4 << 20


def _with_defaults(protocol: str, options: dict[str, Any]) -> dict[str, Any]:
    """Client options dataio sets unless the user did (S3): exactly one attempt per request in botocore (our
    RetryPolicy retries), bounded timeouts, and a connection pool as large as the reader's thread count."""
    if protocol not in ("s3", "s3a"):
        return options
    out = dict(options)
    config = dict(out.get("config_kwargs") or {})
    config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
    config.setdefault("connect_timeout", 10)
    config.setdefault("read_timeout", 30)
    config.setdefault("max_pool_connections", 128)
    if (guarded := guarded_session_class()) is not None:
        config.setdefault("http_session_cls", guarded)  # no redirect to another host (redirects.py)
    out["config_kwargs"] = config
    return out


def _filesystem(url: str, protocol: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and the path inside it; clear errors for missing or broken backends."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    except ImportError as exc:
        if protocol not in EXTRAS:
            raise ImportError(f"{protocol}:// needs an fsspec backend that is not installed: {exc}") from exc
        module, extra = EXTRAS[protocol]
        raise ImportError(
            f"reading {protocol}:// needs the {module!r} package: pip install 'dataio[{extra}]' ({exc})"
        ) from exc
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise ValueError(f"{url}: no fsspec filesystem is registered for {protocol}://") from exc
        raise
    except OSError as exc:
        hint = (
            " (HDFS goes through pyarrow's HadoopFileSystem, which needs a JVM and libhdfs: set JAVA_HOME, "
            "HADOOP_HOME and CLASSPATH=$(hadoop classpath --glob))"
            if protocol in ("hdfs", "viewfs")
            else ""
        )
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise storage_error(OSError(f"cannot open the {protocol} filesystem: {first_line}{hint}"), url) from exc
    return fs, path


class FsspecStore(Store):
    """A URL prefix on any fsspec filesystem.

    Args:
        url: ``protocol://bucket/prefix``.
        storage_options: Passed to the filesystem (endpoint, credentials, anon, …); never logged.
        retry: Backoff policy for transient failures (default :class:`RetryPolicy`).
        client_reason: Why fsspec serves this URL (:func:`~dataio.storage.s3_client.choose_client` says it).
    """

    default_threads = 32  # object stores answer each request after tens of milliseconds
    client = "fsspec"

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        client_reason: str = "fsspec serves this protocol",
    ) -> None:
        protocol, _, rest = url.partition("://")
        if not rest:
            raise ValueError(f"not a URL: {url!r}")
        self._url = url.rstrip("/")
        self.client_reason = client_reason
        self._protocol = protocol
        self._options = dict(storage_options or {})
        self._retry = retry or RetryPolicy()
        self._secrets = secrets_of(self._options)
        self._logs_guarded = False  # set after the first request (the client's lazily imported loggers exist)
        guard_client_logs(self, self._secrets)
        self.retries = 0  # transient failures retried so far (approximate under threads)
        try:
            self._client, prefix = self._connect()
        except Exception as exc:
            raise scrub_chain(exc, self._secrets) from exc.__cause__
        self._prefix = prefix.rstrip("/")
        self.shared_between_processes = protocol not in ("memory",)
        on_fork_child(self)

    def _connect(self) -> tuple[Any, str]:
        fs, prefix = _filesystem(self._url, self._protocol, _with_defaults(self._protocol, self._options))
        if self._protocol in ("s3", "s3a") and "retries" not in self._options:
            fs.retries = 1  # s3fs's own retry loop (a class attribute, not a constructor argument): off
        return fs, prefix

    @property
    def _fs(self) -> Any:
        """This process's filesystem client (connected again after a fork)."""
        fs = self._client
        if fs is None:
            fs = self._client = self._connect()[0]
        return fs

    def _after_fork_in_child(self) -> None:
        self._client = None  # the parent's client: its loop thread and sockets are not ours

    @property
    def root(self) -> str:
        return self._url

    def _path(self, path: str) -> str:
        return f"{self._prefix}/{store_path(path)}"

    def url(self, path: str) -> str:
        return f"{self._url}/{path}"

    def _call(self, fn: Any, where: str, fix: str = RETRY_FIX) -> Any:
        def count(_: BaseException) -> None:
            self.retries += 1

        try:
            return call_with_retry(fn, self._retry, lambda: where, on_retry=count, fix=fix)
        except Exception as exc:
            if isinstance(exc, StorageError):
                raise scrub_chain(exc, self._secrets) from exc.__cause__
            refused = next((e for e in chain(exc) if isinstance(e, RedirectRefused)), None)
            raise scrub_chain(storage_error(refused or exc, where), self._secrets) from exc
        finally:
            if not self._logs_guarded:
                self._guard_logs_once()

    def _guard_logs_once(self) -> None:
        if not self._logs_guarded:
            self._logs_guarded = True
            install_filter()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        where = f"{self.url(path)} [{offset}, +{length})"
        if self._protocol in ("s3", "s3a"):  # the body read under the policy's deadline (see deadline.py)
            started = time.monotonic()

            def attempt() -> bytes:
                limit = self._retry.attempt_limit(length, time.monotonic() - started)
                return timed_s3_range(self._fs, self._path(path), offset, length, limit, where)

            data = self._call(attempt, where)
        else:
            data = self._call(lambda: self._fs.cat_file(self._path(path), start=offset, end=offset + length), where)
        if len(data) == length + 1 and self._protocol == "oss":
            data = data[:length]  # ossfs hands `end` to oss2 as an inclusive bound: one byte too many
        if len(data) != length:
            raise storage_error(EOFError(f"got {len(data)} bytes"), where)
        return data

    def read(self, path: str) -> bytes:
        return self._call(lambda: self._fs.cat_file(self._path(path)), self.url(path))

    def read_limited(self, path: str, limit: int) -> bytes | None:
        """One ranged GET of at most ``limit + 1`` bytes: an object over ``limit`` is never downloaded whole."""
        where = f"{self.url(path)} (at most {limit} bytes)"
        data = self._call(lambda: self._fs.cat_file(self._path(path), start=0, end=limit + 1), where)
        return data if len(data) <= limit else None

    def size(self, path: str) -> int:
        return int(self._call(lambda: self._fs.size(self._path(path)), self.url(path)))

    def exists(self, path: str) -> bool:
        # A one-byte ranged GET, not HEAD/listing: it is what every object store answers the same way (ossfs'
        # exists() lists, which S3-compatible servers answer in another dialect).
        try:
            self._call(lambda: self._fs.cat_file(self._path(path), start=0, end=1), self.url(path))
        except FileNotFoundError:
            return False
        return True

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda: self._fs.rm_file(self._path(path)), f"{self.url(path)} (delete)")

    def _entries(self, prefix: str) -> list[dict[str, Any]]:
        base = self._path(prefix) if prefix else self._prefix
        where = f"{self.url(prefix) if prefix else self._url} (listing)"
        try:
            return self._call(lambda: self._fs.ls(base, detail=True), where)
        except FileNotFoundError:
            return []
        except (OSError, RuntimeError):
            # Listing only tidies up (stale shards of an earlier pack); reading never lists. An OSS client facing
            # an S3-dialect server (SeaweedFS, MinIO) cannot parse the listing: nothing to tidy then.
            if self._protocol == "oss":
                return []
            raise

    def _names(self, prefix: str, kind: str) -> list[str]:
        entries = self._entries(prefix)
        names = sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == kind)
        return [f"{prefix}/{n}" if prefix else n for n in names]

    def list(self, prefix: str) -> list[str]:
        return self._names(prefix, "file")

    def list_folders(self, prefix: str) -> list[str]:
        return self._names(prefix, "directory")

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        with staged_file(path) as tmp:
            with open(tmp, "wb") as f:
                yield f
            nbytes = os.path.getsize(tmp)
            self._call(
                lambda: self._fs.put_file(str(tmp), self._path(path)),
                f"{self.url(path)} (upload of {nbytes} bytes)",
                fix=UPLOAD_FIX,
            )

    def open_stream(self, path: str) -> BinaryIO:
        """Sequential reads as ranged reads of ``_STREAM_CHUNK`` bytes, each retried by the policy."""
        return io.BufferedReader(RangeStream(self, path, self.size(path)), _STREAM_CHUNK)  # type: ignore[return-value]

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self._url, "storage_options": self._options, "retry": self._retry, "reason": self.client_reason}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["url"], state["storage_options"], retry=state["retry"], client_reason=state["reason"]
        )
