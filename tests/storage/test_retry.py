"""Transient vs permanent classification and the retry loop, with the exception types the clients raise."""

from __future__ import annotations

import errno
import time

import pytest
from aiohttp import ClientPayloadError, ClientResponseError
from aiohttp.http_exceptions import ContentLengthError, TransferEncodingError
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from dataio.storage import RetryPolicy, StorageError, is_transient
from dataio.storage.retry import call_with_retry


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


def wrapped(cause: BaseException, outer: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as c:
            raise outer from c
    except BaseException as e:
        return e


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("RequestTimeout", 400),
        wrapped(client_error("503", 503), OSError(errno.EBUSY, "Service Unavailable")),  # what s3fs raises
        ConnectionResetError(errno.ECONNRESET, "reset"),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        TimeoutError("timed out"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
        ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
        wrapped(ConnectionResetError(), StorageError("s3://b/x [0, +10): reset")),
        # What aiohttp raises for a reset mid-body or at the last byte: the parser's code 400 is no answer.
        wrapped(ContentLengthError("Not enough data to satisfy content length header."), ClientPayloadError("cut")),
        wrapped(TransferEncodingError("Not enough data to satisfy transfer length header."), ClientPayloadError()),
        ContentLengthError("Not enough data to satisfy content length header."),
        ClientResponseError(None, (), status=503, message="Slow Down"),  # type: ignore[arg-type]
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("AccessDenied", 403),
        client_error("InvalidAccessKeyId", 403),
        client_error("SignatureDoesNotMatch", 403),
        client_error("NoSuchKey", 404),
        wrapped(client_error("NoSuchKey", 404), FileNotFoundError("s3://b/x")),  # what s3fs raises
        wrapped(client_error("AccessDenied", 403), PermissionError("denied")),
        FileNotFoundError("x"),
        ValueError("bad range"),
        OSError(errno.EIO, "generic"),
        ClientResponseError(None, (), status=403, message="Forbidden"),  # type: ignore[arg-type]
        ClientResponseError(None, (), status=400, message="Bad Request"),  # type: ignore[arg-type]
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_retry_succeeds_after_transient_failures() -> None:
    calls = []

    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise ConnectionResetError("reset")
        return "ok"

    retried = []
    assert call_with_retry(flaky, RetryPolicy(base_delay=0.001), lambda: "u", on_retry=retried.append) == "ok"
    assert len(calls) == 4 and len(retried) == 3


def test_permanent_error_fails_fast_once() -> None:
    calls = 0

    def denied() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("AccessDenied")

    with pytest.raises(PermissionError):
        call_with_retry(denied, RetryPolicy(), lambda: "u")
    assert calls == 1


def test_budget_bounds_attempts_and_names_the_target() -> None:
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

    with pytest.raises(StorageError, match=r"s3://b/k \[0, \+9\): giving up after 5 attempts.*refused"):
        call_with_retry(down, RetryPolicy(max_attempts=5, base_delay=0.001), lambda: "s3://b/k [0, +9)")
    assert calls == 5
    t = time.monotonic()
    with pytest.raises(StorageError, match="giving up"):
        call_with_retry(down, RetryPolicy(max_attempts=1000, base_delay=0.01, max_delay=0.02, budget=0.2),
                        lambda: "u")
    assert time.monotonic() - t < 1.0


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(base_delay=1, max_delay=0.5)


def test_request_deadline_and_attempt_limit() -> None:
    """One request's deadline grows with its bytes and is cut to the budget left (at least 1 s)."""
    policy = RetryPolicy(budget=10.0, request_timeout=2.0, min_throughput=1000.0)
    assert policy.request_deadline(0) == 2.0 and policy.request_deadline(5000) == 7.0
    assert policy.attempt_limit(5000, 0.0) == 7.0
    assert policy.attempt_limit(5000, 6.0) == 4.0  # the budget left
    assert policy.attempt_limit(5000, 9.9) == 1.0  # the floor
    assert RetryPolicy(request_timeout=0.5).attempt_limit(0, 500.0) == 0.5  # never above the deadline
    for bad in ({"request_timeout": 0}, {"min_throughput": -1}, {"request_timeout": float("inf")}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_dataio_permanent_wins_over_a_transient_wrapper() -> None:
    """A refused redirect wrapped by botocore in a (transient-named) HTTPClientError stays permanent."""
    from dataio.storage.redirects import RedirectRefused

    class HTTPClientError(Exception):
        pass

    try:
        try:
            raise RedirectRefused("redirect to another host")
        except RedirectRefused as inner:
            raise HTTPClientError("unhandled") from inner
    except HTTPClientError as exc:
        assert not is_transient(exc)
