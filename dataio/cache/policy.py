"""Eviction policies, chosen by name, and a pure simulator of a whole-shard cache.

A cache that knows the order in which shards will be read can evict the shard whose next use lies
furthest in the future (Belady's MIN, optimal for equal sizes); a cache that does not can only guess
from the past (LRU), and on the cyclic scans of epoch training LRU evicts exactly the shard that is
needed next: with a limit below the working set every read misses.

Everything here is pure: no IO, no clocks. :class:`~dataio.cache.store.CachedStore` ranks its eviction
candidates with :func:`choose_victims`; tests and ``benchmarks/cache.py`` use :func:`simulate`.

Model of :func:`simulate`: an access to a shard that is not cached fetches the whole shard (its size in
bytes); the accessed shard is kept (it is in use) and other shards are evicted until it fits. A shard larger
than the limit is fetched and used without evicting anything, and not kept.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NEVER",
    "POLICIES",
    "Candidate",
    "choose_victims",
    "get_policy",
    "next_use_positions",
    "simulate",
    "simulate_misses",
]

#: Distance of a shard that is not used again (sorts after every real distance).
NEVER = 2**62


@dataclass(frozen=True)
class Candidate:
    """A cached shard that may be evicted.

    Attributes:
        name: Identifier of the shard (its file name in the cache).
        size: Bytes it occupies.
        next_use: Distance (in accesses) to its next use, :data:`NEVER` if it is not used again.
        last_use: Recency stamp: larger is more recent (any monotonic clock or counter).
    """

    name: str
    size: int
    next_use: int = NEVER
    last_use: int = 0

    def __post_init__(self) -> None:
        for field in ("size", "next_use"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"candidate {self.name!r}: {field} must be a non-negative int, got {value!r}")


def belady_order(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Furthest next use first (never-used-again first); ties: least recently used, then largest."""
    return sorted(candidates, key=lambda c: (-c.next_use, c.last_use, -c.size, c.name))


def lru_order(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Least recently used first (ignores the future)."""
    return sorted(candidates, key=lambda c: (c.last_use, c.name))


#: policy name -> function ranking candidates, first evicted first
POLICIES: Mapping[str, Callable[[Sequence[Candidate]], list[Candidate]]] = {
    "belady": belady_order,
    "lru": lru_order,
}


def get_policy(name: str) -> Callable[[Sequence[Candidate]], list[Candidate]]:
    """The ranking function of policy ``name`` (ValueError listing the valid names otherwise)."""
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown eviction policy {name!r}; choose from {sorted(POLICIES)}") from None


def choose_victims(policy: str, candidates: Sequence[Candidate], need: int) -> list[Candidate]:
    """The shortest prefix of the policy's ranking that frees at least ``need`` bytes.

    Returns every candidate if even all of them free less (the caller decides whether to go over the limit).
    """
    victims: list[Candidate] = []
    freed = 0
    for cand in get_policy(policy)(candidates):
        if freed >= need:
            break
        victims.append(cand)
        freed += cand.size
    return victims


def next_use_positions(sequence: Sequence[int] | np.ndarray, segments: np.ndarray | None = None) -> np.ndarray:
    """For each access ``i``, the position of the next access to the same id, or :data:`NEVER`.

    Args:
        sequence: Ids (non-negative ints).
        segments: Optional segment number of each access (non-decreasing, e.g. the epoch): the next use is
            looked for only inside the same segment, modelling a cache that learns each epoch's order when
            the epoch starts.
    """
    ids = np.asarray(sequence, dtype=np.int64)
    out = np.full(ids.size, NEVER, dtype=np.int64)
    if ids.size < 2:
        return out
    key = ids if segments is None else ids + (np.asarray(segments, dtype=np.int64) << 32)
    order = np.argsort(key, kind="stable")
    same = key[order[1:]] == key[order[:-1]]
    out[order[:-1][same]] = order[1:][same]
    return out


def _segment_starts(n: int, segments: np.ndarray | None) -> dict[int, int]:
    """Access position -> segment index for every position where a new segment starts (after the first)."""
    if segments is None or n == 0:
        return {}
    seg = np.asarray(segments, dtype=np.int64)
    starts = np.flatnonzero(seg[1:] != seg[:-1]) + 1
    return {int(s): k for k, s in enumerate(starts)}


def simulate_misses(
    policy: str,
    access_sequence: Sequence[int] | np.ndarray,
    sizes: Sequence[int] | np.ndarray,
    limit: int,
    *,
    segments: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Which accesses miss (and fetch their shard) in a cache of ``limit`` bytes that starts empty.

    Args:
        policy: ``"belady"``, ``"lru"`` or ``"none"`` (no cache: every access fetches).
        access_sequence: Shard ids in access order.
        sizes: Bytes of each shard id.
        limit: Cache capacity in bytes.
        segments: ``belady`` only: segment (epoch) of each access, non-decreasing; the policy then knows
            the future only up to the end of the current segment (what a cache told one epoch's order at a
            time knows). Default: the whole sequence is known.

    Returns:
        Boolean array, True where the access fetched its shard.
    """
    seq = np.asarray(access_sequence, dtype=np.int64)
    size = np.asarray(sizes, dtype=np.int64)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if seq.size and (seq.min() < 0 or seq.max() >= size.size):
        raise ValueError("access_sequence holds ids outside [0, len(sizes))")
    if policy == "none":
        return np.ones(seq.size, dtype=bool)
    if policy == "lru":
        return _simulate_lru(seq.tolist(), size.tolist(), limit)
    if policy == "belady":
        seg = None if segments is None else np.asarray(segments, dtype=np.int64)
        if seg is not None and (seg.shape != seq.shape or (seg.size > 1 and np.any(np.diff(seg) < 0))):
            raise ValueError("segments must be non-decreasing, one per access")
        return _simulate_belady(seq, size.tolist(), limit, seg)
    get_policy(policy)  # raises with the valid names
    raise ValueError(f"policy {policy!r} has no simulator")


def simulate(
    policy: str,
    access_sequence: Sequence[int] | np.ndarray,
    sizes: Sequence[int] | np.ndarray,
    limit: int,
    *,
    segments: Sequence[int] | np.ndarray | None = None,
) -> int:
    """Bytes fetched to serve ``access_sequence`` through the cache (see :func:`simulate_misses`)."""
    seq = np.asarray(access_sequence, dtype=np.int64)
    misses = simulate_misses(policy, seq, sizes, limit, segments=segments)
    return int(np.asarray(sizes, dtype=np.int64)[seq[misses]].sum())


def _simulate_lru(seq: list[int], size: list[int], limit: int) -> np.ndarray:
    misses = np.zeros(len(seq), dtype=bool)
    cache: OrderedDict[int, None] = OrderedDict()
    used = 0
    for i, x in enumerate(seq):
        if x in cache:
            cache.move_to_end(x)
            continue
        misses[i] = True
        if size[x] > limit:
            continue
        while cache and used + size[x] > limit:
            used -= size[cache.popitem(last=False)[0]]
        cache[x] = None
        used += size[x]
    return misses


def _simulate_belady(seq: np.ndarray, size: list[int], limit: int, segments: np.ndarray | None) -> np.ndarray:
    """Belady with a heap keyed by (next use, recency); stale heap entries are skipped when popped."""
    nxt = next_use_positions(seq, segments).tolist()
    starts = _segment_starts(seq.size, segments)
    ids = seq.tolist()
    misses = np.zeros(len(ids), dtype=bool)
    key: dict[int, tuple[int, int]] = {}  # resident id -> (next use, last use)
    heap: list[tuple[int, int, int]] = []  # (-next use, last use, id)
    used = 0
    for i, x in enumerate(ids):
        if i in starts:  # a new epoch's order becomes known: re-rank what is cached
            first: dict[int, int] = {}
            end = next(iter(k for k in sorted(starts) if k > i), len(ids))
            for j in range(i, end):
                first.setdefault(ids[j], j)
            heap = []
            for y, (_, last) in key.items():
                key[y] = (first.get(y, NEVER), last)
                heap.append((-key[y][0], last, y))
            heapq.heapify(heap)
        if x not in key:
            misses[i] = True
            if size[x] > limit:
                continue
            while key and used + size[x] > limit:
                neg, last, y = heapq.heappop(heap)
                if key.get(y) == (-neg, last):
                    del key[y]
                    used -= size[y]
            used += size[x]
        key[x] = (nxt[i], i)
        heapq.heappush(heap, (-nxt[i], i, x))
        if len(heap) > 4 * len(key) + 64:  # drop stale entries now and then
            heap = [(-n, last, y) for y, (n, last) in key.items()]
            heapq.heapify(heap)
    return misses
