"""Shared test helpers.

``assert_state_roundtrip`` is the one state_dict round-trip check for every resumable object in dataio
(sampler, loader, cache, ...). Usage::

    from tests.helpers import assert_state_roundtrip

    assert_state_roundtrip(
        make=lambda: DistributedShuffleSampler(ds, "global", world_size=1, rank=0),
        consume=lambda s, k: take(s, k),  # take k items (k=None: to the end), return them as a list
        prefix=10,
    )

To resume on a different configuration (e.g. another world size), pass ``make_resumed`` and, when the
two continuations may legitimately differ in some way (padding), a ``compare`` function.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

__all__ = [
    "Resumable",
    "assert_plain_data",
    "assert_state_roundtrip",
    "edit_manifest",
    "jpeg_with_size",
    "run_with_timeout",
]


class Resumable(Protocol):
    """Anything with torch-style ``state_dict()`` / ``load_state_dict(state)``."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


T = TypeVar("T", bound=Resumable)


def assert_plain_data(value: Any, path: str = "state") -> None:
    """Assert ``value`` is JSON-like plain data: dict (str keys), list, str, int, float, bool or None."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain_data(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{path}: key {key!r} is not a str"
            assert_plain_data(item, f"{path}[{key!r}]")
        return
    raise AssertionError(f"{path} is a {type(value).__module__}.{type(value).__name__}, not plain data")


def _equal(resumed: Sequence[Any], expected: Sequence[Any]) -> None:
    assert list(resumed) == list(expected), "the resumed object does not continue where the original stopped"


def assert_state_roundtrip(
    make: Callable[[], T],
    consume: Callable[[T, int | None], Sequence[Any]],
    *,
    prefix: int,
    make_resumed: Callable[[], T] | None = None,
    compare: Callable[[Sequence[Any], Sequence[Any]], None] = _equal,
) -> dict[str, Any]:
    """Check that ``state_dict`` / ``load_state_dict`` resume exactly.

    Steps: build ``a = make()``; consume ``prefix`` items; take ``state = a.state_dict()`` and check
    that it is plain data that survives a JSON round trip; let ``a`` produce its continuation
    ``consume(a, None)``; build ``b`` (``make_resumed()``, default ``make()``), load the JSON-decoded
    state, check the loaded state is not mutated (and, for the same configuration, that ``b`` reports
    the same state back) and ``compare(consume(b, None), continuation_of_a)``.

    Args:
        make: Builds the original object.
        consume: ``consume(obj, k)`` makes ``obj`` produce ``k`` more items (``None``: all remaining)
            and returns them.
        prefix: Items consumed before the state is taken.
        make_resumed: Builds the object that resumes (default: ``make``).
        compare: ``compare(resumed, original)`` raises AssertionError when the continuations differ
            (default: equality).

    Returns:
        The state dict (for further checks).
    """
    a = make()
    consume(a, prefix)
    state = a.state_dict()
    assert_plain_data(state)
    encoded = json.dumps(state, sort_keys=True)
    assert json.loads(encoded) == state, "state does not survive a JSON round trip"
    expected = list(consume(a, None))
    b = (make_resumed or make)()
    loaded = json.loads(encoded)
    snapshot = copy.deepcopy(loaded)
    b.load_state_dict(loaded)
    assert loaded == snapshot, "load_state_dict mutated its argument"
    if make_resumed is None:
        assert b.state_dict() == state, "a freshly loaded object reports a different state"
    compare(list(consume(b, None)), expected)
    return state


def run_with_timeout(fn: Callable[[], Any], fifo: Path | None = None, seconds: float = 20.0) -> Any:
    """Runs ``fn`` in a thread; a hang fails the test (and a reader blocked on ``fifo`` is released)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if fifo is not None:  # release a reader blocked opening the FIFO, then its read sees EOF
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        t.join(5)
        pytest.fail(f"hung for {seconds} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def edit_manifest(root: Path, change: Callable[[dict[str, Any]], Any], *, seal: bool = True) -> dict[str, Any]:
    """Applies ``change(doc)`` to ``root/manifest.json`` and writes it back sealed again (a deliberate edit, as a
    tool would make it), or with ``seal=False`` without its ``manifest_sha256`` (a manifest as an older dataio
    wrote it). Returns the document written."""
    from dataio.format import seal_manifest
    from dataio.format.manifest import CHECKSUM_KEY

    path = Path(root) / "manifest.json"
    doc = json.loads(path.read_text())
    change(doc)
    doc = seal_manifest(doc) if seal else {k: v for k, v in doc.items() if k != CHECKSUM_KEY}
    path.write_text(json.dumps(doc))
    return doc


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG ``data`` with its frame header (SOF0/1/2) declaring ``width`` x ``height`` (pixels unchanged)."""
    import struct

    i = 2
    while i + 4 <= len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: i + 5] + struct.pack(">HH", height, width) + data[i + 9 :]
        i += 2 + length
    raise AssertionError("no SOF marker")
