"""Options of the shard cache, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from dataio.cache.policy import get_policy

__all__ = ["CacheOptions"]


@dataclass(frozen=True)
class CacheOptions:
    """Tuning of a :class:`~dataio.cache.store.CachedStore`.

    Attributes:
        limit: Bytes one dataset may occupy in the cache directory (cached shards + downloads in progress).
        policy: ``"belady"`` or ``"lru"`` (see :mod:`dataio.cache.policy`).
        prefetch: Prefetch threads, i.e. downloads in flight ahead of the reader (0: none).
        max_open: Shards a process keeps open (pinned against eviction) after reading from them.
        chunk_size: Bytes per remote read while downloading a shard.
        fsync: Flush each download to disk before renaming it into place (survives a power loss).
        slack: How far ahead in the access order a first read may be and still count as following it.
    """

    limit: int
    policy: str = "belady"
    prefetch: int = 2
    max_open: int = 2
    chunk_size: int = 8 << 20
    fsync: bool = True
    slack: int = 16

    def __post_init__(self) -> None:
        get_policy(self.policy)
        for name, low in (("limit", 0), ("prefetch", 0), ("max_open", 1), ("chunk_size", 1), ("slack", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"cache option {name} must be an int >= {low}, got {value!r}")
