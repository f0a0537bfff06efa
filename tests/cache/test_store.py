"""CachedStore over a real packed dataset (LocalStore and memory:// remotes), in one process."""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import uuid
from pathlib import Path

import pytest

from dataio.cache import CachedStore
from dataio.cache.layout import dataset_key
from dataio.cache.locks import is_locked
from dataio.cache.policy import simulate
from dataio.cache.space import scan
from dataio.errors import ChecksumError
from dataio.storage import FsspecStore, StorageError, open_store
from tests.cache.remotes import CountingStore, shard_table, verify_cache_dir


def cached(remote, cache_dir: Path, limit: int = 10**9, **kw) -> CachedStore:
    return CachedStore(remote, cache_dir, limit, shard_table(remote.root), **kw)


def shard_paths(packed: Path) -> list[str]:
    return sorted(shard_table(packed))


def test_serves_the_remote_bytes_and_passes_other_paths_through(packed: Path, tmp_path: Path) -> None:
    remote = open_store(str(packed))
    store = cached(open_store(str(packed)), tmp_path / "cache", prefetch=0)
    paths = shard_paths(packed)
    assert len(paths) >= 4
    for p in paths:
        size = remote.size(p)
        assert store.size(p) == size and store.exists(p)
        assert store.read(p) == remote.read(p)
        assert store.read_range(p, 7, 1000) == remote.read_range(p, 7, 1000)
        assert store.read_range(p, size - 32, 32) == remote.read_range(p, size - 32, 32)
        with store.open_stream(p) as f:
            assert f.read() == remote.read(p)
    assert store.read("manifest.json") == remote.read("manifest.json")
    assert store.read_range("index.parquet", 0, 4) == b"PAR1"
    with pytest.raises(StorageError, match="outside"):
        store.read_range(paths[0], remote.size(paths[0]) - 1, 2)
    with pytest.raises(StorageError, match="read-only"):
        store.delete(paths[0])
    s = store.stats()
    assert s.downloads == len(paths) and s.misses == len(paths)
    assert s.bytes_downloaded == sum(remote.size(p) for p in paths)
    assert verify_cache_dir(tmp_path / "cache", shard_table(packed)) == {"shards": len(paths), "temp": 0}
    store.close()
    store.close()  # idempotent

    again = cached(open_store(str(packed)), tmp_path / "cache", prefetch=0)
    assert again.read(paths[1]) == remote.read(paths[1])
    assert again.stats().downloads == 0 and again.stats().hits == 1
    again.close()


def test_memory_remote(packed: Path, tmp_path: Path) -> None:
    url = f"memory://cache-test-{uuid.uuid4().hex[:8]}"
    remote = FsspecStore(url)
    for f in packed.rglob("*"):
        if f.is_file() and ".dataio-pack" not in f.parts:
            remote.write_bytes(f.relative_to(packed).as_posix(), f.read_bytes())
    store = CachedStore(remote, tmp_path / "cache", 10**9, shard_table(packed), prefetch=1)
    paths = shard_paths(packed)
    store.set_access_order(paths)
    assert store.wait_prefetched(20)
    assert all(store.read(p) == (packed / p).read_bytes() for p in paths)
    assert store.stats().prefetched == len(paths) and store.stats().misses == 0
    store.close()
    assert os.listdir(tmp_path / "cache") == [dataset_key(url)]


def test_corrupt_remote_shard_is_detected_and_never_cached(packed_copy: Path, tmp_path: Path) -> None:
    paths = shard_paths(packed_copy)
    shards = shard_table(packed_copy)  # the manifest's checksums, before the corruption
    bad = packed_copy / paths[2]
    blob = bytearray(bad.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    bad.write_bytes(bytes(blob))
    store = CachedStore(open_store(str(packed_copy)), tmp_path / "cache", 10**9, shards, prefetch=1)
    with pytest.raises(ChecksumError, match=paths[2]) as info:
        store.read_range(paths[2], 0, 10)
    assert info.value.shard == paths[2]
    store.set_access_order(paths)  # the prefetcher meets it too: its error is raised by the read
    assert store.wait_prefetched(20)
    assert store.stats().errors == 1
    with pytest.raises(ChecksumError, match="sha256"):
        store.read(paths[2])
    assert store.read(paths[3]) == (packed_copy / paths[3]).read_bytes()
    found = verify_cache_dir(tmp_path / "cache", shards)
    assert found == {"shards": len(paths) - 1, "temp": 0}
    store.close()


def test_one_download_when_many_threads_ask_at_once(packed: Path, tmp_path: Path) -> None:
    remote = CountingStore(str(packed))
    store = cached(remote, tmp_path / "cache", prefetch=0)
    path = shard_paths(packed)[1]
    size = remote.size(path)
    barrier = threading.Barrier(8)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            barrier.wait(10)
            results.append(store.read_range(path, 100, 5000))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 8 and len(set(results)) == 1
    assert remote.bytes_read[path] == size  # downloaded exactly once
    assert store.stats().downloads == 1 and store.stats().reads == 8
    store.close()


def test_prefetch_fetches_ahead_in_order(packed: Path, tmp_path: Path) -> None:
    remote = CountingStore(str(packed))
    store = cached(remote, tmp_path / "cache", prefetch=1)
    paths = shard_paths(packed)
    order = [paths[3], paths[0], paths[2], paths[1]]
    store.set_access_order(order)
    assert store.wait_prefetched(20)
    assert remote.first_reads == order  # fetched before any read, in the order given
    for p in order:
        assert store.read(p) == (packed / p).read_bytes()
    s = store.stats()
    assert s.prefetched == 4 and s.hits == 4 and s.misses == 0 and s.waited_seconds == 0
    store.close()


def test_prefetch_stays_under_the_limit_and_follows_the_reader(packed: Path, tmp_path: Path) -> None:
    remote = CountingStore(str(packed))
    paths = shard_paths(packed)
    sizes = {p: remote.size(p) for p in paths}
    limit = sizes[paths[0]] + sizes[paths[1]] + max(sizes.values()) // 2  # two shards and a half
    store = cached(remote, tmp_path / "cache", limit, prefetch=1, max_open=1)
    layout = store.layout
    store.set_access_order(paths)
    assert store.wait_prefetched(20)
    assert remote.first_reads == paths[:2]  # only what fits
    for i, p in enumerate(paths):
        assert store.wait_prefetched(20)
        assert scan(layout).total <= limit
        assert store.read_range(p, 0, 64) == (packed / p).read_bytes()[:64]
        assert remote.first_reads[: i + 1] == paths[: i + 1]
    s = store.stats()
    assert s.misses == 0 and s.hits == len(paths) and s.over_limit == 0
    assert s.bytes_downloaded == sum(sizes.values())  # each shard once
    assert s.evictions >= len(paths) - 3  # the last shard is small
    store.close()


def test_pinned_shard_is_never_evicted(packed: Path, tmp_path: Path) -> None:
    paths = shard_paths(packed)
    cache = tmp_path / "cache"
    reader = cached(open_store(str(packed)), cache, prefetch=0, max_open=1)
    with reader.open_stream(paths[0]) as stream:  # pinned while the stream is open
        stream.read(10)
        other = cached(open_store(str(packed)), cache, 1, prefetch=0)  # a 1-byte limit: evicts everything
        for p in paths[1:]:
            assert other.read_range(p, 0, 8) == (packed / p).read_bytes()[:8]
        assert (cache / reader.layout.key / "data" / f"{paths[0]}.{shard_table(packed)[paths[0]][1][:16]}").exists()
        assert other.stats().over_limit >= 1
        assert stream.read() == (packed / paths[0]).read_bytes()[10:]
    other.close()
    reader.close()


def test_bigger_than_the_limit_is_served_then_evicted_first(packed: Path, tmp_path: Path) -> None:
    paths = shard_paths(packed)
    store = cached(open_store(str(packed)), tmp_path / "cache", 1000, prefetch=0, max_open=1)
    for p in paths[:3]:
        assert store.read(p) == (packed / p).read_bytes()
    assert [r.name[:22] for r in scan(store.layout).residents] == [paths[2]]  # the others went first
    store.close()


def test_belady_across_plans_keeps_what_another_process_needs(packed: Path, tmp_path: Path) -> None:
    paths = shard_paths(packed)
    s0, s1, s2, s3 = paths[:4]
    sizes = {p: os.path.getsize(packed / p) for p in paths}
    limit = max(sizes[s0] + sizes[s1] + sizes[s2], sizes[s0] + sizes[s1] + sizes[s3])
    cache = tmp_path / "cache"
    a = cached(open_store(str(packed)), cache, limit, prefetch=0, max_open=1)
    b = cached(open_store(str(packed)), cache, limit, prefetch=0, max_open=1)
    for p in (s0, s1, s2):
        a.read_range(p, 0, 1)
    a.read_range(s0, 0, 1)  # unpin s2; by recency s1 is now the oldest
    b.set_access_order([s1])  # another "process" will need s1
    a.set_access_order([s3, s0])
    a.read_range(s3, 0, 1)
    names = {r.name.rsplit(".", 1)[0] for r in scan(a.layout).residents}
    assert names == {s0, s1, s3}  # s2 (needed by nobody) went, not the older s1
    b.close()  # plan withdrawn: now s1 is needed by nobody
    a.set_access_order([s2, s3])
    a.read_range(s2, 0, 1)
    names = {r.name.rsplit(".", 1)[0] for r in scan(a.layout).residents}
    assert s1 not in names and {s2, s3} <= names
    a.close()


def test_lru_policy_thrashes_on_cyclic_reads(packed: Path, tmp_path: Path) -> None:
    paths = shard_paths(packed)
    total = sum(os.path.getsize(packed / p) for p in paths)
    limit = total * 6 // 10
    result = {}
    for policy in ("lru", "belady"):
        store = cached(open_store(str(packed)), tmp_path / policy, limit, policy=policy, prefetch=0, max_open=1)
        store.set_access_order(paths * 3)  # three epochs, known ahead
        for _epoch in range(3):
            for p in paths:
                store.read_range(p, 0, 1)
        result[policy] = store.stats().bytes_downloaded
        store.close()
    assert result["lru"] == 3 * total  # every read misses
    assert result["belady"] < 0.75 * result["lru"]
    seq = list(range(len(paths))) * 3
    sizes = [os.path.getsize(packed / p) for p in paths]
    assert result["belady"] == simulate("belady", seq, sizes, limit)  # the store does what the model says


def test_pickled_copy_reports_progress_to_the_owner(packed: Path, tmp_path: Path) -> None:
    paths = shard_paths(packed)
    owner = cached(open_store(str(packed)), tmp_path / "cache", prefetch=0)
    owner.set_access_order(paths)
    worker = pickle.loads(pickle.dumps(owner))  # what a spawned DataLoader worker gets
    assert worker._engine.tracker.parent_plan == owner._engine.tracker.plan.id
    assert worker.read(paths[0]) == (packed / paths[0]).read_bytes()
    owner._engine.refresh_position()
    assert owner._engine.tracker.plan.cursor == 1  # the owner adopted the worker's position
    worker.close()
    owner.close()


def test_fork_child_does_not_keep_the_parents_locks(packed: Path, tmp_path: Path) -> None:
    import multiprocessing

    from tests.cache.remotes import forked_child_waits

    paths = shard_paths(packed)
    store = cached(open_store(str(packed)), tmp_path / "cache", prefetch=0)
    store.read_range(paths[0], 0, 1)  # pinned by this process
    data_file = os.path.join(store.layout.data_dir, f"{paths[0]}.{shard_table(packed)[paths[0]][1][:16]}")
    assert is_locked(data_file)
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=forked_child_waits, args=(ready, release))
    child.start()
    try:
        assert ready.wait(20)
        store.close()
        assert is_locked(data_file) is False  # the live child did not inherit the pin
    finally:
        release.set()
        child.join(20)
    assert child.exitcode == 0


def test_options_are_validated(packed: Path, tmp_path: Path) -> None:
    remote = open_store(str(packed))
    with pytest.raises(ValueError, match="policy"):
        cached(remote, tmp_path, policy="fifo")
    with pytest.raises(ValueError, match="limit"):
        cached(remote, tmp_path, -1)
    store = cached(remote, tmp_path, prefetch=0)
    with pytest.raises(ValueError, match="not a shard"):
        store.set_access_order(["index.parquet"])
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.read_range(shard_paths(packed)[0], 0, 1)


def test_cached_names_carry_the_checksum(packed: Path, tmp_path: Path) -> None:
    store = cached(open_store(str(packed)), tmp_path / "cache", prefetch=0)
    p = shard_paths(packed)[0]
    store.read_range(p, 0, 1)
    sha = hashlib.sha256((packed / p).read_bytes()).hexdigest()
    assert os.path.exists(os.path.join(store.layout.data_dir, f"{p}.{sha[:16]}"))
    store.close()


def test_dataset_prefetch_reads_indexes_without_downloading_every_shard(packed: Path, tmp_path: Path) -> None:
    from dataio.dataset import ShardDataset
    from dataio.manifest_file import load_manifest

    remote = CountingStore(str(packed))
    manifest = load_manifest(remote)
    paths = [s.path for s in manifest.shards]
    limit = sum(s.size for s in manifest.shards) // 2
    store = CachedStore(remote, tmp_path / "cache", limit, shard_table(packed), prefetch=0)
    ds = ShardDataset(store, manifest)
    ds.prefetch(range(len(paths)))  # loads every shard's index: through to the remote, nothing downloaded
    assert store.stats().downloads == 0 and store.stats().remote_reads == len(paths)
    assert store._engine.tracker.plan.cursor == 0  # index reads are not reads of the shard
    direct = ShardDataset(open_store(str(packed)), manifest)
    assert [ds[i] for i in range(len(ds))] == [direct[i] for i in range(len(ds))]
    s = store.stats()
    assert s.downloads == len(paths) and s.bytes_downloaded == sum(x.size for x in manifest.shards)
    assert s.over_limit == 0
    store.close()
