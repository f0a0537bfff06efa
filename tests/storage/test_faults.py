"""Reads against a real S3 server that misbehaves: throttling, resets, stalls, restarts, bad credentials,
missing objects and corrupted bytes. Transient faults must be invisible (right bytes, within the retry
budget); permanent ones must surface at once as one clear error naming the URL (no retry storm)."""

from __future__ import annotations

import http.client
import http.server
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import s3fs

from dataio import ChecksumError, open_dataset
from dataio.storage import RetryPolicy, StorageError, open_store
from tests.storage.conftest import CREDENTIALS, RemoteDataset, require_weed, upload_tree
from tests.storage.faultproxy import FaultProxy
from tests.storage.seaweed import SeaweedServer

#: Fast backoff so the tests stay short; the budget is what bounds a read.
FAST_RETRY = RetryPolicy(max_attempts=20, base_delay=0.01, max_delay=0.2, budget=30.0)
ProxyFactory = Callable[..., FaultProxy]


@pytest.mark.parametrize("kind", ["s3", "s3fs", "oss"])
def test_correct_bytes_through_503s_and_resets(
    kind: str, request: pytest.FixtureRequest, proxy: ProxyFactory, local_records: list[bytes]
) -> None:
    remote: RemoteDataset = request.getfixturevalue(f"{kind}_dataset")
    # Seed 3: 2 503s and 2 resets among the first 40 draws, 6 and 4 among the first 100 (draws are per request).
    px = proxy(remote.server, fail_rate=0.05, reset_rate=0.03, seed=3)
    n = len(local_records)
    with open_dataset(remote.url, storage_options=remote.via(px), threads=8, retry=FAST_RETRY) as ds:
        with ThreadPoolExecutor(8) as pool:  # single-sample reads: one request each
            for _ in range(2):
                assert list(pool.map(ds.read_record, range(n))) == local_records
        order = list(range(n)) * 2
        random.Random(0).shuffle(order)
        assert list(ds.read_records(order)) == [local_records[i] for i in order]  # RangeReader, coalescing
        retries = ds.store.retries  # type: ignore[attr-defined]
    c = px.counters
    assert c.requests >= 100, c
    assert c.injected_503 >= 2 and c.resets >= 2, c  # the faults really happened
    assert retries >= 1, c


@pytest.mark.parametrize("fault", ["503", "reset"])
def test_one_retry_layer_no_storm(s3_any: RemoteDataset, proxy: ProxyFactory, fault: str) -> None:
    """A request failing every time is tried exactly ``max_attempts`` times: dataio's policy is the only
    retry loop (s3fs and botocore would otherwise retry up to 25 or 125 times each)."""
    px = proxy(s3_any.server, **({"fail_rate": 1.0} if fault == "503" else {"reset_rate": 1.0}))
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, budget=20)
    store = open_store(s3_any.url, s3_any.via(px), retry=policy)
    t = time.monotonic()
    with pytest.raises(StorageError, match=r"shard-00000\.dio.*giving up after 3 attempts"):
        store.read_range("shards/shard-00000.dio", 0, 100)
    assert time.monotonic() - t < 5
    # aiohttp re-sends a request once by itself when its connection is reset before any answer; obstore never.
    limit = 3 if fault == "503" or s3_any.client is None else 6
    assert px.counters.requests <= limit, px.counters
    store.close()


def test_stalled_server_times_out_within_the_budget(s3_any: RemoteDataset, proxy: ProxyFactory) -> None:
    px = proxy(s3_any.server, stall_rate=1.0, stall_s=30)
    options = s3_any.via(px, config_kwargs={"read_timeout": 1, "connect_timeout": 1})
    store = open_store(s3_any.url, options, retry=RetryPolicy(max_attempts=2, base_delay=0.01, budget=10))
    t = time.monotonic()
    with pytest.raises(StorageError, match=r"shard-00000\.dio"):
        store.read_range("shards/shard-00000.dio", 0, 100)
    assert time.monotonic() - t < 6
    assert px.counters.stalls <= 2, px.counters
    store.close()


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_reads_resume_after_server_restart(
    tmp_path: Path, packed: Path, local_records: list[bytes], crash: bool
) -> None:
    """The server goes away while 4 threads read and comes back on the same port: reads resume, bytes right."""
    require_weed()
    server = SeaweedServer(tmp_path / "weed", credentials=CREDENTIALS).start()
    try:
        server.create_bucket("restart")
        url = upload_tree(server, packed, "restart", "ds")
        policy = RetryPolicy(max_attempts=1000, base_delay=0.02, max_delay=0.25, budget=30.0)
        ds = open_dataset(url, storage_options=server.s3_storage_options(), threads=4, retry=policy)
        n = len(local_records)
        first_pass, restarted, stop = threading.Event(), threading.Event(), threading.Event()
        bad: list[int] = []
        errors: list[BaseException] = []
        passes = [0]

        def reader() -> None:
            try:
                rng = random.Random(1)
                final = False
                while not stop.is_set():
                    order = list(range(n))
                    rng.shuffle(order)
                    bad.extend(
                        i for i, rec in zip(order, ds.read_records(order), strict=True) if rec != local_records[i]
                    )
                    passes[0] += 1
                    first_pass.set()
                    if final:
                        return
                    final = restarted.is_set()  # one more complete pass after the server is back
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        assert first_pass.wait(30), "no pass completed before the restart"
        before = passes[0]
        t = time.monotonic()
        server.restart(crash=crash)  # from the main thread: the server's parent-death signal is tied to it
        down = time.monotonic() - t
        restarted.set()
        thread.join(policy.budget + 10)
        stop.set()
        assert not thread.is_alive(), "reader still running after the retry budget"
        assert not errors, errors
        assert bad == []
        assert passes[0] >= before + 2
        assert ds.store.retries > 0, "the reader never saw the outage"  # type: ignore[attr-defined]
        assert down < policy.budget
        ds.close()
    finally:
        server.stop()


@pytest.mark.parametrize("how", ["wrong-secret", "unknown-key", "anonymous"])
def test_bad_credentials_one_clear_error_fast(s3_any: RemoteDataset, proxy: ProxyFactory, how: str) -> None:
    px = proxy(s3_any.server)
    options = s3_any.via(px)
    if how == "wrong-secret":
        options["secret"] = "not-the-secret"
    elif how == "unknown-key":
        options["key"] = "AKIDONOTEXIST"
    else:
        del options["key"], options["secret"]
        options["anon"] = True
    t = time.monotonic()
    with pytest.raises(PermissionError) as info:
        open_dataset(s3_any.url, storage_options=options, retry=FAST_RETRY)
    assert time.monotonic() - t < 5
    assert isinstance(info.value, StorageError)
    assert f"{s3_any.url}/manifest.json" in str(info.value)
    assert px.counters.requests <= 3, px.counters  # no retry storm


def test_missing_shard_fails_fast_naming_the_url(s3_copy: RemoteDataset, proxy: ProxyFactory) -> None:
    fs = s3fs.S3FileSystem(**s3_copy.server.s3_storage_options())
    fs.rm_file(f"{s3_copy.bucket}/{s3_copy.prefix}/shards/shard-00001.dio")
    px = proxy(s3_copy.server)
    with open_dataset(s3_copy.url, storage_options=s3_copy.via(px), retry=FAST_RETRY) as ds:
        first_of_shard1 = int(ds.shard_sizes[0])
        assert ds[0]["key"]  # shard 0 is intact
        px.reset_counters()
        t = time.monotonic()
        with pytest.raises(FileNotFoundError) as info:
            ds[first_of_shard1]
        assert time.monotonic() - t < 2
        assert isinstance(info.value, StorageError)
        assert f"{s3_copy.url}/shards/shard-00001.dio" in str(info.value)
        assert px.counters.requests <= 2, px.counters
        with pytest.raises(FileNotFoundError, match=r"shard-00001\.dio"):
            list(ds.get_many([0, first_of_shard1]))


def test_flipped_byte_on_the_server_is_a_checksum_error(
    s3_copy: RemoteDataset, packed: Path, local_records: list[bytes]
) -> None:
    local = open_dataset(packed)
    target = 2  # sample position inside shard 1
    shard_path = local.manifest.shards[1].path
    index = int(local.shard_sizes[0]) + target
    _, offset, length = local.record_range(index)
    blob = bytearray((packed / shard_path).read_bytes())
    blob[offset + length // 2] ^= 0x01
    fs = s3fs.S3FileSystem(**s3_copy.server.s3_storage_options())
    fs.pipe_file(f"{s3_copy.bucket}/{s3_copy.prefix}/{shard_path}", bytes(blob))

    with open_dataset(s3_copy.url, storage_options=s3_copy.options) as ds:
        with pytest.raises(ChecksumError) as info:
            ds[index]
        assert info.value.shard == shard_path and info.value.position == target
        assert shard_path in str(info.value)
        with pytest.raises(ChecksumError, match=r"shard-00001\.dio") as info:
            list(ds.read_records([0, index - 1, index, index + 1]))
        assert info.value.position == target
        assert ds.read_record(index - 1) == local_records[index - 1]  # the neighbours are intact
        assert ds.read_record(index + 1) == local_records[index + 1]


# -- the proxy itself, against a plain HTTP/1.1 server ------------------------------------------------------

_BODY = bytes(range(256)) * 1000


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return "upstream"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Thu, 01 Jan 2026 00:00:00 GMT"  # constant: responses are compared byte for byte

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(_BODY), 70_001):
                piece = _BODY[i : i + 70_001]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        else:
            self.send_response(206 if self.path == "/range" else 200)
            body = _BODY[100:5100] if self.path == "/range" else _BODY
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(_BODY)))
        self.end_headers()

    def do_PUT(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[::-1])


@pytest.fixture
def upstream() -> Iterator[tuple[str, int]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]  # injected resets
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield ("127.0.0.1", server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join(5)


def _raw_exchange(port: int, requests: list[bytes], expect: int) -> bytes:
    """Sends ``requests`` on one connection and reads until ``expect`` bytes arrived (or the peer closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for r in requests:
            s.sendall(r)
        out = b""
        while len(out) < expect:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            out += chunk
        return out


def test_proxy_relays_byte_exact_with_keep_alive(upstream: tuple[str, int], proxy: ProxyFactory) -> None:
    px = proxy(upstream)
    reqs = [
        b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /plain HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /range HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",  # then both close: read to EOF
    ]
    direct = _raw_exchange(upstream[1], reqs, 1 << 30)
    assert direct.count(b"HTTP/1.1 20") == 5 and b"X-Trailer: yes" in direct and b"olleh" in direct
    assert _raw_exchange(px.port, reqs, 1 << 30) == direct  # five answers on one connection, same bytes
    assert px.counters.requests == 5 and px.counters.forwarded == 5 and px.counters.connections == 1
    assert px.counters.statuses == {200: 4, 206: 1}

    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5)  # a real client, Expect: 100-continue
    conn.request("PUT", "/echo", body=b"abc" * 1000, headers={"Expect": "100-continue"})
    assert conn.getresponse().read() == (b"abc" * 1000)[::-1]
    conn.close()


def test_proxy_injects_503_and_resets(upstream: tuple[str, int], proxy: ProxyFactory) -> None:
    px = proxy(upstream, fail_rate=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5)
    for _ in range(3):  # keep-alive after an injected 503
        conn.request("GET", "/plain?x=<1>")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 503 and resp.reason == "Slow Down"
        assert b"<Code>SlowDown</Code>" in body and b"&lt;1>" in body
        assert resp.getheader("Connection") == "keep-alive"
    conn.close()
    assert px.counters.injected_503 == 3 and px.counters.connections == 1 and px.counters.forwarded == 0

    px.fail_rate, px.reset_rate = 0.0, 1.0
    with socket.create_connection(("127.0.0.1", px.port), timeout=5) as s:
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            s.recv(100)
    assert px.counters.resets == 1

    px.reset_rate, px.latency = 0.0, 0.05
    t = time.monotonic()
    assert _raw_exchange(px.port, [b"GET /range HTTP/1.1\r\nHost: x\r\n\r\n"], 5000).endswith(_BODY[100:5100])
    assert time.monotonic() - t >= 0.05
    px.stop()
    px.stop()  # idempotent
    assert not px.running
