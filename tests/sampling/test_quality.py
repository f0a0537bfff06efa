"""Shuffle-quality metrics on plain label arrays, and the expected ranking of the modes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataio.sampling import ShardLayout, ShuffleConfig, shuffle_stats
from dataio.sampling.quality import batch_diversity, bytes_read, position_correlation
from dataio.sampling.report import render_stats

CLASSES, PER_CLASS, SHARD = 100, 120, 100
LABELS = np.repeat(np.arange(CLASSES), PER_CLASS)  # class-sorted, like a packed ImageFolder
LAYOUT = ShardLayout.uniform(LABELS.size, SHARD)
NBYTES = LAYOUT.sizes * 100_000


def _stats(mode: str, **params: int):
    return shuffle_stats(
        LAYOUT,
        LABELS,
        ShuffleConfig(mode, seed=1, params=params),
        world_size=4,
        batch_size=64,
        shard_nbytes=NBYTES,
        cache_bytes=200 * 100_000,
        chunk_bytes=1 << 20,
    )


def test_batch_diversity_small_example():
    distinct, entropy = batch_diversity([np.array([1, 1, 2, 3, 7, 7, 7, 7, 5])], 4)
    assert distinct.tolist() == [3, 1]  # the partial third batch is dropped
    assert entropy[0] == pytest.approx(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)))
    assert entropy[1] == 0
    distinct, _ = batch_diversity([np.array([4, 5]), np.array([4, 4])], 8)  # shorter than a batch
    assert distinct.tolist() == [2, 1]


def test_position_correlation():
    assert position_correlation([np.arange(100)]) == pytest.approx(1.0)
    assert position_correlation([np.arange(0, 100, 2), np.arange(1, 100, 2)]) == pytest.approx(1.0)
    assert position_correlation([np.arange(100)[::-1]]) == pytest.approx(-1.0)
    assert abs(position_correlation([np.random.default_rng(0).permutation(100_000)])) < 0.02
    assert math.isnan(position_correlation([np.zeros(0, dtype=np.int64)]))


def test_bytes_read_model():
    layout = ShardLayout([4, 4])
    nbytes = np.array([400, 400])
    sequential = np.arange(8)
    assert bytes_read(sequential, layout, nbytes, cache_bytes=10**6, chunk_bytes=200) == 800
    assert bytes_read(sequential, layout, nbytes, cache_bytes=10**6, chunk_bytes=0) == 800
    thrash = np.array([0, 4, 1, 5, 2, 6])  # alternate between two whole shards with room for one
    assert bytes_read(thrash, layout, nbytes, cache_bytes=400, chunk_bytes=0) == 6 * 400
    assert bytes_read(thrash, layout, nbytes, cache_bytes=800, chunk_bytes=0) == 800
    assert bytes_read(np.array([3, 3, 3]), layout, nbytes, cache_bytes=0, chunk_bytes=100) == 100


def test_modes_rank_as_expected_on_class_sorted_labels():
    stats = {mode: _stats(mode) for mode in ("sequential", "global", "block", "shard", "local")}
    ratio = {mode: s.diversity_ratio for mode, s in stats.items()}
    assert ratio["global"] == pytest.approx(1.0, abs=0.05)
    assert stats["global"].entropy_ratio == pytest.approx(1.0, abs=0.05)
    assert ratio["global"] >= ratio["block"] > ratio["local"] > ratio["shard"] > ratio["sequential"]
    assert ratio["block"] > 0.8
    assert stats["sequential"].position_correlation == pytest.approx(1.0)
    assert abs(stats["global"].position_correlation) < 0.05
    io = {mode: s.read_amplification for mode, s in stats.items()}
    assert io["sequential"] == pytest.approx(1.0, abs=0.01)
    assert io["shard"] < io["block"] < io["global"]
    assert stats["shard"].shards_per_batch < stats["block"].shards_per_batch
    big_buffer = _stats("shard", buffer_size=2000)  # held in memory: storage is still read shard by shard
    assert big_buffer.read_amplification < 1.2 and big_buffer.diversity_ratio > stats["shard"].diversity_ratio
    assert stats["global"].as_dict()["diversity_ratio"] == ratio["global"]


def test_stats_without_labels_or_bytes():
    s = shuffle_stats(LAYOUT, None, ShuffleConfig("global"), world_size=2, batch_size=32)
    assert math.isnan(s.distinct_labels) and s.bytes_per_sample is None and s.shards_per_batch > 1
    unlabeled = shuffle_stats(
        LAYOUT, np.full(LABELS.size, -1), ShuffleConfig("global"), world_size=2, batch_size=8
    )
    assert math.isnan(unlabeled.diversity_ratio)
    with pytest.raises(ValueError, match="labels must have shape"):
        shuffle_stats(LAYOUT, LABELS[:10], ShuffleConfig("global"), world_size=2, batch_size=8)
    with pytest.raises(ValueError, match="batch_size"):
        shuffle_stats(LAYOUT, LABELS, ShuffleConfig("global"), world_size=2, batch_size=0)


def test_sampler_exposes_the_same_numbers():
    from dataio.sampling import DistributedShuffleSampler

    class Packed:
        shard_sizes = LAYOUT.sizes
        shard_nbytes = NBYTES
        labels = LABELS

        def __len__(self) -> int:
            return LABELS.size

    sampler = DistributedShuffleSampler(Packed(), "block", seed=1, world_size=4, rank=0)
    assert sampler.shuffle_stats(64, cache_bytes=200 * 100_000) == _stats("block")


def test_render_table_and_markdown():
    rows = [_stats("global"), _stats("shard")]
    text = render_stats(rows)
    assert text.splitlines()[0].startswith("mode") and "ideal" in text and "shard" in text
    markdown = render_stats(rows, markdown=True).splitlines()
    assert markdown[0].startswith("| mode |") and markdown[1].startswith("|---|")
    assert len(markdown) == 2 + 1 + len(rows)
