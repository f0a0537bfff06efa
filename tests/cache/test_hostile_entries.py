"""Symlinks and special files inside the node-local cache (issue 13 item 5, the cache's part): what stands at a
cached shard's place and is not a regular file reached without a symlink (planted by another user of a shared
node, or pointing outside the cache) is never opened: it is removed, and the shard downloaded again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataio.cache import CachedStore
from dataio.storage import LocalStore
from tests.cache.remotes import shard_table
from tests.helpers import run_with_timeout


def _store(packed: Path, cache: Path) -> CachedStore:
    return CachedStore(LocalStore(str(packed)), cache, 10**9, shard_table(packed), prefetch=0)


def _cached(store: CachedStore, path: str) -> Path:
    _size, sha = shard_table(store.remote.root)[path]
    return Path(store.layout.data_path(store.layout.shard_name(path, sha)))


@pytest.fixture
def shard(packed: Path) -> str:
    return sorted(shard_table(packed))[1]


def test_a_symlinked_copy_pointing_outside_is_removed_and_fetched_again(
    packed: Path, tmp_path: Path, shard: str
) -> None:
    want = (packed / shard).read_bytes()
    outside = tmp_path / "outside"
    outside.write_bytes(bytes(b ^ 0xFF for b in want))  # the right size, other bytes
    store = _store(packed, tmp_path / "cache")
    copy = _cached(store, shard)
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.symlink_to(outside)

    assert store.read_range(shard, 100, 5000) == want[100:5100]  # not the link's target
    assert copy.is_file() and not copy.is_symlink() and copy.read_bytes() == want
    assert outside.read_bytes() == bytes(b ^ 0xFF for b in want)  # what it pointed to is left alone
    stats = store.stats()
    assert stats.refused == 1 and stats.downloads == 1
    store.close()


def test_a_symlinked_directory_on_the_way_is_removed(packed: Path, tmp_path: Path, shard: str) -> None:
    store = _store(packed, tmp_path / "cache")
    copy = _cached(store, shard)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / copy.name).write_bytes((packed / shard).read_bytes())  # even a right copy: never through a link
    link = Path(store.layout.data_dir) / shard.split("/")[0]
    link.symlink_to(elsewhere, target_is_directory=True)

    assert store.read(shard) == (packed / shard).read_bytes()
    assert not link.is_symlink() and link.is_dir() and copy.is_file()
    assert sorted(p.name for p in elsewhere.iterdir()) == [copy.name]  # nothing written or deleted out there
    assert store.stats().refused == 1
    store.close()


def test_a_fifo_at_the_copys_place_neither_hangs_nor_is_read(packed: Path, tmp_path: Path, shard: str) -> None:
    store = _store(packed, tmp_path / "cache")
    copy = _cached(store, shard)
    copy.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(copy)

    got = run_with_timeout(lambda: store.read_range(shard, 0, 64), fifo=copy)
    assert got == (packed / shard).read_bytes()[:64]
    assert copy.is_file() and store.stats().refused == 1
    store.close()


def test_a_tail_read_does_not_open_a_symlinked_copy(packed: Path, tmp_path: Path, shard: str) -> None:
    want = (packed / shard).read_bytes()
    outside = tmp_path / "outside"
    outside.write_bytes(b"\0" * len(want))
    store = _store(packed, tmp_path / "cache")
    copy = _cached(store, shard)
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.symlink_to(outside)
    assert store.read_range(shard, len(want) - 40, 40) == want[-40:]  # from the remote, not the link
    assert store.stats().remote_reads == 1
    store.close()
