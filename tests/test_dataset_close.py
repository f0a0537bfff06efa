"""``ShardDataset.close()`` racing with reads on other threads (issue 13 item 9).

Real threads read (``ds[i]`` on several threads, ``__getitems__`` through the reader's thread pool) while
another thread closes the dataset. Before the fix, close() closed file descriptors under a ``pread`` in
flight: EBADF, or, once another file took the freed descriptor number, bytes of the wrong file; reads after
close() reopened the files. Now close() waits for the reads in flight, and every read that starts after it
raises :class:`~dataio.errors.ClosedError` naming the dataset.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import pytest

import dataio
from dataio.errors import ClosedError

ROUNDS = 12
READERS = 4  # threads calling ds[i]
BATCHERS = 2  # threads calling ds.__getitems__ (the reader's pool)
JOIN_S = 60


class _Race:
    """One round: readers hammer the dataset, close() runs in the middle, outcomes are counted."""

    def __init__(self, ds: dataio.ShardDataset, want: list[bytes], churn_dir: str) -> None:
        self.ds, self.want, self.churn_dir = ds, want, churn_dir
        self.outcomes: Counter[str] = Counter()
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.warm = threading.Barrier(READERS + BATCHERS + 1)
        self.closed = threading.Event()  # set once close() has returned
        self.stop = threading.Event()

    def note(self, outcome: str, problem: str = "") -> None:
        with self.lock:
            self.outcomes[outcome] += 1
            if problem and len(self.problems) < 10:
                self.problems.append(problem)

    def read(self, k: int, batch: bool) -> None:
        n = len(self.want)
        after = self.closed.is_set()
        idx = [(k + j) % n for j in range(5)] if batch else [k % n]
        try:
            got = self.ds.__getitems__(idx) if batch else [self.ds[idx[0]]]
        except ClosedError as exc:
            if "closed" not in str(exc) or self.ds.root not in str(exc):
                self.note("unclear", f"unclear error: {exc}")
            self.note("closed_error")
            return
        except Exception as exc:  # EBADF, short reads, a wrong file's bytes failing to decode
            self.note("unexpected", f"{type(exc).__name__}: {exc}")
            return
        if [s["image"] for s in got] != [self.want[i] for i in idx]:
            self.note("wrong_bytes", f"wrong bytes for samples {idx}")
        elif after:
            self.note("read_after_close", f"samples {idx} read after close() returned")
        else:
            self.note("ok")

    def worker(self, seed: int, batch: bool) -> None:
        k = seed * 7
        self.read(k, batch)
        self.warm.wait(JOIN_S)
        reads_after = 0
        while reads_after < 3 and not self.stop.is_set():
            k += 1
            self.read(k, batch)
            reads_after += self.closed.is_set()

    def churn(self) -> None:
        """Opens and closes other files, so that a descriptor number freed under a read gets reused."""
        path = os.path.join(self.churn_dir, "other")
        with open(path, "wb") as f:
            f.write(b"\x55" * 1_000_000)
        while not self.stop.is_set():
            fd = os.open(path, os.O_RDONLY)
            os.close(fd)

    def run(self) -> None:
        threads = [threading.Thread(target=self.worker, args=(i, False)) for i in range(READERS)]
        threads += [threading.Thread(target=self.worker, args=(READERS + i, True)) for i in range(BATCHERS)]
        churner = threading.Thread(target=self.churn)
        for t in [*threads, churner]:
            t.start()
        try:
            self.warm.wait(JOIN_S)
            self.ds.close()
            self.closed.set()
            for t in threads:
                t.join(JOIN_S)
        finally:
            self.stop.set()
            churner.join(JOIN_S)
        assert not any(t.is_alive() for t in [*threads, churner]), "a reader thread hung"


def _race(packed: Path, rounds: int, **kw) -> Counter[str]:
    probe = dataio.open_dataset(packed)
    want = [probe[i]["image"] for i in range(len(probe))]
    probe.close()
    total: Counter[str] = Counter()
    problems: list[str] = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads interleave often: close() lands between more reads' steps
    try:
        with tempfile.TemporaryDirectory() as churn_dir:
            for _ in range(rounds):
                race = _Race(dataio.open_dataset(packed, verify=False, **kw), want, churn_dir)
                race.run()
                total.update(race.outcomes)
                problems += race.problems
    finally:
        sys.setswitchinterval(switch)
    bad = {k: v for k, v in total.items() if k not in ("ok", "closed_error")}
    assert not bad, f"{bad} over {rounds} rounds, e.g. {problems[:5]}"
    return total


def test_close_waits_for_reads_in_flight_and_later_reads_fail_clearly(packed: Path) -> None:
    total = _race(packed, ROUNDS)
    assert total["closed_error"] >= ROUNDS * (READERS + BATCHERS)  # every thread read on after close()


def test_close_of_a_cached_dataset_waits_for_reads_in_flight(packed: Path, tmp_path: Path) -> None:
    total = _race(packed, ROUNDS // 2, cache_dir=tmp_path / "cache", cache_limit=10**9)
    assert total["closed_error"] >= ROUNDS // 2 * (READERS + BATCHERS)


def test_every_kind_of_read_after_close_names_the_dataset(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    ds[0]
    ds.close()
    ds.close()  # idempotent
    calls = {
        "ds[i]": lambda: ds[1],
        "__getitems__": lambda: ds.__getitems__([0, 1]),
        "read_records": lambda: list(ds.read_records([2])),
        "shard_index": lambda: ds.shard_index(len(ds.shard_sizes) - 1),
        "iter_shard": lambda: next(ds.iter_shard(0)),
        "index_table": ds.index_table,
        "prefetch": lambda: ds.prefetch([0]),
    }
    for name, call in calls.items():
        with pytest.raises(ClosedError, match="closed") as info:
            call()
        assert str(packed) in str(info.value), name
