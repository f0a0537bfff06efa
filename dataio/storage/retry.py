"""Retries for remote reads and writes: transient failures back off and retry for a time budget, permanent ones
fail fast.

Transient: timeouts, connection refused/reset/aborted (a server restarting), 5xx answers, throttling
(``SlowDown``, ``Throttling``, HTTP 429/503). Permanent: missing objects (404), denied access and bad
credentials (403, ``InvalidAccessKeyId``, ``SignatureDoesNotMatch``), invalid requests — retrying those only
multiplies the load (a retry storm) and delays the one clear error the user needs.

Classification walks the exception chain (``__cause__``/``__context__``) and looks at error codes and HTTP
statuses by attribute, so it works for s3fs/aiobotocore, ossfs/oss2, pyarrow and plain ``OSError`` without
importing any of them. A permanent HTTP status counts only when a server sent it: a response dict (botocore,
requests) or a ``status``/``status_code`` attribute (aiohttp, oss2, urllib). The ``code`` attribute is read as
a named error code only, never as a status: HTTP parsers put the status they would answer there (aiohttp's
``ContentLengthError`` for a body cut short by a reset carries ``code = 400``), and a torn message is a
connection failure, not the server's verdict.
"""

from __future__ import annotations

import errno
import inspect
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy", "call_with_retry", "chain", "is_transient"]

T = TypeVar("T")

_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EAGAIN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETRESET,
        errno.EBUSY,
    }
)
_PERMANENT_CODES = frozenset(
    {
        "403",
        "404",
        "400",
        "401",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchKey",
        "NoSuchBucket",
        "InvalidBucketName",
        "InvalidRange",
        "AuthorizationHeaderMalformed",
        "ExpiredToken",
        "InvalidToken",
        "AllAccessDisabled",
        "InvalidObjectState",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "500",
        "502",
        "503",
        "504",
        "429",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "TooManyRequests",
    }
)
_TRANSIENT_NAMES = frozenset(
    {
        "TimeoutError",
        "ConnectionError",
        "ConnectionResetError",
        "ConnectionRefusedError",
        "ConnectionAbortedError",
        "BrokenPipeError",
        "IncompleteRead",
        "ReadTimeoutError",
        "ConnectTimeoutError",
        "EndpointConnectionError",
        "ConnectionClosedError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ClientConnectorError",
        "ClientOSError",
        "ClientPayloadError",
        "ServerTimeoutError",
        "FSTimeoutError",
        "ResponseParserError",
        "ContentLengthError",  # aiohttp: a body cut short (a reset mid-body or at its last byte)
        "TransferEncodingError",  # aiohttp: a chunked body cut short
        "HTTPClientError",
        "ProxyConnectionError",
        "RemoteDisconnected",
        "ChunkedEncodingError",
        "ReadTimeout",
        "ConnectTimeout",
        "RequestError",
    }
)
_PERMANENT_TYPES = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError, TypeError)


def _codes(exc: BaseException) -> set[str]:
    """Error codes and HTTP statuses carried by an exception (botocore, oss2, aiohttp, requests styles)."""
    found: set[str] = set()
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        for value in (err.get("Code"), meta.get("HTTPStatusCode")):
            if value is not None:
                found.add(str(value))
    for attr in ("status", "status_code", "code", "error_code"):
        # Static lookup: a computed ``code`` (aiohttp's deprecated alias of ``status``) is not read.
        value = inspect.getattr_static(exc, attr, None)
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            continue
        if attr in ("code", "error_code") and str(value).lstrip("-").isdigit():
            continue  # a number here is no server's answer (aiohttp's parser errors put 400 here)
        found.add(str(value))
    return found


def _text(exc: BaseException) -> str:
    try:
        return str(exc).lower()
    except Exception:  # an exception whose __str__ fails (missing request info) says nothing here
        return ""


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` may succeed."""
    transient = False
    for e in chain(exc):
        if getattr(e, "dataio_permanent", False):
            return False  # dataio's own verdict (a refused redirect), whatever a client wrapped it in
        codes = _codes(e)
        if codes & _TRANSIENT_CODES or any(c.isdigit() and 500 <= int(c) <= 599 for c in codes):
            transient = True  # a named throttling/timeout code wins over its HTTP status (RequestTimeout is a 400)
        elif codes & _PERMANENT_CODES:
            return False
        if type(e).__name__ in _TRANSIENT_NAMES or isinstance(e, (TimeoutError, ConnectionError)):
            transient = True
        elif isinstance(e, _PERMANENT_TYPES) and not transient:
            return False
        elif isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
            transient = True
        text = _text(e)
        if "slow down" in text or "service unavailable" in text:
            transient = True
    return transient


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by time (and, if asked, by a number of attempts).

    The default rides out an outage of the store of up to about two minutes (a server restart, a failover, a
    network blip): each operation retries for ``budget`` seconds, backing off from ``base_delay`` up to
    ``max_delay`` between attempts, so it resumes at most ``max_delay`` seconds after the store is back. A count
    of attempts is a poor bound: fast failures (connection refused) spend any small count in seconds.

    The budget bounds slow answers too, not only failing ones: one ranged read of ``n`` bytes may take at most
    :meth:`request_deadline` ``= request_timeout + n / min_throughput`` seconds from connect to its last body
    byte, and never longer than the budget leaves (:meth:`attempt_limit`); a server that stalls or trickles its
    body slower is cut off with a :class:`TimeoutError` naming the object, the range, the bytes received, the
    time and the throughput seen, which is transient: retried while the budget lasts. A read therefore gives
    up within ``budget + 1`` seconds however the server behaves (see docs/storage.md, "What the retry budget
    bounds").

    Args:
        max_attempts: Attempts in all (1 = no retry); ``None``: as many as ``budget`` allows.
        base_delay: First backoff in seconds; doubles each retry.
        max_delay: Cap of one backoff.
        budget: Seconds one operation may spend across all its attempts before the last error is raised.
        request_timeout: Seconds one request may take beyond what its bytes need at ``min_throughput``.
        min_throughput: Bytes per second below which a body counts as stalled.
    """

    max_attempts: int | None = None
    base_delay: float = 0.05
    max_delay: float = 2.0
    budget: float = 120.0
    request_timeout: float = 30.0
    min_throughput: float = 256 * 1024

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1
        ):
            raise ValueError(f"max_attempts must be None or an integer >= 1, got {self.max_attempts!r}")
        for name in ("base_delay", "max_delay", "budget", "request_timeout", "min_throughput"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {self.base_delay} and {self.max_delay}")
        if self.budget <= 0:
            raise ValueError(f"budget must be > 0 seconds, got {self.budget}")
        if self.request_timeout <= 0 or self.min_throughput <= 0:
            raise ValueError(
                f"request_timeout and min_throughput must be > 0, got {self.request_timeout} and {self.min_throughput}"
            )

    def request_deadline(self, nbytes: int) -> float:
        """Seconds one request moving ``nbytes`` may take, connect to last byte."""
        return self.request_timeout + max(0, nbytes) / self.min_throughput

    def attempt_limit(self, nbytes: int, elapsed: float) -> float:
        """Seconds the attempt of a read of ``nbytes`` starting ``elapsed`` seconds into its operation may take:
        its :meth:`request_deadline`, cut to the budget left (at least 1 s, or the deadline if shorter)."""
        deadline = self.request_deadline(nbytes)
        return min(deadline, max(1.0, self.budget - elapsed))

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(max, base * 2^(attempt-1))]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 60)))

    def exhausted(self, attempt: int, elapsed: float) -> bool:
        """Whether an operation that failed its ``attempt``-th try after ``elapsed`` seconds must give up."""
        return elapsed >= self.budget or (self.max_attempts is not None and attempt >= self.max_attempts)


NO_RETRY = RetryPolicy(max_attempts=1)

#: What to do when a store stays unreachable for a whole budget (the default of ``call_with_retry``'s ``fix``).
RETRY_FIX = (
    "the store failed for the whole retry budget: check the endpoint and the network, or pass "
    "retry=RetryPolicy(budget=...) to ride out longer outages"
)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    describe: Callable[[], str],
    *,
    on_retry: Callable[[BaseException], None] | None = None,
    rng: random.Random | None = None,
    fix: str = RETRY_FIX,
) -> T:
    """Runs ``fn``; retries transient failures per ``policy``.

    Raises:
        The permanent error at once, or after the budget a :class:`~dataio.storage.base.StorageError` whose
        message names ``describe()`` (URL and range, or the object uploaded), the attempts, the last cause and
        ``fix`` (what the user can do about it).
    """
    from dataio.storage.base import StorageError

    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            rng = rng or random.Random()  # made on the first failure only: seeding costs more than a local read
            elapsed = time.monotonic() - start
            if not is_transient(exc):
                raise
            if policy.exhausted(attempt, elapsed):
                raise StorageError(
                    f"{describe()}: giving up after {attempt} attempts in {elapsed:.1f} s; last error: {exc!r}; {fix}"
                ) from exc
            if on_retry is not None:
                on_retry(exc)
            time.sleep(min(policy.backoff(attempt, rng), max(0.0, policy.budget - elapsed)))
