"""Shuffle modes: pure numpy functions of (seed, epoch, shard sizes), chosen by name.

Every mode is registered in :data:`MODES` as a :class:`Mode`. There are two kinds:

* **elastic** modes (``sequential``, ``global``, ``block``) return the epoch's *global order*, a
  permutation of all ``n`` sample indices that does not depend on the world size; the sampler deals it
  round-robin (rank ``r`` takes positions ``r, r + W, r + 2W, ...``), so a checkpoint can resume on
  any number of ranks.
* **partitioned** modes (``local``, ``shard``) return one rank's own stream. The ``n`` positions of a
  shard-ordered sample sequence are cut into ``W`` contiguous pieces of ``n // W`` or ``n // W + 1``
  samples (so at most ``W - 1`` shards are split between two neighbouring ranks) and rank ``r``
  shuffles piece ``r``; these resume on the same world size only.

Every builder has the signature ``fn(layout, seed, epoch, world_size, rank, **params) -> int64
array``; elastic builders ignore ``world_size`` and ``rank``. Randomness comes from
:func:`stream_rng`, a ``numpy.random.Generator`` seeded from ``(seed, epoch, purpose, rank)`` through
``SeedSequence``, so the result depends on nothing else (no global state, threads or workers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from dataio.sampling.buffer import shuffle_buffer_order
from dataio.sampling.layout import ShardLayout, balanced_bounds, concat_ranges

__all__ = ["MODES", "Mode", "get_mode", "local_partition", "resolve_params", "stream_rng"]

# Purposes, mixed into the seed so that independent draws never share a random stream.
_GLOBAL, _BLOCK, _PARTITION, _LOCAL, _SHARD_ORDER, _SHARD_BUFFER = range(1, 7)

ModeBuilder = Callable[..., np.ndarray]


def stream_rng(seed: int, epoch: int, purpose: int, rank: int = 0) -> np.random.Generator:
    """Return the generator for one purpose of one epoch (and one rank, for per-rank draws)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose, epoch, rank)))


def sequential_order(layout: ShardLayout, seed: int, epoch: int, world_size: int, rank: int) -> np.ndarray:
    """``sequential``: storage order, no shuffle (the same every epoch)."""
    return np.arange(layout.num_samples, dtype=np.int64)


def global_order(layout: ShardLayout, seed: int, epoch: int, world_size: int, rank: int) -> np.ndarray:
    """``global``: a fresh uniform permutation of all samples every epoch."""
    return stream_rng(seed, epoch, _GLOBAL).permutation(layout.num_samples).astype(np.int64, copy=False)


def block_order(
    layout: ShardLayout,
    seed: int,
    epoch: int,
    world_size: int,
    rank: int,
    *,
    block_size: int,
    window: int,
) -> np.ndarray:
    """``block``: near-global shuffle at near-sequential IO cost.

    Each shard is cut into blocks of ``block_size`` consecutive samples (the last block of a shard
    may be shorter; blocks never straddle shards). The blocks are permuted uniformly, their samples
    concatenated, and the resulting sequence is cut into windows of ``window * block_size``
    consecutive samples, each shuffled uniformly. A sample therefore moves at most one window away
    from its block, and a reader only needs the ``window`` blocks of the current window at a time.
    """
    rng = stream_rng(seed, epoch, _BLOCK)
    sizes = layout.sizes
    n = layout.num_samples
    blocks_per_shard = -(-sizes // block_size)
    num_blocks = int(blocks_per_shard.sum())
    shard_of_block = np.repeat(np.arange(sizes.size, dtype=np.int64), blocks_per_shard)
    first_block = np.cumsum(blocks_per_shard) - blocks_per_shard
    offset = (np.arange(num_blocks, dtype=np.int64) - first_block[shard_of_block]) * block_size
    block_start = layout.starts[shard_of_block] + offset
    block_len = np.minimum(block_size, sizes[shard_of_block] - offset)
    perm = rng.permutation(num_blocks)
    sequence = concat_ranges(block_start[perm], block_len[perm])
    span = window * block_size
    full = (n // span) * span
    head = sequence[:full]
    if full:
        head = rng.permuted(head.reshape(-1, span), axis=1).reshape(-1)
    tail = sequence[full:][rng.permutation(n - full)]
    return np.concatenate([head, tail])


def local_partition(layout: ShardLayout, seed: int, world_size: int, rank: int) -> np.ndarray:
    """Samples owned by ``rank`` in ``local`` mode, in partition order (independent of the epoch).

    The shards are permuted once from ``seed`` alone, their samples concatenated, and the sequence is
    cut into ``world_size`` contiguous balanced pieces.
    """
    shard_perm = stream_rng(seed, 0, _PARTITION).permutation(layout.num_shards)
    bounds = balanced_bounds(layout.num_samples, world_size)
    return layout.shard_slice(shard_perm, int(bounds[rank]), int(bounds[rank + 1]))


def local_stream(layout: ShardLayout, seed: int, epoch: int, world_size: int, rank: int) -> np.ndarray:
    """``local``: a fixed partition per rank (data never moves), uniformly reshuffled every epoch."""
    part = local_partition(layout, seed, world_size, rank)
    return part[stream_rng(seed, epoch, _LOCAL, rank).permutation(part.size)]


def shard_stream(
    layout: ShardLayout,
    seed: int,
    epoch: int,
    world_size: int,
    rank: int,
    *,
    buffer_size: int,
) -> np.ndarray:
    """``shard``: shard order reshuffled every epoch, dealt to ranks, then a bounded shuffle buffer.

    The shards are permuted from ``(seed, epoch)``, their samples concatenated and cut into
    ``world_size`` contiguous balanced pieces; rank ``r`` streams piece ``r`` (whole shards, read
    sequentially) through the shuffle buffer of :func:`~dataio.sampling.buffer.shuffle_buffer_order`.
    """
    piece = shard_read_order(layout, seed, epoch, world_size, rank)
    rng = stream_rng(seed, epoch, _SHARD_BUFFER, rank)
    return piece[shuffle_buffer_order(piece.size, buffer_size, rng)]


def shard_read_order(layout: ShardLayout, seed: int, epoch: int, world_size: int, rank: int, **_: int) -> np.ndarray:
    """``shard`` mode's storage read order: rank ``rank``'s piece of the epoch's shard order, before the
    in-memory shuffle buffer (whole shards, read sequentially)."""
    shard_perm = stream_rng(seed, epoch, _SHARD_ORDER).permutation(layout.num_shards)
    bounds = balanced_bounds(layout.num_samples, world_size)
    return layout.shard_slice(shard_perm, int(bounds[rank]), int(bounds[rank + 1]))


@dataclass(frozen=True)
class Mode:
    """A registered shuffle mode.

    Attributes:
        name: Name used to choose the mode.
        elastic: True if ``build`` returns the world-size independent global order of the epoch,
            False if it returns one rank's stream of a fixed-world-size partition.
        build: The pure builder ``fn(layout, seed, epoch, world_size, rank, **params)``.
        defaults: The mode's parameters and their default values (all positive ints).
        summary: One-line description.
        uses_shards: Whether the order depends on the shard sizes (not only on their total).
        read_order: For modes with an in-memory buffer, a builder (same signature) of the order in
            which one rank fetches samples from storage; None when it is the order of ``build``.
    """

    name: str
    elastic: bool
    build: ModeBuilder
    defaults: Mapping[str, int] = field(default_factory=dict)
    summary: str = ""
    uses_shards: bool = True
    read_order: ModeBuilder | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))


MODES: Mapping[str, Mode] = MappingProxyType(
    {
        mode.name: mode
        for mode in (
            Mode("sequential", True, sequential_order, {}, "storage order, no shuffle", False),
            Mode("global", True, global_order, {}, "uniform permutation of all samples each epoch", False),
            Mode(
                "block",
                True,
                block_order,
                {"block_size": 16, "window": 1024},
                "permuted blocks of consecutive samples, shuffled inside windows of blocks",
            ),
            Mode(
                "shard",
                False,
                shard_stream,
                {"buffer_size": 1024},
                "shuffled shards + shuffle buffer",
                read_order=shard_read_order,
            ),
            Mode("local", False, local_stream, {}, "fixed per-rank partition, reshuffled each epoch"),
        )
    }
)


def get_mode(name: str) -> Mode:
    """Return the registered mode called ``name`` (ValueError listing the valid names otherwise)."""
    if not isinstance(name, str):
        raise TypeError(f"mode must be a str, got {type(name).__name__}")
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown shuffle mode {name!r}; choose one of {sorted(MODES)}") from None


def resolve_params(mode: Mode, params: Mapping[str, object]) -> dict[str, int]:
    """Validate ``params`` for ``mode`` and fill in the defaults.

    Keys that belong to no registered mode raise TypeError; keys of other modes are ignored, so a
    sampler can be given ``block_size`` & co. whatever its mode. Values must be ints >= 1.
    """
    known = {key for m in MODES.values() for key in m.defaults}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(f"unknown mode parameter(s) {unknown}; known: {sorted(known)}")
    resolved = dict(mode.defaults)
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{key} must be an int, got {type(value).__name__}")
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
        if key in resolved:
            resolved[key] = int(value)
    return resolved
