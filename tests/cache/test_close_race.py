"""``CachedStore.close()`` racing with reads on other threads (issue 13 item 9): the engine waits for the reads
of its pinned shards before it closes their descriptors; before, a ``pread`` could meet a closed descriptor
(EBADF) or one reused by another file (wrong bytes). Every read either returns the right bytes or raises
:class:`~dataio.errors.ClosedError` naming the dataset."""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from pathlib import Path

from dataio.cache import CachedStore
from dataio.errors import ClosedError
from dataio.storage import LocalStore
from tests.cache.remotes import shard_table

ROUNDS = 30
THREADS = 6
WAIT_S = 60


def _round(packed: Path, cache: Path, want: dict[str, bytes], churn: str, outcomes: Counter[str]) -> list[str]:
    store = CachedStore(LocalStore(str(packed)), cache, 10**9, shard_table(packed), prefetch=0, max_open=8)
    paths = sorted(want)
    problems: list[str] = []
    lock = threading.Lock()
    warm = threading.Barrier(THREADS + 1)
    closed, stop = threading.Event(), threading.Event()

    def note(outcome: str, problem: str = "") -> None:
        with lock:
            outcomes[outcome] += 1
            if problem:
                problems.append(problem)

    def read(k: int) -> None:
        path = paths[k % len(paths)]
        offset = (k * 7919) % (len(want[path]) - 4096)
        was_closed = closed.is_set()
        try:
            got = store.read_range(path, offset, 4096)
        except ClosedError as exc:
            note("closed", "") if str(packed) in str(exc) else note("unclear", str(exc))
        except Exception as exc:
            note("unexpected", f"{type(exc).__name__}: {exc}")
        else:
            if got != want[path][offset : offset + 4096]:
                note("wrong_bytes", f"{path} [{offset}, +4096)")
            elif was_closed:
                note("read_after_close", f"{path} read after close() returned")
            else:
                note("ok")

    def reader(i: int) -> None:
        for j in range(len(paths)):  # every shard opened and pinned
            read(i + j)
        warm.wait(WAIT_S)
        k, after = i, 0
        while after < 3 and not stop.is_set():
            read(k)
            k += 1
            after += closed.is_set()

    def churner() -> None:
        while not stop.is_set():
            os.close(os.open(churn, os.O_RDONLY))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(THREADS)]
    other = threading.Thread(target=churner)
    for t in [*threads, other]:
        t.start()
    try:
        warm.wait(WAIT_S)
        store.close()
        closed.set()
        for t in threads:
            t.join(WAIT_S)
    finally:
        stop.set()
        other.join(WAIT_S)
    return problems


def test_close_waits_for_the_reads_of_pinned_shards(packed: Path, tmp_path: Path) -> None:
    want = {p: (packed / p).read_bytes() for p in shard_table(packed)}
    churn = tmp_path / "other"
    churn.write_bytes(b"\x55" * 100_000)
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave often: a close() lands between more reads' steps
    try:
        for i in range(ROUNDS):
            problems += _round(packed, tmp_path / f"cache{i % 2}", want, str(churn), outcomes)
    finally:
        sys.setswitchinterval(switch)
    bad = {k: v for k, v in outcomes.items() if k not in ("ok", "closed")}
    assert not bad, f"{bad} in {ROUNDS} rounds, e.g. {problems[:5]}"
    assert outcomes["closed"] >= ROUNDS * THREADS
