"""Single flight under real threads (issue 13 item 9): the attempts in flight live in one place
(:class:`dataio.cache.state.CacheState`); concurrent reads of one shard share one download, a failed download
wakes every waiting reader with its error, and the next read tries again."""

from __future__ import annotations

import threading
from pathlib import Path

from dataio.cache import CachedStore
from dataio.storage import LocalStore, StorageError
from tests.cache.remotes import CountingStore, shard_table

THREADS = 8
WAIT_S = 60


class FailFirstDownload(CountingStore):
    """The first read of ``path`` blocks until ``release`` is set, then fails."""

    def __init__(self, root: str, path: str) -> None:
        super().__init__(root)
        self.path = path
        self.release = threading.Event()
        self.started = threading.Event()
        self.failed = False

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if path == self.path and not self.failed:
            self.failed = True
            self.started.set()
            self.release.wait(WAIT_S)
            raise StorageError(f"{self.url(path)}: injected failure of the first download")
        return super().read_range(path, offset, length)


def _readers(store: CachedStore, path: str) -> tuple[list[threading.Thread], list[object]]:
    outcomes: list[object] = []
    lock = threading.Lock()

    def read() -> None:
        try:
            got: object = store.read_range(path, 100, 5000)
        except Exception as exc:
            got = exc
        with lock:
            outcomes.append(got)

    threads = [threading.Thread(target=read) for _ in range(THREADS)]
    for t in threads:
        t.start()
    return threads, outcomes


def _wait_until(cond, what: str) -> None:
    done = threading.Event()
    for _ in range(WAIT_S * 100):
        if cond():
            return
        done.wait(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def test_a_failed_download_wakes_every_waiter_with_its_error_and_the_next_read_retries(
    packed: Path, tmp_path: Path
) -> None:
    path = sorted(shard_table(packed))[1]
    remote = FailFirstDownload(str(packed), path)
    store = CachedStore(remote, tmp_path / "cache", 10**9, shard_table(packed), prefetch=0)
    threads, outcomes = _readers(store, path)
    assert remote.started.wait(WAIT_S)
    state = store._engine.state
    _wait_until(lambda: state.waiting(path) == THREADS - 1, "every other reader to wait for the download")
    remote.release.set()
    for t in threads:
        t.join(WAIT_S)
    assert len(outcomes) == THREADS
    assert all(isinstance(o, StorageError) for o in outcomes), outcomes
    assert len({id(o) for o in outcomes}) == 1  # one attempt: its error, shared by every waiter
    assert state.waiting(path) == 0 and state.inflight_paths() == []
    assert remote.bytes_read[path] == 0

    want = LocalStore(str(packed)).read_range(path, 100, 5000)
    threads, outcomes = _readers(store, path)  # the next reads try again: one download between them
    for t in threads:
        t.join(WAIT_S)
    assert outcomes == [want] * THREADS
    assert remote.bytes_read[path] == remote.size(path)
    assert store.stats().downloads == 1
    store.close()
