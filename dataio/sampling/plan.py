"""Epoch plans: deal a mode's order to ranks with equal lengths (padding or dropping).

Padding rule (``drop_last=False``): every rank yields ``ceil(n / W)`` samples.

* Elastic modes: the remaining global order ``order[consumed:]`` is extended by repeating the
  epoch's order from its start (``order[0], order[1], ...``, cycling if ``n < W``) up to a multiple
  of ``W``; rank ``r`` takes positions ``r, r + W, ...``. On a fresh epoch this is exactly
  ``torch.utils.data.DistributedSampler``'s rule.
* Partitioned modes: each rank's piece has ``n // W`` or ``n // W + 1`` samples; a short rank repeats
  the first sample of its own shuffled stream (or sample ``r % n`` when its piece is empty, n < W).

With ``drop_last=True`` every rank yields ``floor(n / W)`` samples: elastic modes drop the tail of
the remaining global order, partitioned modes drop the last sample of the longer streams. Across
ranks each sample appears exactly once, except the padding repeats and the dropped samples.

Progress is counted in *global positions consumed*: ``k * W`` once each rank has yielded ``k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from dataio.sampling.layout import ShardLayout
from dataio.sampling.modes import Mode, get_mode, resolve_params

__all__ = [
    "ShuffleConfig",
    "all_rank_indices",
    "all_rank_read_orders",
    "deal_global",
    "epoch_length",
    "global_order",
    "in_order_of",
    "rank_indices",
    "remaining_length",
]


@dataclass(frozen=True)
class ShuffleConfig:
    """What defines an epoch's order besides the epoch number and the ranks.

    Attributes:
        mode: Name of a registered mode (see :data:`dataio.sampling.modes.MODES`).
        seed: Non-negative int seed.
        drop_last: Drop the tail instead of padding, so ranks yield ``floor(n / W)`` samples.
        params: Mode parameters; validated and completed with the mode's defaults, other modes'
            parameters are dropped.
    """

    mode: str = "global"
    seed: int = 0
    drop_last: bool = False
    params: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = get_mode(self.mode)
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if not isinstance(self.drop_last, (bool, np.bool_)):
            raise TypeError(f"drop_last must be a bool, got {type(self.drop_last).__name__}")
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "drop_last", bool(self.drop_last))
        object.__setattr__(self, "params", MappingProxyType(resolve_params(spec, dict(self.params))))

    @property
    def spec(self) -> Mode:
        """The registered :class:`~dataio.sampling.modes.Mode`."""
        return get_mode(self.mode)


def epoch_length(n: int, world_size: int, drop_last: bool) -> int:
    """Samples each rank yields in a full epoch: ``ceil(n / W)``, or ``floor(n / W)`` with drop_last."""
    return n // world_size if drop_last else -(-n // world_size)


def remaining_length(config: ShuffleConfig, n: int, world_size: int, consumed: int) -> int:
    """Samples each rank still yields in the epoch after ``consumed`` global positions."""
    if config.spec.elastic:
        return epoch_length(max(n - consumed, 0), world_size, config.drop_last)
    return max(epoch_length(n, world_size, config.drop_last) - consumed // world_size, 0)


def deal_global(order: np.ndarray, world_size: int, rank: int, drop_last: bool, consumed: int = 0) -> np.ndarray:
    """Deal the rest of a global order round-robin after ``consumed`` positions.

    Args:
        order: The epoch's global order (length ``n``).
        world_size: Number of ranks ``W``.
        rank: This rank.
        drop_last: Truncate the remainder to a multiple of ``W`` instead of padding it.
        consumed: Global positions already consumed (by any world size).

    Returns:
        This rank's remaining indices (int64, contiguous).
    """
    rest = order[min(consumed, order.size) :]
    if drop_last:
        rest = rest[: (rest.size // world_size) * world_size]
    else:
        pad = -rest.size % world_size
        if pad:
            rest = np.concatenate([rest, np.resize(order, pad)])
    return np.ascontiguousarray(rest[rank::world_size], dtype=np.int64)


def _pad_stream(stream: np.ndarray, length: int, fallback: int) -> np.ndarray:
    if stream.size >= length:
        return stream[:length]
    filler = stream[0] if stream.size else fallback
    return np.concatenate([stream, np.full(length - stream.size, filler, dtype=np.int64)])


def rank_indices(
    config: ShuffleConfig,
    layout: ShardLayout,
    epoch: int,
    world_size: int,
    rank: int,
    consumed: int = 0,
    order: np.ndarray | None = None,
) -> np.ndarray:
    """This rank's remaining indices of the epoch, padded or truncated to the common length.

    Args:
        config: Mode, seed, drop_last and mode parameters.
        layout: Shard sizes of the dataset.
        epoch: Epoch number (>= 0).
        world_size: Number of ranks.
        rank: This rank, in ``[0, world_size)``.
        consumed: Global positions already consumed in this epoch; a multiple of ``world_size`` for
            partitioned modes.
        order: For elastic modes, a precomputed global order of this epoch (saves recomputing it when
            dealing to every rank); ignored otherwise.

    Returns:
        int64 array of ``remaining_length(config, n, world_size, consumed)`` sample indices.
    """
    spec = config.spec
    n = layout.num_samples
    if spec.elastic:
        if order is None:
            order = spec.build(layout, config.seed, epoch, world_size, rank, **config.params)
        return deal_global(order, world_size, rank, config.drop_last, consumed)
    stream = spec.build(layout, config.seed, epoch, world_size, rank, **config.params)
    full = _pad_stream(stream, epoch_length(n, world_size, config.drop_last), rank % max(n, 1))
    return np.ascontiguousarray(full[consumed // world_size :], dtype=np.int64)


def global_order(config: ShuffleConfig, layout: ShardLayout, epoch: int) -> np.ndarray:
    """The world-size independent global order of an elastic mode's epoch."""
    spec = config.spec
    if not spec.elastic:
        raise ValueError(f"mode {config.mode!r} has no world-size independent global order")
    return spec.build(layout, config.seed, epoch, 1, 0, **config.params)


def all_rank_indices(config: ShuffleConfig, layout: ShardLayout, epoch: int, world_size: int) -> list[np.ndarray]:
    """Every rank's full epoch (computing an elastic mode's global order only once)."""
    order = global_order(config, layout, epoch) if config.spec.elastic else None
    return [rank_indices(config, layout, epoch, world_size, r, 0, order) for r in range(world_size)]


def all_rank_read_orders(config: ShuffleConfig, layout: ShardLayout, epoch: int, world_size: int) -> list[np.ndarray]:
    """Every rank's storage read order (differs from the yield order only behind an in-memory buffer).

    Padding is ignored: every rank's read order is cut to the shortest rank's length.
    """
    spec = config.spec
    if spec.read_order is None:
        return all_rank_indices(config, layout, epoch, world_size)
    reads = [spec.read_order(layout, config.seed, epoch, world_size, r, **config.params) for r in range(world_size)]
    length = min(r.size for r in reads)
    return [r[:length] for r in reads]


def _occurrence(a: np.ndarray) -> np.ndarray:
    """For each element of ``a``, how many equal elements come before it (0 for a value's first occurrence)."""
    order = np.argsort(a, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(a[order])) + 1] if a.size else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, a.size])
    occurrence = np.empty(a.size, np.int64)
    occurrence[order] = np.arange(a.size) - np.repeat(starts, counts)
    return occurrence


def _count_in(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """For each element of ``values``, how often it occurs in ``pool``."""
    uniq, counts = np.unique(pool, return_counts=True)
    if not uniq.size:
        return np.zeros(values.size, np.int64)
    at = np.minimum(np.searchsorted(uniq, values), uniq.size - 1)
    return np.where(uniq[at] == values, counts[at], 0)


def in_order_of(order: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The multiset ``wanted`` rearranged into the order its values take in ``order``.

    A value's first ``k`` occurrences in ``order`` stand for its ``k`` copies in ``wanted``; copies ``order``
    lacks (padding) follow at the end, in ``wanted``'s order. Used to read what is left of an epoch in a mode's
    storage read order (``order``: the rank's full read order; ``wanted``: the remaining delivery order).
    """
    order = np.asarray(order, dtype=np.int64)
    wanted = np.asarray(wanted, dtype=np.int64)
    kept = order[_occurrence(order) < _count_in(order, wanted)]
    extra = wanted[_occurrence(wanted) >= _count_in(wanted, order)]
    return np.ascontiguousarray(np.concatenate([kept, extra]), dtype=np.int64)
