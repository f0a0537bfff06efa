"""A shard as the cache knows it: the value every cache module passes around (its own module, so that none of
them needs another's for it)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ShardSpec"]


@dataclass(frozen=True)
class ShardSpec:
    """A shard as the manifest describes it, and its name in the cache."""

    path: str
    name: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise ValueError(f"shard {self.path!r}: size must be a non-negative int, got {self.size!r}")
        if not isinstance(self.sha256, str) or len(self.sha256) != 64:
            raise ValueError(f"shard {self.path!r}: sha256 must be 64 hex digits")
