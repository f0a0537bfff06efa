"""One reader test suite run against every backend: local files, S3 through obstore (the default) and through
s3fs, and OSS (ossfs), real servers.

Every backend must return, for every sample, exactly the bytes of the local copy — through ``ds[i]``, through
``get_many``/``read_records`` (RangeReader: many threads, coalescing on and off), through raw
``Store.read_range`` calls — and must refuse ranges beyond the end of an object.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataio import ShardDataset, open_dataset
from dataio.storage import RangeReader, StorageError, Store, open_store

BACKENDS = ["local", "s3", "s3fs", "oss"]


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    options: dict[str, Any] | None

    def open(self, **kw: Any) -> ShardDataset:
        return open_dataset(self.url, storage_options=self.options, **kw)

    def store(self) -> Store:
        return open_store(self.url, self.options)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, packed: Path) -> Backend:
    if request.param == "local":
        return Backend("local", str(packed), None)
    remote = request.getfixturevalue(f"{request.param}_dataset")
    return Backend(request.param, remote.url, remote.options)


def test_same_manifest_and_record_ranges(backend: Backend, local: ShardDataset) -> None:
    with backend.open() as ds:
        assert ds.manifest == local.manifest
        assert len(ds) == len(local) and ds.classes == local.classes
        assert [ds.record_range(i) for i in range(len(ds))] == [local.record_range(i) for i in range(len(local))]
        assert ds.labels.tolist() == local.labels.tolist()  # index.parquet: a whole-object read


def test_every_sample_equals_the_local_copy(backend: Backend, local: ShardDataset, local_records: list[bytes]) -> None:
    with backend.open() as ds:
        for i in range(len(ds)):
            assert ds.read_record(i) == local_records[i], f"{backend.name}: sample {i}"
        assert ds[len(ds) - 1] == local[len(local) - 1]
        assert ds[-len(ds)] == local[0]


@pytest.mark.parametrize("threads", [1, 8])
def test_get_many_in_random_order(
    backend: Backend, local: ShardDataset, local_records: list[bytes], threads: int
) -> None:
    order = list(range(len(local))) * 2
    random.Random(threads).shuffle(order)
    with backend.open(threads=threads) as ds:
        assert list(ds.read_records(order)) == [local_records[i] for i in order]
        some = order[:7]
        assert list(ds.get_many(some)) == [local[i] for i in some]


def test_concurrent_reads_from_many_threads(backend: Backend, local_records: list[bytes]) -> None:
    """One dataset shared by 16 threads, each reading every sample in its own order (plus shard indexes)."""
    with backend.open() as ds:

        def worker(seed: int) -> list[int]:
            order = list(range(len(ds)))
            random.Random(seed).shuffle(order)
            return [i for i in order if ds.read_record(i) != local_records[i]]

        with ThreadPoolExecutor(16) as pool:
            bad = [i for result in pool.map(worker, range(16)) for i in result]
    assert bad == []


@pytest.mark.parametrize("coalesce_gap", [-1, 0, 64 * 1024])
@pytest.mark.parametrize("ordered", [True, False], ids=["sorted", "shuffled"])
def test_range_reader(
    backend: Backend, local: ShardDataset, local_records: list[bytes], coalesce_gap: int, ordered: bool
) -> None:
    requests = [local.record_range(i) for i in range(len(local))]
    order = list(range(len(requests)))
    if not ordered:
        random.Random(3).shuffle(order)
    store = backend.store()
    with RangeReader(store, threads=8, coalesce_gap=coalesce_gap) as reader:
        got = list(reader.read_many(requests[i] for i in order))
        assert got == [local_records[i] for i in order]
        stats = reader.stats()
        assert stats["requests"] == len(requests)
        if coalesce_gap < 0:
            assert stats["fetches"] == len(requests)  # never merged
        elif ordered:
            # Records of one shard are back to back: sorted requests merge into about one fetch per shard.
            assert stats["fetches"] < len(requests) / 2
        assert reader.read(*requests[5]) == local_records[5]
    store.close()


def test_read_range_refuses_ranges_beyond_the_end(backend: Backend, local: ShardDataset) -> None:
    entry = local.manifest.shards[0]
    size = entry.size
    with open_store(local.root) as ls, backend.store() as store:
        tail = ls.read_range(entry.path, size - 10, 10)
        assert store.read_range(entry.path, size - 10, 10) == tail  # the exact end is fine
        assert store.read_range(entry.path, 0, 20) == ls.read_range(entry.path, 0, 20)
        with pytest.raises(StorageError, match=r"shard-00000\.dio"):
            store.read_range(entry.path, size - 10, 11)  # one byte too many
        with pytest.raises(StorageError, match=r"shard-00000\.dio"):
            store.read_range(entry.path, size + 100, 5)  # starts past the end


def test_whole_object_reads(backend: Backend, packed: Path) -> None:
    with backend.store() as store:
        assert store.read("manifest.json") == (packed / "manifest.json").read_bytes()
        assert store.read("index.parquet") == (packed / "index.parquet").read_bytes()
        with pytest.raises(FileNotFoundError):
            store.read("no-such-object.bin")
