"""Pack options and the shard plan: which samples go into which shard, decided before any shard is written.

The plan is a pure function of the sample list and the options, so every shard is an independent job:
the same input gives byte-identical shards whatever the number of worker processes, and a rerun after a
crash recognises finished shards by their plan hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from dataio.format.schema import IMAGE_SCHEMA
from dataio.pack.labels import Item
from dataio.units import parse_size

__all__ = ["PackOptions", "ShardJob", "parse_size", "plan_shards"]


@dataclass(frozen=True)
class PackOptions:
    """Everything that decides the bytes of a packed dataset (and a few things that do not).

    Args:
        shard_size: Target shard size in bytes (a shard closes before the sample that would overflow it).
        order: ``"sorted"`` (source order, ImageFolder's for folders) or ``"shuffled"`` (a seeded permutation
            across shards).
        seed: Seed of the ``shuffled`` order.
        max_size: Re-encode: shrink the long side to this many pixels.
        quality: Re-encode: JPEG quality.
        on_error: ``"fail"`` (list every unreadable image, or file name that is not UTF-8, and write no manifest)
            or ``"skip"`` (leave them out, each recorded in the manifest's ``skipped`` and named in a warning).
        workers: Parallel processes (does not change any byte).
        follow_symlinks: Read symlinked files and folders of the source (default: refuse them, naming each).
            A link leading back to a folder above it (a loop) is not followed, and named in a warning. FIFOs,
            devices and sockets are refused either way.
    """

    shard_size: int = 256 * 10**6
    order: str = "sorted"
    seed: int = 0
    max_size: int | None = None
    quality: int | None = None
    on_error: str = "fail"
    workers: int = 1
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        if self.shard_size < 1024:
            raise ValueError(f"shard_size must be at least 1 KiB, got {self.shard_size}")
        if self.order not in ("sorted", "shuffled"):
            raise ValueError(f"order must be 'sorted' or 'shuffled', got {self.order!r}")
        if self.on_error not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {self.on_error!r}")
        if self.max_size is not None and self.max_size < 16:
            raise ValueError(f"max_size must be at least 16 pixels, got {self.max_size}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be in 1..100, got {self.quality}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @property
    def reencodes(self) -> bool:
        return self.max_size is not None or self.quality is not None

    def byte_options(self) -> dict[str, object]:
        """The options that change shard bytes (recorded in the manifest and in every plan hash)."""
        return {
            "shard_size": self.shard_size,
            "order": self.order,
            "seed": self.seed,
            "max_size": self.max_size,
            "quality": self.quality,
        }


@dataclass(frozen=True)
class ShardJob:
    """One shard to write: its number, relative path, samples and plan hash."""

    shard_id: int
    path: str
    items: tuple[Item, ...]
    plan_hash: str


def _record_size(item: Item, ratio: float) -> int:
    return 4 * len(IMAGE_SCHEMA.fields) + len(item.key.encode()) + 8 + int(max(item.size, 0) * ratio)


def order_items(items: list[Item], options: PackOptions) -> list[Item]:
    """Applies ``options.order``: the given order, or a permutation seeded by ``options.seed``."""
    if options.order == "sorted":
        return list(items)
    perm = np.random.default_rng(options.seed).permutation(len(items))
    return [items[i] for i in perm]


def plan_shards(items: list[Item], options: PackOptions, size_ratio: float = 1.0) -> list[ShardJob]:
    """Cuts the ordered sample list into shards of at most ``options.shard_size`` bytes (a larger single
    sample gets a shard of its own). ``size_ratio`` estimates output/input bytes when re-encoding."""
    groups: list[list[Item]] = []
    current: list[Item] = []
    used = 0
    for item in items:
        n = _record_size(item, size_ratio)
        if current and used + n > options.shard_size:
            groups.append(current)
            current, used = [], 0
        current.append(item)
        used += n
    if current:
        groups.append(current)
    width = max(5, len(str(len(groups) - 1)))
    jobs = []
    for i, group in enumerate(groups):
        path = f"shards/shard-{i:0{width}d}.dio"
        desc = json.dumps([path, options.byte_options(), [(it.key, it.label, it.size) for it in group]])
        jobs.append(ShardJob(i, path, tuple(group), hashlib.sha256(desc.encode()).hexdigest()))
    return jobs
