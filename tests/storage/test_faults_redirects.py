"""Fault suite, redirects (issue 19 item 8): an endpoint redirecting to another host gets nothing sent there.

Two tiny real HTTP servers: the endpoint on 127.0.0.1 answers every request with a redirect; the "other host"
on 127.0.0.2 (another loopback address: another host to both clients) records what reaches it. Both S3
clients, all four redirect codes.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dataio import open_dataset
from dataio.storage import RetryPolicy, StorageError, open_store

TOKEN = "session-token-must-not-travel"
POLICY = RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.02, budget=10)


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


class _Redirector(_Recorder):
    code = 301
    target = ""

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(self.code)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


def _serve(host: str, handler: type[_Recorder], **attrs: Any) -> tuple[http.server.ThreadingHTTPServer, list[dict]]:
    seen: list[dict[str, str]] = []
    cls = type(handler.__name__, (handler,), {"seen": seen, **attrs})
    server = http.server.ThreadingHTTPServer((host, 0), cls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, seen


@pytest.fixture
def servers(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict], list[dict], str]]:
    """(endpoint, requests at the endpoint, requests at the target, target origin) for redirect ``code``."""
    code, same_host = request.param
    other, at_other = _serve("127.0.0.1" if same_host else "127.0.0.2", _Recorder)
    origin = f"http://{other.server_address[0]}:{other.server_address[1]}"
    endpoint, at_endpoint = _serve("127.0.0.1", _Redirector, code=code, target=origin)
    yield f"http://127.0.0.1:{endpoint.server_address[1]}", at_endpoint, at_other, origin
    for s in (endpoint, other):
        s.shutdown()
        s.server_close()


def _options(endpoint: str, client: str) -> dict[str, Any]:
    return {
        "key": "AKIDREDIRECT",
        "secret": "secret-redirect-value",
        "token": TOKEN,
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        "client": client,
    }


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
@pytest.mark.parametrize("servers", [(c, False) for c in (301, 302, 307, 308)], indirect=True, ids=str)
def test_redirect_to_another_host_is_refused(servers: tuple[str, list, list, str], client: str) -> None:
    endpoint, at_endpoint, at_other, origin = servers
    store = open_store("s3://bkt/ds", _options(endpoint, client), retry=POLICY)
    with pytest.raises(PermissionError) as info:
        store.read_range("shards/shard-00000.dio", 0, 100)
    message = str(info.value)
    assert isinstance(info.value, StorageError) and not isinstance(info.value, FileNotFoundError)
    assert "s3://bkt/ds/shards/shard-00000.dio" in message and endpoint in message and "redirect" in message
    if client == "fsspec":
        assert origin in message  # obstore's client does not report where the redirect pointed
    assert TOKEN not in message
    assert at_other == [], "a request reached the other host"
    assert len(at_endpoint) == 1, "a refused redirect is permanent: not retried"
    store.close()

    with pytest.raises(PermissionError, match="redirect") as info:  # not "no manifest"
        open_dataset("s3://bkt/ds", storage_options=_options(endpoint, client), retry=POLICY)
    assert not isinstance(info.value, FileNotFoundError)
    assert at_other == []


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
@pytest.mark.parametrize("servers", [(307, True)], indirect=True, ids=str)
def test_redirect_on_the_endpoint_host_is_followed(servers: tuple[str, list, list, str], client: str) -> None:
    """Decision: a redirect to another port of the endpoint's host is followed (same machine, same trust)."""
    endpoint, _, at_other, _ = servers
    store = open_store("s3://bkt/ds", _options(endpoint, client), retry=POLICY)
    with pytest.raises(FileNotFoundError):  # the target's answer
        store.read_range("shards/shard-00000.dio", 0, 100)
    assert len(at_other) >= 1
    store.close()
