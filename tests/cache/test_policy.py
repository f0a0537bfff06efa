"""Eviction policies and the pure simulator: Belady is optimal, LRU thrashes on cyclic epochs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dataio.cache.policy import NEVER, Candidate, choose_victims, next_use_positions, simulate, simulate_misses


def brute_force_min_misses(seq: list[int], capacity: int) -> int:
    """Fewest misses of any demand-paging eviction choice (equal sizes), by exhaustive search over states."""
    states = {frozenset(): 0}
    for x in seq:
        nxt: dict[frozenset, int] = {}
        for cache, misses in states.items():
            if x in cache:
                options = [(cache, misses)]
            elif len(cache) < capacity:
                options = [(cache | {x}, misses + 1)]
            else:
                options = [((cache - {y}) | {x}, misses + 1) for y in cache]
            for state, m in options:
                if m < nxt.get(state, 1 << 30):
                    nxt[state] = m
        states = nxt
    return min(states.values())


def test_belady_is_optimal_on_every_tiny_sequence() -> None:
    sizes = [1] * 4
    checked = 0
    for length in range(1, 7):
        for seq in itertools.product(range(4), repeat=length):
            for capacity in (1, 2, 3):
                belady = int(simulate_misses("belady", seq, sizes, capacity).sum())
                assert belady == brute_force_min_misses(list(seq), capacity), (seq, capacity)
                assert belady <= int(simulate_misses("lru", seq, sizes, capacity).sum())
                checked += 1
    assert checked > 15_000


def test_lru_thrashes_on_cyclic_epochs_and_belady_does_not() -> None:
    n, epochs = 20, 5
    seq = np.tile(np.arange(n), epochs)
    sizes = np.full(n, 100)
    limit = 10 * 100  # half the working set
    assert simulate("lru", seq, sizes, limit) == n * epochs * 100  # every access misses
    assert simulate("none", seq, sizes, limit) == n * epochs * 100
    belady = simulate("belady", seq, sizes, limit)
    # a cyclic scan: n misses the first epoch, then about n - capacity per epoch
    assert belady <= (n + (epochs - 1) * (n - 10 + 1)) * 100
    # knowing only the current epoch's order costs one miss per epoch more at most
    per_epoch = simulate("belady", seq, sizes, limit, segments=np.repeat(np.arange(epochs), n))
    assert belady <= per_epoch <= (n + (epochs - 1) * (n - 10 + 1)) * 100
    assert per_epoch < 0.7 * simulate("lru", seq, sizes, limit)


def test_shuffled_epochs_belady_beats_lru() -> None:
    rng = np.random.default_rng(0)
    n = 50
    seq = np.concatenate([rng.permutation(n) for _ in range(6)])
    sizes = rng.integers(50, 150, size=n)
    limit = int(sizes.sum() * 0.5)
    lru, belady = simulate("lru", seq, sizes, limit), simulate("belady", seq, sizes, limit)
    assert belady < 0.8 * lru
    assert simulate("belady", seq, sizes, int(sizes.sum())) == int(sizes.sum())  # all fits: each fetched once


def test_a_shard_bigger_than_the_limit_is_still_fetched_and_evicted_first() -> None:
    sizes = [10, 1000, 10]
    misses = simulate_misses("belady", [0, 1, 2, 0, 2], sizes, 100)
    assert misses.tolist() == [True, True, True, False, False]


def test_next_use_positions_with_and_without_segments() -> None:
    seq = [3, 1, 3, 3, 1, 2]
    assert next_use_positions(seq).tolist() == [2, 4, 3, NEVER, NEVER, NEVER]
    assert next_use_positions(seq, np.array([0, 0, 0, 1, 1, 1])).tolist() == [2, NEVER, NEVER, NEVER, NEVER, NEVER]


def test_choose_victims_ranks_by_policy() -> None:
    cands = [
        Candidate("soon", 10, next_use=1, last_use=1),
        Candidate("later", 10, next_use=5, last_use=3),
        Candidate("never", 10, next_use=NEVER, last_use=9),
    ]
    assert [c.name for c in choose_victims("belady", cands, 15)] == ["never", "later"]
    assert [c.name for c in choose_victims("lru", cands, 5)] == ["soon"]
    assert len(choose_victims("belady", cands, 10**6)) == 3
    with pytest.raises(ValueError, match="belady"):
        choose_victims("fifo", cands, 1)
    with pytest.raises(ValueError, match="size"):
        Candidate("x", -1)
    with pytest.raises(ValueError, match="ids outside"):
        simulate("lru", [5], [1], 10)
