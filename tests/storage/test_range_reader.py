"""RangeReader and batched dataset reads on local storage (the S3/OSS runs of the same reads live in
test_readers.py)."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataio import open_dataset
from dataio.errors import ChecksumError
from dataio.storage import LocalStore, RangeReader, StorageError, StorageNotFoundError
from dataio.storage.reader import coalesce

requests_strategy = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 5000), st.integers(1, 400)), min_size=0, max_size=60
)


@settings(max_examples=200, deadline=None)
@given(requests_strategy, st.integers(-1, 300), st.integers(1, 3000))
def test_coalesce_covers_every_request_exactly(reqs: list, gap: int, max_bytes: int) -> None:
    numbered = list(enumerate(reqs))
    fetches = coalesce(numbered, gap, max_bytes)
    seen = []
    for f in fetches:
        assert f.length <= max(max_bytes, max(length for _, _, length in f.parts))
        for num, start, length in f.parts:
            path, off, ln = reqs[num]
            assert (path, off, ln) == (f.path, f.offset + start, length)
            assert start >= 0 and start + length <= f.length
            seen.append(num)
        offs = sorted(reqs[n][1] for n, _, _ in f.parts)
        ends = sorted(reqs[n][1] + reqs[n][2] for n, _, _ in f.parts)
        if gap < 0:
            assert len(f.parts) == 1 or all(o <= e for o, e in zip(offs[1:], ends, strict=False))
    assert sorted(seen) == list(range(len(reqs)))


def test_coalesce_merges_near_and_keeps_far_apart() -> None:
    reqs = list(enumerate([("s", 0, 100), ("s", 150, 100), ("s", 10_000, 10), ("t", 250, 5)]))
    fetches = coalesce(reqs, gap=64, max_bytes=1 << 20)
    assert [(f.path, f.offset, f.length, len(f.parts)) for f in fetches] == [
        ("s", 0, 250, 2), ("s", 10_000, 10, 1), ("t", 250, 5, 1)]


def file_store(tmp_path: Path, size: int = 200_000) -> tuple[LocalStore, bytes]:
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    (tmp_path / "obj").write_bytes(data)
    return LocalStore(tmp_path), data


@pytest.mark.parametrize("gap", [-1, 0, 4096])
@pytest.mark.parametrize("threads", [1, 7])
def test_read_many_returns_every_range_in_order(tmp_path: Path, gap: int, threads: int) -> None:
    store, data = file_store(tmp_path)
    rng = np.random.default_rng(1)
    reqs = [("obj", int(o), int(n)) for o, n in zip(rng.integers(0, 190_000, 500), rng.integers(1, 9000, 500),
                                                        strict=True)]
    with RangeReader(store, threads=threads, coalesce_gap=gap, window=16) as reader:
        got = list(reader.read_many(reqs))
        stats = reader.stats()
    assert got == [data[o : o + n] for _, o, n in reqs]
    assert stats["requests"] == 500
    if gap > 0:
        assert stats["fetches"] < 500
    else:
        assert stats["fetches"] <= 500


def test_sequential_requests_coalesce_into_few_fetches(tmp_path: Path) -> None:
    store, data = file_store(tmp_path)
    reqs = [("obj", o, 1000) for o in range(0, 100_000, 1000)]
    with RangeReader(store, threads=4, coalesce_gap=0, window=64) as reader:
        assert b"".join(reader.read_many(reqs)) == data[:100_000]
        assert reader.stats()["fetches"] <= 8


def test_read_many_is_lazy_and_bounded(tmp_path: Path) -> None:
    store, _ = file_store(tmp_path)
    pulled = 0

    def requests():
        nonlocal pulled
        for i in range(10_000):
            pulled += 1
            yield ("obj", i, 10)

    with RangeReader(store, threads=2, window=32) as reader:
        it = reader.read_many(requests())
        next(it)
        assert pulled <= 33
        for _ in range(100):
            next(it)
        assert pulled <= 101 + 32


def test_errors_surface_with_their_original_traceback(tmp_path: Path) -> None:
    store, _ = file_store(tmp_path, 1000)
    reqs = [("obj", 0, 10), ("missing", 0, 10), ("obj", 10, 10)]
    with RangeReader(store, threads=2) as reader:
        it = reader.read_many(reqs)
        assert next(it) == (tmp_path / "obj").read_bytes()[:10]
        with pytest.raises(StorageNotFoundError) as err:
            next(it)
    assert "missing" in str(err.value) and isinstance(err.value, FileNotFoundError)
    assert "read_range" in "".join(traceback.format_tb(err.value.__traceback__))
    with RangeReader(store) as reader, pytest.raises(StorageError, match=r"got 100 bytes, the file ends at 1000"):
        list(reader.read_many([("obj", 900, 200)]))


def test_dataset_batched_reads_match_single_reads(packed: Path) -> None:
    ds = open_dataset(packed, threads=4)
    order = np.random.default_rng(3).permutation(len(ds))
    assert list(ds.read_records(order)) == [ds.read_record(int(i)) for i in order]
    assert list(ds.get_many([-1, 0, 5])) == [ds[-1], ds[0], ds[5]]
    with pytest.raises(IndexError):
        list(ds.read_records([len(ds)]))
    assert ds.reader.stats()["requests"] >= len(ds)


def test_batched_reads_verify_checksums(packed_copy: Path) -> None:
    ds = open_dataset(packed_copy)
    path, offset, length = ds.record_range(7)
    f = packed_copy / path
    data = bytearray(f.read_bytes())
    data[offset + length - 1] ^= 1
    f.write_bytes(data)
    fresh = open_dataset(packed_copy, threads=3)
    with pytest.raises(ChecksumError, match=f"{path}: sample"):
        list(fresh.read_records(range(len(fresh))))


def test_reader_threads_stop_on_close(tmp_path: Path) -> None:
    store, _ = file_store(tmp_path)
    before = threading.active_count()
    reader = RangeReader(store, threads=6)
    list(reader.read_many([("obj", i * 100, 50) for i in range(200)]))
    reader.close()
    reader.close()
    for t in threading.enumerate():
        if t.name.startswith("dataio-read"):
            t.join(timeout=5)
    assert threading.active_count() <= before


class BatchingStore(LocalStore):
    """A POSIX store that, like obstore, takes several ranges of one object per call; it records each call and
    the most requests it ever had in flight."""

    batch_reads = 4

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.calls: list[tuple[str, int]] = []
        self.in_flight = self.most_in_flight = 0
        self._count_lock = threading.Lock()

    def _enter(self, n: int) -> None:
        with self._count_lock:
            self.in_flight += n
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _leave(self, n: int) -> None:
        with self._count_lock:
            self.in_flight -= n

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        return self.read_ranges(path, [(offset, length)])[0]

    def read_ranges(self, path: str, ranges: list[tuple[int, int]]) -> list[bytes]:
        self._enter(len(ranges))
        try:
            with self._count_lock:
                self.calls.append((path, len(ranges)))
            threading.Event().wait(0.002)  # a remote store answers after a while: let calls overlap
            return [super(BatchingStore, self).read_range(path, o, n) for o, n in ranges]
        finally:
            self._leave(len(ranges))


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_batching_store_gets_groups_of_one_object_within_the_reads_in_flight(tmp_path: Path, threads: int) -> None:
    data = {}
    for name in ("a", "b", "c"):
        data[name] = np.random.default_rng(len(name) + ord(name)).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
        (tmp_path / name).write_bytes(data[name])
    rng = np.random.default_rng(5)
    reqs = [(str(rng.choice(["a", "b", "c"])), int(o), 100) for o in rng.integers(0, 49_000, 400)]
    store = BatchingStore(tmp_path)
    with RangeReader(store, threads=threads, coalesce_gap=-1) as reader:
        got = list(reader.read_many(reqs))
        stats = reader.stats()
    assert got == [data[p][o : o + n] for p, o, n in reqs]
    assert all(n <= min(store.batch_reads, threads) for _, n in store.calls)
    assert store.most_in_flight <= threads  # the bound holds in requests, not in calls
    assert sum(n for _, n in store.calls) == stats["fetches"]
    if threads > 1:
        assert len(store.calls) < stats["fetches"]  # fewer calls than GETs: the client runs the rest
    assert 1.0 <= stats["in_flight_mean"] <= threads and stats["in_flight"] == 0
