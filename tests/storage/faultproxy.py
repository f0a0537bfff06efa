"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1: latency, ``503 Slow Down``, connection resets, stalls.

Put it between an S3 client and a server (point the client's ``endpoint_url`` at :attr:`FaultProxy.endpoint`)
to test retries against real sockets: ``tc netem`` is not available here, so latency is added in user space.
Per request the proxy waits ``latency`` seconds, then with probability ``fail_rate`` answers a well-formed S3
``503 Slow Down`` (keep-alive), with probability ``reset_rate`` resets the connection (``SO_LINGER 0`` then
close sends an RST) at the point ``reset_at`` names, with probability ``stall_rate`` holds the request without
answering for ``stall_s`` seconds (a server that hangs: the client's read timeout fires), with probability
``trickle_rate`` relays the headers at once and the body one byte per ``trickle_s`` seconds (no idle timeout
fires), and otherwise relays request and response byte for byte (``Content-Length``, chunked, until-close).

Reset points (``reset_at``), for the message that carries the body (the request of a PUT/POST with a body,
else the response):

* ``"request"``: the request is not forwarded; the client connection is reset (the default).
* ``"headers"``: the request is forwarded and answered upstream; the client is reset before any byte of the
  answer (a PUT then has taken effect on the server while its client saw a reset).
* ``"mid-body"``: half of the body's bytes (as framed on the wire) pass, then both connections are reset.
* ``"last-byte"``: every byte of the body but the last passes, then both connections are reset.
* ``"any"``: one of the four above, drawn for each cut (a chaos mix).

One thread per client connection (daemon threads; every socket has a timeout and the proxy's stop event
wakes every wait), each keeping one keep-alive connection to the upstream. :meth:`stop` closes everything.

``python -m tests.storage.faultproxy_cli 127.0.0.1:PORT --latency 0.01`` runs one in a process of its own (benchmarks:
the proxy's GIL then competes with nobody); it prints its port and serves until its stdin closes.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from typing import BinaryIO

from tests.storage.faultcounters import ProxyCounters
from tests.storage.httpwire import CHUNK, Closed, Message, iter_body, read_head, read_request_body, trickle

__all__ = ["RESET_POINTS", "FaultProxy", "ProxyCounters"]

RESET_POINTS = ("request", "headers", "mid-body", "last-byte", "any")

_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<Resource>%s</Resource><RequestId>faultproxy-%d</RequestId></Error>"
)


class FaultProxy:
    """A thread-based HTTP/1.1 proxy to ``upstream_host:upstream_port`` that injects faults.

    Args:
        upstream_host: Upstream address (loopback).
        upstream_port: Upstream port.
        latency: Seconds added before each request is handled.
        fail_rate: Probability of answering ``503 Slow Down`` instead of forwarding.
        reset_rate: Probability of resetting the client connection instead of forwarding.
        reset_at: Where a reset cuts the exchange: ``"request"``, ``"headers"``, ``"mid-body"``, ``"last-byte"``
            or ``"any"`` (one of those four drawn per cut).
        stall_rate: Probability of never answering (for ``stall_s`` seconds, then closing).
        stall_s: How long a stalled request is held.
        trickle_rate: Probability of relaying the response body one byte every ``trickle_s`` seconds.
        trickle_s: Seconds between two bytes of a trickled body.
        seed: Seed of the fault draws.
        methods: HTTP methods faults apply to (``None``: all); other requests are always forwarded.
        timeout: Socket timeout (idle keep-alive connections, upstream answers).

    The rates, ``reset_at`` and ``latency`` are plain attributes and may be changed while the proxy runs.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency: float = 0.0,
        fail_rate: float = 0.0,
        reset_rate: float = 0.0,
        reset_at: str = "request",
        stall_rate: float = 0.0,
        stall_s: float = 30.0,
        trickle_rate: float = 0.0,
        trickle_s: float = 1.0,
        seed: int = 0,
        timeout: float = 60.0,
        methods: frozenset[str] | None = None,
    ) -> None:
        if reset_at not in RESET_POINTS:
            raise ValueError(f"reset_at must be one of {RESET_POINTS}, got {reset_at!r}")
        if upstream_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"FaultProxy forwards to loopback only, not {upstream_host!r}")
        self.upstream = (upstream_host, int(upstream_port))
        self.latency = latency
        self.fail_rate = fail_rate
        self.reset_rate = reset_rate
        self.reset_at = reset_at
        self.stall_rate = stall_rate
        self.stall_s = stall_s
        self.trickle_rate = trickle_rate
        self.trickle_s = trickle_s
        self.timeout = timeout
        self.methods = methods
        self.counters = ProxyCounters()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._accept_thread is not None and self._accept_thread.is_alive()

    def start(self) -> FaultProxy:
        """Binds a free port on 127.0.0.1 and starts accepting. Idempotent."""
        with self._lock:
            if self.running:
                return self
            self._stop.clear()
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self._port or 0))
            listener.listen(512)
            listener.settimeout(0.2)  # the accept loop checks the stop event this often
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._accept_thread = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
            self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops accepting, closes every connection and joins the threads (bounded by ``timeout``). Idempotent."""
        self._stop.set()
        with self._lock:
            listener, self._listener = self._listener, None
            conns = list(self._conns)
            threads = list(self._threads)
            accept, self._accept_thread = self._accept_thread, None
        if listener is not None:
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if accept is not None:
            accept.join(timeout)
        for t in threads:
            t.join(timeout / max(1, len(threads)))

    def reset_counters(self) -> ProxyCounters:
        """Returns the counters so far and starts new ones."""
        with self._lock:
            old, self.counters = self.counters, ProxyCounters()
        return old

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"FaultProxy({self._port and self.endpoint} -> {self.upstream[0]}:{self.upstream[1]}, "
            f"latency={self.latency}, fail_rate={self.fail_rate}, reset_rate={self.reset_rate}, {self.counters})"
        )

    # -- connections -----------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stop.is_set() and listener is not None:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(self.timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=self._serve, args=(conn,), name="faultproxy-conn", daemon=True)
            with self._lock:
                if self._stop.is_set():
                    conn.close()
                    break
                self._conns.add(conn)
                self._threads.add(t)
                self.counters.connections += 1
            t.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        up_reader: BinaryIO | None = None
        reader = client.makefile("rb", buffering=CHUNK)
        try:
            while not self._stop.is_set():
                try:
                    request = read_head(reader)
                except (Closed, OSError, ValueError):
                    return
                try:
                    if "100-continue" in request.headers.get("expect", "").lower():
                        # Answered here (the client then sends its body); not forwarded (SigV4 never signs Expect).
                        client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    body = read_request_body(reader, request)
                except (Closed, OSError, ValueError):
                    return
                with self._lock:
                    self.counters.requests += 1
                    draw = self._rng.random()
                    where = self.reset_at if self.reset_at != "any" else self._rng.choice(RESET_POINTS[:-1])
                if self.methods is not None and request.start.split(" ", 1)[0].upper() not in self.methods:
                    draw = 1.0  # no fault for this method
                if self.latency > 0 and self._stop.wait(self.latency):
                    return
                if draw < self.fail_rate:
                    self._send_slow_down(client, request)
                    continue
                cut = draw < self.fail_rate + self.reset_rate
                if cut and where == "request":
                    self._reset(client)
                    return
                if not cut and draw < self.fail_rate + self.reset_rate + self.stall_rate:
                    with self._lock:
                        self.counters.stalls += 1
                    self._stop.wait(self.stall_s)
                    return
                slow = not cut and draw < self.fail_rate + self.reset_rate + self.stall_rate + self.trickle_rate
                if upstream is None:
                    try:
                        upstream = socket.create_connection(self.upstream, timeout=self.timeout)
                    except OSError:
                        with self._lock:
                            self.counters.upstream_errors += 1
                        self._send_bad_gateway(client)
                        return
                    upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    up_reader = upstream.makefile("rb", buffering=CHUNK)
                    with self._lock:
                        self._conns.add(upstream)
                if cut:
                    with contextlib.suppress(Closed, OSError, ValueError):
                        self._forward_cut(client, upstream, up_reader, request, body, where)  # type: ignore[arg-type]
                    self._reset(client)
                    self._reset(upstream, count=False)  # the upstream must not wait for the rest either
                    return
                try:
                    keep = self._forward(client, upstream, up_reader, request, body, slow)  # type: ignore[arg-type]
                except (Closed, OSError, ValueError):
                    with self._lock:
                        self.counters.upstream_errors += 1
                    # The upstream broke mid-exchange: the client sees its connection closed, as with a real one.
                    return
                if not keep:
                    return
        finally:
            for stream in (reader, up_reader):  # makefile() objects keep the descriptor open until closed
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._conns.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _forward(
        self,
        client: socket.socket,
        upstream: socket.socket,
        up_reader: BinaryIO,
        request: Message,
        body: bytes,
        slow: bool = False,
    ) -> bool:
        """Relays one exchange (the response body trickled if ``slow``); returns whether both sides stay open."""
        upstream.sendall(request.head + body)
        with self._lock:
            self.counters.bytes_up += len(request.head) + len(body)
        while True:
            response = read_head(up_reader)
            status = int(response.start.split(" ", 2)[1])
            client.sendall(response.head)
            sent = len(response.head)
            if 100 <= status < 200:  # interim response: another one follows
                with self._lock:
                    self.counters.bytes_down += sent
                continue
            break
        method = request.start.split(" ", 1)[0].upper()
        no_body = method == "HEAD" or status in (204, 304)
        closes = "close" in response.headers.get("connection", "").lower()
        if not no_body:
            if slow:
                with self._lock:
                    self.counters.trickles += 1
            for piece in iter_body(up_reader, response):
                if slow:
                    trickle(client, piece, self.trickle_s, self._stop)
                else:
                    client.sendall(piece)
                sent += len(piece)
            if "content-length" not in response.headers and "chunked" not in response.headers.get(
                "transfer-encoding", ""
            ):
                closes = True  # read until close: the upstream connection is gone
        with self._lock:
            self.counters.forwarded += 1
            self.counters.bytes_down += sent
            self.counters.statuses[status] = self.counters.statuses.get(status, 0) + 1
        wants_close = "close" in request.headers.get("connection", "").lower()
        return not closes and not wants_close

    def _forward_cut(
        self,
        client: socket.socket,
        upstream: socket.socket,
        up_reader: BinaryIO,
        request: Message,
        body: bytes,
        where: str,
    ) -> None:
        """Relays one exchange up to the reset point ``where``; the caller then resets both connections."""
        if body and where in ("mid-body", "last-byte"):  # an upload: cut its body on the way to the server
            sent = request.head + body[: _cut_point(len(body), where)]
            upstream.sendall(sent)
            with self._lock:
                self.counters.bytes_up += len(sent)
            return
        upstream.sendall(request.head + body)
        response = read_head(up_reader)
        while 100 <= int(response.start.split(" ", 2)[1]) < 200:
            response = read_head(up_reader)
        if where == "headers":
            return
        method = request.start.split(" ", 1)[0].upper()
        wire = b"" if method == "HEAD" else b"".join(iter_body(up_reader, response))
        sent = response.head + wire[: _cut_point(len(wire), where)]
        client.sendall(sent)
        with self._lock:
            self.counters.bytes_down += len(sent)

    def _send_slow_down(self, client: socket.socket, request: Message) -> None:
        with self._lock:
            self.counters.injected_503 += 1
            n = self.counters.injected_503
        resource = request.start.split(" ")[1].encode("latin-1") if " " in request.start else b"/"
        body = _SLOW_DOWN_BODY % (resource.replace(b"&", b"&amp;").replace(b"<", b"&lt;"), n)
        head = (
            b"HTTP/1.1 503 Slow Down\r\n"
            b"Content-Type: application/xml\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: keep-alive\r\n"
            b"x-amz-request-id: faultproxy-%d\r\n"
            b"Server: faultproxy\r\n\r\n"
        ) % (len(body), n)
        client.sendall(head + body)
        with self._lock:
            self.counters.bytes_down += len(head) + len(body)

    def _send_bad_gateway(self, client: socket.socket) -> None:
        body = b"upstream unreachable"
        head = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        with contextlib.suppress(OSError):
            client.sendall(head + body)

    def _reset(self, sock: socket.socket | None, *, count: bool = True) -> None:
        if count:
            with self._lock:
                self.counters.resets += 1
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The caller's ``finally`` closes the socket: with linger 0 that sends RST instead of FIN.


def _cut_point(size: int, where: str) -> int:
    """Bytes of a ``size``-byte body that pass before a reset at ``where`` (``mid-body`` or ``last-byte``)."""
    return size // 2 if where == "mid-body" else max(0, size - 1)
