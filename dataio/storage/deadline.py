"""Slow bodies: a request's deadline, and the error that names what a too-slow answer delivered.

:class:`~dataio.storage.retry.RetryPolicy` gives every ranged read a deadline (connect, headers and body:
:meth:`~dataio.storage.retry.RetryPolicy.attempt_limit`). obstore enforces it itself (its client ``timeout``);
for s3fs, :func:`timed_s3_range` reads the body in pieces on s3fs's event loop under ``asyncio.wait_for``,
counting what arrives, so a server that stalls or trickles its body is cut off at the deadline (its connection
closed) with a :class:`SlowBody` error naming the object, the range, the bytes received, the time and the
throughput seen. :class:`SlowBody` is a :class:`TimeoutError`: transient, retried while the budget lasts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["SlowBody", "slow_body", "timed_s3_range"]

_PIECE = 256 * 1024


class SlowBody(TimeoutError):
    """A request that did not complete within its deadline (a stalled or trickling server). Transient."""


def slow_body(where: str, wanted: int, received: int | None, elapsed: float, limit: float) -> SlowBody:
    """The error for a read of ``wanted`` bytes at ``where`` cut off after ``elapsed`` s (deadline ``limit``).

    ``received``: bytes that arrived, or None when the client does not report it (obstore)."""
    seconds = max(elapsed, 1e-9)
    if received is None:
        seen = f"fewer than {wanted} bytes arrived in {elapsed:.1f} s (under {wanted / seconds:,.0f} B/s)"
    else:
        seen = f"{received} of {wanted} bytes arrived in {elapsed:.1f} s ({received / seconds:,.1f} B/s)"
    return SlowBody(
        f"{where}: too slow, {seen}; the request's deadline is {limit:.1f} s (RetryPolicy request_timeout + "
        "bytes / min_throughput, within the budget): the server stalls or trickles its answer"
    )


async def _s3_range(fs: Any, path: str, offset: int, length: int, progress: list[int]) -> bytes:
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    resp = await fs._call_s3(
        "get_object", Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}", **extra
    )
    body = resp["Body"]
    try:
        parts = []
        while True:
            piece = await body.read(_PIECE)
            if not piece:
                return b"".join(parts)
            parts.append(piece)
            progress[0] += len(piece)
    finally:
        body.close()


def timed_s3_range(fs: Any, path: str, offset: int, length: int, limit: float, where: str) -> bytes:
    """``length`` bytes at ``offset`` of s3fs object ``path`` within ``limit`` seconds, or :class:`SlowBody`."""
    if length <= 0:
        return b""
    from fsspec.asyn import sync

    progress = [0]
    start = time.monotonic()
    try:
        return sync(fs.loop, asyncio.wait_for, _s3_range(fs, path, offset, length, progress), limit)
    except TimeoutError:
        elapsed = time.monotonic() - start
        if elapsed < limit * 0.98:
            raise  # a client's own timeout, not the deadline
        raise slow_body(where, length, progress[0], elapsed, limit) from None
