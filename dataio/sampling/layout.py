"""Shard layout: which shard each global sample index lives in.

Samples are numbered shard by shard: shard ``s`` holds the global indices
``starts[s] .. starts[s] + sizes[s] - 1``. A :class:`~dataio.dataset.ShardDataset` gives the real
shard sizes from its manifest; any other ``Sized`` dataset is cut into fixed-size stand-in shards
(:meth:`ShardLayout.uniform`). Everything here is pure numpy on index arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["ShardLayout", "balanced_bounds", "concat_ranges", "first_use_order", "smallest_uint"]


def smallest_uint(limit: int) -> type[np.unsignedinteger]:
    """Return the smallest unsigned dtype that holds every value below ``limit``.

    Stable argsorts of small unsigned dtypes use radix sort, which is several times faster than
    sorting int64, so callers downcast ids before grouping them.
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if limit <= np.iinfo(dtype).max + 1:
            return dtype
    return np.uint64


def concat_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate the integer ranges ``[starts[i], starts[i] + lengths[i])`` in order.

    Args:
        starts: First value of each range.
        lengths: Length of each range (zero allowed).

    Returns:
        int64 array of length ``lengths.sum()``, built without a Python loop.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def balanced_bounds(n: int, world_size: int) -> np.ndarray:
    """Split ``n`` consecutive positions into ``world_size`` contiguous pieces of near-equal size.

    Piece ``r`` is ``[bounds[r], bounds[r + 1])``; every piece has ``n // world_size`` or
    ``n // world_size + 1`` positions.
    """
    return (np.arange(world_size + 1, dtype=np.int64) * n) // world_size


def first_use_order(ids: np.ndarray, num_ids: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group a sequence of ids by id, ordered by first occurrence.

    Args:
        ids: Sequence of ids in ``[0, num_ids)`` (e.g. the shard of each upcoming read).
        num_ids: Exclusive upper bound of the ids.

    Returns:
        ``(unique_ids, first, last)``: the distinct ids in order of first occurrence, and for each
        the position of its first and of its last occurrence in ``ids``.
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    order = np.argsort(ids.astype(smallest_uint(num_ids), copy=False), kind="stable")
    grouped = ids[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    ends = np.r_[starts[1:], grouped.size] - 1
    first, last = order[starts], order[ends]
    by_first = np.argsort(first, kind="stable")
    return grouped[starts][by_first].astype(np.int64), first[by_first], last[by_first]


@dataclass(frozen=True, eq=False)
class ShardLayout:
    """Sizes of the shards of a dataset, in shard order.

    Attributes:
        sizes: Samples per shard (int64, zeros allowed).
    """

    sizes: np.ndarray
    starts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        sizes = np.array(self.sizes, dtype=np.int64, copy=True).reshape(-1)
        if sizes.size and sizes.min() < 0:
            raise ValueError("shard sizes must be non-negative")
        sizes.setflags(write=False)
        starts = np.cumsum(sizes) - sizes
        starts.setflags(write=False)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "starts", starts)

    @classmethod
    def uniform(cls, num_samples: int, shard_size: int) -> ShardLayout:
        """Stand-in shards of ``shard_size`` consecutive samples (the last may be shorter)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {shard_size}")
        full, rest = divmod(num_samples, shard_size)
        sizes = np.full(full + (rest > 0), shard_size, dtype=np.int64)
        if rest:
            sizes[-1] = rest
        return cls(sizes)

    @property
    def num_samples(self) -> int:
        """Total number of samples."""
        return int(self.sizes.sum())

    @property
    def num_shards(self) -> int:
        """Number of shards (including empty ones)."""
        return int(self.sizes.size)

    @cached_property
    def digest(self) -> str:
        """Short hex fingerprint of the shard sizes, stored in sampler state to detect a changed dataset."""
        return hashlib.blake2b(self.sizes.astype("<i8").tobytes(), digest_size=8).hexdigest()

    @cached_property
    def _shard_map(self) -> np.ndarray:
        dtype = np.int32 if self.num_shards < 2**31 else np.int64
        return np.repeat(np.arange(self.num_shards, dtype=dtype), self.sizes)

    def shard_of(self, indices: np.ndarray) -> np.ndarray:
        """Return the shard id (int64) of each global sample index."""
        return self._shard_map[np.asarray(indices, dtype=np.int64)].astype(np.int64)

    def shard_slice(self, shard_order: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Samples at positions ``[lo, hi)`` of the concatenation of ``shard_order``'s shards.

        Args:
            shard_order: A permutation of the shard ids.
            lo: First position (inclusive) in the concatenated sample sequence.
            hi: Last position (exclusive).

        Returns:
            int64 global sample indices; only the shards overlapping the slice are expanded.
        """
        if hi <= lo:
            return np.zeros(0, dtype=np.int64)
        lengths = self.sizes[shard_order]
        ends = np.cumsum(lengths)
        first = int(np.searchsorted(ends, lo, side="right"))
        last = int(np.searchsorted(ends, hi, side="left"))
        picked = shard_order[first : last + 1]
        starts = self.starts[picked].copy()
        lengths = lengths[first : last + 1].copy()
        head_cut = lo - (int(ends[first]) - int(lengths[0]))
        starts[0] += head_cut
        lengths[0] -= head_cut
        lengths[-1] -= int(ends[last]) - hi
        return concat_ranges(starts, lengths)
