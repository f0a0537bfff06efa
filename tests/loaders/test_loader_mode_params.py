"""``DataLoader(shuffle_mode=...)`` takes the modes' parameters as the sampler does (issue 20, item 9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio import DistributedShuffleSampler


def test_block_and_shard_parameters_reach_the_sampler(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=4, shuffle_mode="block", block_size=4, window=2, seed=3)
    assert loader.sampler.mode_params == {"block_size": 4, "window": 2}
    same = DistributedShuffleSampler(ds, "block", seed=3, block_size=4, window=2)
    assert np.array_equal(loader.sampler.epoch_indices(), same.epoch_indices())
    shard = dataio.DataLoader(ds, batch_size=4, shuffle_mode="shard", buffer_size=8, seed=3)
    assert shard.sampler.mode_params == {"buffer_size": 8}


def test_parameters_of_another_mode_or_without_a_mode_are_refused(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    with pytest.raises(ValueError, match=r"shuffle_mode='shard' has no parameter window"):
        dataio.DataLoader(ds, shuffle_mode="shard", window=4)
    with pytest.raises(ValueError, match=r"block_size= need shuffle_mode="):
        dataio.DataLoader(ds, block_size=4)
    sampler = DistributedShuffleSampler(ds, "block", seed=0)
    with pytest.raises(ValueError, match="not a given sampler"):
        dataio.DataLoader(ds, sampler=sampler, shuffle_mode="block", block_size=4)
    with pytest.raises(ValueError, match="block_size must be"):
        dataio.DataLoader(ds, shuffle_mode="block", block_size=0)


def test_stats_are_plain_data_with_the_cache(packed: Path, tmp_path: Path) -> None:
    """``stats()`` is plain dicts throughout (``"cache"`` was a dataclass): json round-trips it."""
    import json

    ds = dataio.open_dataset(packed, cache_dir=tmp_path / "cache")
    loader = dataio.DataLoader(ds, batch_size=8, pipeline=dataio.ImagePipeline(train=False, size=32), num_workers=1)
    for _ in loader:
        pass
    stats = loader.stats()
    assert isinstance(stats["cache"], dict) and stats["cache"]["reads"] >= 1
    assert isinstance(stats["io"], dict)
    assert json.loads(json.dumps(stats, default=str)) is not None

    def plain(x: object) -> bool:
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list | tuple):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, str | int | float | bool)

    assert plain(stats), stats
