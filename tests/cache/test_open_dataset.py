"""``open_dataset(url, cache_dir=…, cache_limit=…)``: the cache behind the dataset API, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import dataio
from dataio.cache import CachedStore


def test_cached_dataset_reads_the_same_bytes_within_the_limit(packed: Path, tmp_path: Path) -> None:
    plain = dataio.open_dataset(packed)
    total = int(plain.shard_nbytes.sum())
    limit = int(plain.shard_nbytes.max()) * 3
    assert limit < total
    ds = dataio.open_dataset(str(packed), cache_dir=tmp_path / "cache", cache_limit=limit)
    assert isinstance(ds.store, CachedStore)
    sampler = dataio.DistributedShuffleSampler(ds, "shard", seed=1)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        indices = sampler.epoch_indices()
        ds.prefetch(np.concatenate([sampler.shard_order(indices), sampler.shard_order(indices)]))
        assert list(ds.read_records(indices)) == list(plain.read_records(indices))
    stats = ds.store.stats()
    assert stats.downloads >= len(plain.shard_sizes) and stats.errors == 0
    cached = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.dio") if p.is_file())
    assert cached <= limit


def test_cache_cli_stats_and_clear(packed: Path, tmp_path: Path) -> None:
    from dataio.cli import main

    ds = dataio.open_dataset(packed, cache_dir=tmp_path / "c")
    assert [ds[i] for i in range(len(ds))] == [dataio.open_dataset(packed)[i] for i in range(len(ds))]
    ds.close()
    assert main(["cache", "stats", str(tmp_path / "c")]) == 0
    assert main(["cache", "clear", str(tmp_path / "c")]) == 0
    assert not [p for p in (tmp_path / "c").rglob("*.dio") if p.is_file()]
