"""Batch spread: invariants against a plain Python count."""

from __future__ import annotations

import numpy as np
import pytest

from dataio.experiments.spread import batch_spread, distinct_per_row, global_batches


def test_distinct_per_row_matches_sets() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 7, size=(50, 9))
    assert distinct_per_row(values).tolist() == [len(set(row)) for row in values.tolist()]
    assert distinct_per_row(np.zeros((3, 0), dtype=np.int64)).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="2-D"):
        distinct_per_row(np.arange(3))


def test_global_batches_are_the_ranks_batch_j_side_by_side() -> None:
    ranks = [np.arange(10), np.arange(100, 111)]  # uneven lengths: full batches of the shortest only
    rows = global_batches(ranks, 3)
    assert rows.shape == (3, 6)
    assert rows[1].tolist() == [3, 4, 5, 103, 104, 105]
    with pytest.raises(ValueError, match="batch_size"):
        global_batches(ranks, 0)
    with pytest.raises(ValueError, match="no ranks"):
        global_batches([], 2)


def test_spread_of_sequential_and_of_one_sample_per_shard() -> None:
    shard_of = np.repeat(np.arange(4), 8)  # 4 shards of 8 samples
    labels = shard_of.copy()  # class-sorted: one class per shard
    sequential = batch_spread([np.arange(32)], 8, shard_of, labels)
    assert sequential == {"shards_per_rank_batch": 1.0, "shards_per_global_batch": 1.0, "labels_per_global_batch": 1.0}
    strided = np.arange(32).reshape(4, 8).T.reshape(-1)  # 0, 8, 16, 24, 1, 9, ...: every batch of 4 hits 4 shards
    spread = batch_spread([strided[:16], strided[16:]], 4, shard_of, labels)
    assert spread["shards_per_rank_batch"] == 4.0 and spread["labels_per_global_batch"] == 4.0


def test_spread_is_bounded_by_batch_and_shard_counts() -> None:
    rng = np.random.default_rng(1)
    shard_of = np.repeat(np.arange(20), 5)
    labels = rng.integers(0, 10, size=100)
    perm = rng.permutation(100)
    spread = batch_spread([perm[:50], perm[50:]], 10, shard_of, labels)
    assert 1 <= spread["shards_per_rank_batch"] <= spread["shards_per_global_batch"] <= 20
    assert 1 <= spread["labels_per_global_batch"] <= 10
    empty = batch_spread([perm[:3]], 10, shard_of, labels)
    assert all(np.isnan(v) for v in empty.values())
