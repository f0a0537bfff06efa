"""Retries for remote reads: transient failures back off and retry within a budget, permanent ones fail fast.

Transient: timeouts, connection refused/reset/aborted (a server restarting), 5xx answers, throttling
(``SlowDown``, ``Throttling``, HTTP 429/503). Permanent: missing objects (404), denied access and bad
credentials (403, ``InvalidAccessKeyId``, ``SignatureDoesNotMatch``), invalid requests — retrying those only
multiplies the load (a retry storm) and delays the one clear error the user needs.

Classification walks the exception chain (``__cause__``/``__context__``) and looks at error codes and HTTP
statuses by attribute, so it works for s3fs/aiobotocore, ossfs/oss2, pyarrow and plain ``OSError`` without
importing any of them.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["RetryPolicy", "call_with_retry", "is_transient"]

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
        value = getattr(exc, attr, None)
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            found.add(str(value))
    return found


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` may succeed."""
    transient = False
    for e in _chain(exc):
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
        if "slow down" in str(e).lower() or "service unavailable" in str(e).lower():
            transient = True
    return transient


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by total time.

    Args:
        max_attempts: Attempts in all (1 = no retry).
        base_delay: First backoff in seconds; doubles each retry.
        max_delay: Cap of one backoff.
        budget: Seconds one operation may take across all its attempts before the last error is raised.
    """

    max_attempts: int = 10
    base_delay: float = 0.05
    max_delay: float = 2.0
    budget: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < self.base_delay or self.budget <= 0:
            raise ValueError(f"invalid retry delays/budget: {self}")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Sleep before retry number ``attempt`` (1-based): uniform in [0, min(max, base * 2^(attempt-1))]."""
        return rng.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


NO_RETRY = RetryPolicy(max_attempts=1)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    describe: Callable[[], str],
    *,
    on_retry: Callable[[BaseException], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Runs ``fn``; retries transient failures per ``policy``.

    Raises:
        The permanent error at once, or after the budget a :class:`~dataio.storage.base.StorageError` (of the
        same errno family) whose message names ``describe()`` (URL and range), the attempts and the last cause.
    """
    from dataio.storage.base import StorageError

    rng = rng or random.Random()
    start = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            elapsed = time.monotonic() - start
            if not is_transient(exc):
                raise
            if attempt >= policy.max_attempts or elapsed >= policy.budget:
                raise StorageError(
                    f"{describe()}: giving up after {attempt} attempts in {elapsed:.1f} s; last error: {exc!r}"
                ) from exc
            if on_retry is not None:
                on_retry(exc)
            time.sleep(min(policy.backoff(attempt, rng), max(0.0, policy.budget - elapsed)))
