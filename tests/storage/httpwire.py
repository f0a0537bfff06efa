"""HTTP/1.1 framing for the fault proxy: start line and headers, and bodies exactly as framed on the wire."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAX_LINE = 64 * 1024
MAX_HEADERS = 200
CHUNK = 256 * 1024


class Closed(Exception):
    """The peer closed the connection (or the proxy is stopping)."""


@dataclass
class Message:
    head: bytes  # start line + headers + CRLF CRLF, exactly as received (Expect removed from requests)
    start: str
    headers: dict[str, str]  # lower-case names; last value wins


def readline(reader: BinaryIO) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise Closed
    if len(line) > MAX_LINE:
        raise ValueError("header line too long")
    return line


def read_head(reader: BinaryIO) -> Message:
    """Reads a start line and headers; drops ``Expect`` from requests (the proxy reads bodies itself)."""
    start = readline(reader)
    while start in (b"\r\n", b"\n"):  # tolerated stray CRLF between messages (RFC 9112 §2.2)
        start = readline(reader)
    lines = [start]
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS):
        line = readline(reader)
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        headers[key] = value.strip()
        if key == "expect" and not start.startswith(b"HTTP/"):
            continue
        lines.append(line)
    else:
        raise ValueError("too many header lines")
    lines.append(b"\r\n")
    return Message(b"".join(lines), start.decode("latin-1").strip(), headers)


def read_request_body(reader: BinaryIO, request: Message) -> bytes:
    return b"".join(iter_body(reader, request, until_close=False))


def read_exactly(reader: BinaryIO, count: int) -> Iterator[bytes]:
    """Yields exactly ``count`` bytes of ``reader`` in pieces; :class:`Closed` if the peer closes first."""
    while count:
        piece = reader.read(min(count, CHUNK))
        if not piece:
            raise Closed
        count -= len(piece)
        yield piece


def iter_body(reader: BinaryIO, message: Message, until_close: bool = True) -> Iterator[bytes]:
    """Yields a message body exactly as framed on the wire (chunk sizes and trailers included)."""
    if "chunked" in message.headers.get("transfer-encoding", "").lower():
        while True:
            size_line = readline(reader)
            yield size_line
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while True:  # trailers, then the final CRLF
                    line = readline(reader)
                    yield line
                    if line in (b"\r\n", b"\n"):
                        return
            yield from read_exactly(reader, size + 2)  # data + CRLF
    elif "content-length" in message.headers:
        yield from read_exactly(reader, int(message.headers["content-length"]))
    elif until_close:
        while True:
            piece = reader.read1(CHUNK)  # type: ignore[attr-defined]
            if not piece:
                return
            yield piece


def trickle(sock: socket.socket, data: bytes, interval: float, stop: threading.Event) -> None:
    """Sends ``data`` one byte every ``interval`` seconds (a server trickling its body); :class:`Closed` when
    ``stop`` is set."""
    for i in range(len(data)):
        if stop.wait(interval):
            raise Closed
        sock.sendall(data[i : i + 1])
