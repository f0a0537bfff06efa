"""Shard layout helpers and the vectorised shuffle buffer (against a plain-Python reference)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dataio.sampling.buffer import shuffle_buffer_order
from dataio.sampling.layout import ShardLayout, balanced_bounds, concat_ranges, first_use_order, smallest_uint


def reference_buffer(length: int, k: int, rng: np.random.Generator) -> list[int]:
    """The shuffle buffer of dataio.sampling.buffer, one step at a time."""
    if length <= k:
        return rng.permutation(length).tolist()
    slots = list(range(k))
    out = []
    for t, slot in enumerate(rng.integers(0, k, size=length - k, dtype=smallest_uint(k)).tolist()):
        out.append(slots[slot])
        slots[slot] = k + t
    return out + [slots[j] for j in rng.permutation(k).tolist()]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 300), st.integers(0, 2**32))
def test_shuffle_buffer_matches_reference(length, k, seed):
    fast = shuffle_buffer_order(length, k, np.random.default_rng(seed))
    assert fast.dtype == np.int64
    assert fast.tolist() == reference_buffer(length, k, np.random.default_rng(seed))


def test_shuffle_buffer_large_stream_crosses_chunks():
    fast = shuffle_buffer_order(200_000, 1000, np.random.default_rng(3))
    assert fast.tolist() == reference_buffer(200_000, 1000, np.random.default_rng(3))
    position = np.empty_like(fast)
    position[fast] = np.arange(fast.size)
    assert np.all(position >= np.arange(fast.size) - 999), "left the buffer before entering it"


def test_buffer_of_one_is_identity():
    assert shuffle_buffer_order(50, 1, np.random.default_rng(0)).tolist() == list(range(50))


@given(st.lists(st.integers(0, 20), max_size=15), st.data())
def test_shard_slice_matches_naive(sizes, data):
    layout = ShardLayout(sizes)
    perm = np.array(data.draw(st.permutations(range(len(sizes)))), dtype=np.int64)
    naive = np.concatenate(
        [np.arange(layout.starts[s], layout.starts[s] + layout.sizes[s]) for s in perm] or [[]]
    )
    lo = data.draw(st.integers(0, layout.num_samples))
    hi = data.draw(st.integers(lo, layout.num_samples))
    assert layout.shard_slice(perm, lo, hi).tolist() == naive[lo:hi].astype(int).tolist()
    shard = layout.shard_of(np.arange(layout.num_samples))
    assert shard.tolist() == [s for s, z in enumerate(sizes) for _ in range(z)]


def test_helpers():
    assert concat_ranges([5, 0, 9], [2, 0, 3]).tolist() == [5, 6, 9, 10, 11]
    assert concat_ranges([], []).tolist() == []
    bounds = balanced_bounds(10, 4)
    assert np.diff(bounds).tolist() == [2, 3, 2, 3] and bounds[-1] == 10
    shards, first, last = first_use_order(np.array([4, 4, 1, 4, 2, 1]), 5)
    assert (shards.tolist(), first.tolist(), last.tolist()) == ([4, 1, 2], [0, 2, 4], [3, 5, 4])
    assert ShardLayout.uniform(10, 4).sizes.tolist() == [4, 4, 2]
    assert ShardLayout.uniform(0, 4).num_shards == 0
    assert ShardLayout([1, 2]).digest != ShardLayout([2, 1]).digest
