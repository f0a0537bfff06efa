"""Fault suite, slow bodies (issue 19 item 7): the retry budget bounds a server that trickles its answer.

The fault proxy relays the headers at once and then the body one byte every 0.5 s: no idle (read) timeout ever
fires. With a 3 s budget and a 1 s request timeout, a read must give up within the budget (plus one request's
deadline at most), naming the object, the range and the throughput seen; a healthy answer after a slow one
succeeds. Both S3 clients.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dataio.storage import RetryPolicy, StorageError, open_store
from tests.storage.conftest import RemoteDataset
from tests.storage.faultproxy import FaultProxy

ProxyFactory = Callable[..., FaultProxy]
#: obstore enforces one deadline per client, sized for a 4 MiB range: 1 s + 4 MiB / (4 MiB/s) = 2 s here.
POLICY = RetryPolicy(base_delay=0.01, max_delay=0.1, budget=3.0, request_timeout=1.0, min_throughput=4 << 20)
SHARD = "shards/shard-00000.dio"


def _read_in_thread(fn: Callable[[], bytes], timeout: float) -> tuple[bytes | BaseException, float]:
    """Runs ``fn`` in a thread (a regression must fail, not hang the suite); its result or error and duration."""
    out: list[bytes | BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"the read was still running after {timeout} s"
    return out[0], time.monotonic() - start


def test_trickling_body_fails_within_the_budget(s3_any: RemoteDataset, proxy: ProxyFactory) -> None:
    px = proxy(s3_any.server, trickle_rate=1.0, trickle_s=0.5)
    store = open_store(s3_any.url, s3_any.via(px), retry=POLICY)
    result, took = _read_in_thread(lambda: store.read_range(SHARD, 0, 100), timeout=30)
    assert isinstance(result, StorageError), result
    assert took < POLICY.budget + 3, took  # budget + one request's deadline (1 s) + slack for this busy machine
    message = str(result)
    assert f"{s3_any.url}/{SHARD} [0, +100)" in message
    assert "too slow" in message and "B/s" in message and "deadline" in message
    if s3_any.client == "fsspec":  # s3fs's body is read by dataio, which counts what arrived
        assert "of 100 bytes arrived in" in message
    assert px.counters.trickles >= 1
    store.close()


def test_healthy_answer_after_a_trickle_succeeds(s3_any: RemoteDataset, proxy: ProxyFactory) -> None:
    px = proxy(s3_any.server, trickle_rate=1.0, trickle_s=0.5)
    store = open_store(s3_any.url, s3_any.via(px), retry=POLICY)
    want = open_store(s3_any.url, s3_any.options).read_range(SHARD, 0, 100)

    def heal() -> None:  # the server recovers once the first slow answer has started
        deadline = time.monotonic() + 10
        while px.counters.trickles == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        px.trickle_rate = 0.0

    healer = threading.Thread(target=heal, daemon=True)
    healer.start()
    result, took = _read_in_thread(lambda: store.read_range(SHARD, 0, 100), timeout=30)
    healer.join(10)
    assert result == want, result
    assert store.retries >= 1  # type: ignore[attr-defined]
    assert took < POLICY.budget + 3, took
    store.close()
