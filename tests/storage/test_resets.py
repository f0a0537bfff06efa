"""Connection resets at every point of an exchange: before the response headers, in the middle of a body and
at its last byte, on ranged reads and on pack uploads, against a real S3 server through the fault proxy.

A reset is a connection failure whatever the parser says about the torn message (aiohttp reports a body cut
short as ``ClientPayloadError`` caused by ``ContentLengthError``, whose ``code`` is 400): every one must be
retried and invisible, bytes exact, within the retry budget."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import s3fs

from dataio import open_dataset
from dataio.pack import PackOptions, pack
from dataio.storage import RetryPolicy
from tests.conftest import SHARD_SIZE
from tests.storage.conftest import RemoteDataset
from tests.storage.faultproxy import FaultProxy
from tests.storage.seaweed import SeaweedServer
from tests.storage.test_faults import _BODY, upstream  # noqa: F401 - the plain HTTP/1.1 server fixture

ProxyFactory = Callable[..., FaultProxy]
POINTS = ["headers", "mid-body", "last-byte"]
#: Fast backoff (the tests stay short); the budget bounds an operation.
FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.2, budget=30.0)


def _exchange(port: int, request: bytes) -> tuple[bytes, BaseException | None]:
    """Sends ``request`` and reads until the peer closes or resets: ``(bytes received, the reset or None)``."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        try:
            while chunk := s.recv(1 << 16):
                out += chunk
        except ConnectionResetError as exc:
            return out, exc
    return out, None


@pytest.mark.parametrize("where", POINTS)
def test_proxy_cuts_responses_where_asked(upstream: tuple[str, int], proxy: ProxyFactory, where: str) -> None:  # noqa: F811
    px = proxy(upstream, reset_rate=1.0, reset_at=where)
    got, reset = _exchange(px.port, b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(reset, ConnectionResetError)
    head, _, body = got.partition(b"\r\n\r\n")
    if where == "headers":
        assert got == b"" and px.counters.bytes_down == 0
    else:
        cut = len(_BODY) // 2 if where == "mid-body" else len(_BODY) - 1
        assert px.counters.bytes_down == len(head) + 4 + cut  # what was sent before the reset
        # The client sees the head and a prefix of those bytes: the RST may overtake data it has not read yet.
        assert head.startswith(b"HTTP/1.1 200") and b"Content-Length: %d" % len(_BODY) in head
        assert _BODY[:cut].startswith(body)
    assert px.counters.resets == 1 and px.counters.requests == 1


@pytest.mark.parametrize("where", ["mid-body", "last-byte"])
def test_proxy_cuts_uploads_on_the_way_to_the_server(
    upstream: tuple[str, int],  # noqa: F811
    proxy: ProxyFactory,
    where: str,
) -> None:
    px = proxy(upstream, reset_rate=1.0, reset_at=where)
    got, reset = _exchange(px.port, b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
    assert got == b"" and isinstance(reset, ConnectionResetError)
    assert px.counters.bytes_up > 0 and px.counters.forwarded == 0


@pytest.mark.parametrize("where", POINTS)
@pytest.mark.parametrize("kind", ["s3", "s3fs", "oss"])
def test_reads_survive_resets(
    kind: str, request: pytest.FixtureRequest, proxy: ProxyFactory, local_records: list[bytes], where: str
) -> None:
    remote: RemoteDataset = request.getfixturevalue(f"{kind}_dataset")
    # One request in five is cut (seed 5 cuts the first one); every read must still return the right bytes.
    px = proxy(remote.server, reset_rate=0.2, reset_at=where, seed=5)
    n = len(local_records)
    with open_dataset(remote.url, storage_options=remote.via(px), threads=4, retry=FAST_RETRY) as ds:
        assert [ds.read_record(i) for i in range(n)] == local_records  # one request per sample
        assert list(ds.read_records(range(n - 1, -1, -1))) == local_records[::-1]  # coalesced ranged reads
        retries = ds.store.retries  # type: ignore[attr-defined]
    assert px.counters.resets >= 5, px.counters
    assert retries >= 1, px.counters


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
@pytest.mark.parametrize("where", ["request", *POINTS])
def test_pack_uploads_survive_resets(
    seaweed: SeaweedServer,
    bucket: str,
    proxy: ProxyFactory,
    synth_dir: Path,
    local_records: list[bytes],
    where: str,
    client: str,
) -> None:
    """Every upload of a pack (shards, progress records, index, manifest) is retried by dataio's policy; an
    upload cut half-way or one byte short never leaves a torn object: the packed dataset reads back exact, and
    a rerun's checks of the finished shards (streamed reads) ride through the same faults."""
    px = proxy(seaweed, reset_rate=0.25, reset_at=where, seed=2)
    url = f"s3://{bucket}/ds"
    options = {**seaweed.s3_storage_options(endpoint=px.endpoint), "client": client}
    report = pack(synth_dir, url, PackOptions(shard_size=SHARD_SIZE), storage_options=options)
    assert report.written_shards == report.num_shards > 1
    assert px.counters.resets >= 3, px.counters
    with open_dataset(url, storage_options=seaweed.s3_storage_options()) as ds:  # straight to the server
        assert list(ds.read_records(range(len(ds)))) == local_records
    fs = s3fs.S3FileSystem(**seaweed.s3_storage_options())
    assert not [p for p in fs.find(bucket) if "dataio-upload" in p]  # no staging names leaked to the store
    # A rerun through the same faults checks (streams) every shard and reuses it.
    again = pack(synth_dir, url, PackOptions(shard_size=SHARD_SIZE), storage_options=options)
    assert again.reused_shards == again.num_shards == report.num_shards
