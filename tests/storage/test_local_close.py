"""``LocalStore.close()`` is final and never closes a descriptor under a read in flight (issue 19 item 14)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from dataio.errors import ClosedError
from dataio.storage import LocalStore


def _open_fds_to(folder: Path) -> list[str]:
    """Targets of this process's open descriptors that lie under ``folder``."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            out.append(target)
    return out


def test_reads_after_close_raise_closed_error_and_open_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"0123456789")
    store = LocalStore(tmp_path)
    assert store.read_range("a.bin", 2, 3) == b"234"
    store.close()
    assert _open_fds_to(tmp_path) == []
    reads = {
        "read_range": lambda: store.read_range("a.bin", 0, 4),
        "read_ranges": lambda: store.read_ranges("a.bin", [(0, 1), (5, 2)]),
        "read": lambda: store.read("a.bin"),
        "read_limited": lambda: store.read_limited("a.bin", 100),
        "size": lambda: store.size("a.bin"),
        "exists": lambda: store.exists("a.bin"),
        "open_stream": lambda: store.open_stream("a.bin"),
    }
    for name, read in reads.items():
        with pytest.raises(ClosedError, match=f"store {tmp_path} is closed") as info:
            read()
        assert isinstance(info.value, RuntimeError), name
    assert _open_fds_to(tmp_path) == [], "a read after close() opened a file again"
    store.close()  # idempotent


def test_close_waits_for_reads_in_flight(tmp_path: Path) -> None:
    """Eight threads read 64 files while the main thread closes the store: every read returns the right bytes
    or raises ClosedError; none meets a closed (EBADF) or reused descriptor."""
    blobs = {f"f{i:02d}.bin": bytes([i]) * 4096 for i in range(64)}
    for name, blob in blobs.items():
        (tmp_path / name).write_bytes(blob)
    for _round in range(5):
        store = LocalStore(tmp_path)
        started = threading.Barrier(9)
        bad: list[object] = []

        def reader(
            seed: int, store: LocalStore = store, started: threading.Barrier = started, bad: list[object] = bad
        ) -> None:
            started.wait(10)
            names = list(blobs)
            i = seed
            while True:
                name = names[i % len(names)]
                i += 7
                try:
                    data = store.read_range(name, 100, 1000)
                except ClosedError:
                    return
                except BaseException as exc:  # EBADF, short read: the race this test is about
                    bad.append(exc)
                    return
                if data != blobs[name][100:1100]:
                    bad.append(f"wrong bytes from {name}")
                    return

        threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in range(8)]
        for t in threads:
            t.start()
        started.wait(10)
        store.close()
        # Unrelated files opened now may take the numbers of the store's closed descriptors.
        others = [os.open(tmp_path / name, os.O_RDONLY) for name in list(blobs)[:16]]
        for t in threads:
            t.join(10)
        for fd in others:
            os.close(fd)
        assert not any(t.is_alive() for t in threads), "a reader hung after close()"
        assert bad == []
        assert _open_fds_to(tmp_path) == []
