"""ReadGate (dataio/gate.py): close() waits for reads in flight, refuses later ones, and when the reads outlast
its timeout leaves the release to the last of them (issue 13 item 9)."""

from __future__ import annotations

import threading

import pytest

from dataio.errors import ClosedError
from dataio.gate import ReadGate


def test_release_waits_for_the_last_read_when_close_times_out() -> None:
    gate = ReadGate("dataset /somewhere")
    released: list[str] = []
    inside, leave = threading.Event(), threading.Event()

    def read() -> None:
        with gate.reading():
            inside.set()
            leave.wait(60)
            released.append("read done")

    t = threading.Thread(target=read)
    t.start()
    assert inside.wait(60)
    assert gate.close(lambda: released.append("released"), timeout=0.01) is False  # the read is still held
    assert released == [] and gate.active == 1
    with pytest.raises(ClosedError, match="dataset /somewhere is closed"), gate.reading():
        pass
    leave.set()
    t.join(60)
    assert released == ["read done", "released"]  # by the read, as it left
    assert gate.close(lambda: released.append("again"), timeout=1) is True  # idempotent: once over all calls
    assert released == ["read done", "released"]


def test_close_without_reads_releases_at_once() -> None:
    gate = ReadGate("store x")
    calls = []
    with gate.reading():
        pass
    assert gate.close(lambda: calls.append(1), timeout=1) and calls == [1]
    assert gate.closed
    with pytest.raises(ClosedError, match="store x"):
        gate.check()
