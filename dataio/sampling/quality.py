"""Shuffle quality and IO cost of a mode, as pure functions over index arrays.

:func:`shuffle_stats` plans one epoch for every rank and measures, on each rank's consecutive batches:

* **label diversity**: mean distinct labels per batch and mean label entropy per batch (nats), each
  next to the same number for an ideal shuffle (a uniform permutation dealt the same way);
* **position correlation**: Pearson correlation between a sample's storage index and the global
  position at which it is read (step ``k`` of rank ``r`` is position ``k * W + r``); 1 for sequential
  reading, about 0 for any real shuffle;
* **IO cost**: mean distinct shards touched per batch, and, when shard byte sizes are known, the bytes
  fetched from storage per sample read. The model (:func:`bytes_read`): the ranks read in lockstep
  (step ``k`` of every rank before step ``k + 1``) through one LRU cache that they share (one node's
  cache) and that starts cold; storage is read in aligned chunks. A mode with an in-memory buffer
  (``shard``) fetches in its read order, before the buffer. Only the first ``io_samples`` reads are
  simulated. This is the cold-cache cost of one epoch; ``local`` pays off in later epochs when each
  node's cache holds its partition.

Everything is vectorised except the LRU cache simulation, which loops once per run of reads that hit
the same chunk.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from dataio.sampling.layout import ShardLayout, concat_ranges
from dataio.sampling.plan import ShuffleConfig, all_rank_indices, all_rank_read_orders, deal_global

__all__ = ["ShuffleStats", "batch_diversity", "bytes_read", "position_correlation", "shuffle_stats"]

DEFAULT_CHUNK_BYTES = 1 << 20
DEFAULT_CACHE_FRACTION = 0.05
DEFAULT_IO_SAMPLES = 1_000_000
IDEAL_BATCHES = 2000


@dataclass(frozen=True)
class ShuffleStats:
    """Quality and IO numbers of one mode for one epoch (``nan`` / ``None`` where not measurable).

    Attributes:
        mode: Mode name.
        world_size: Number of ranks.
        batch_size: Per-rank batch size used (capped at the per-rank epoch length).
        num_samples: Samples in the dataset.
        num_batches: Batches measured (all ranks).
        distinct_labels: Mean distinct labels per batch.
        ideal_distinct_labels: The same for an ideal (uniform) shuffle.
        label_entropy: Mean label entropy per batch, in nats.
        ideal_label_entropy: The same for an ideal shuffle.
        position_correlation: Correlation of storage index and read position.
        shards_per_batch: Mean distinct shards touched per batch.
        bytes_per_sample: Bytes fetched from storage per sample read, or None without byte sizes.
        read_amplification: ``bytes_per_sample`` over the mean stored sample size, or None.
        mode_params: The mode's parameters.
    """

    mode: str
    world_size: int
    batch_size: int
    num_samples: int
    num_batches: int
    distinct_labels: float
    ideal_distinct_labels: float
    label_entropy: float
    ideal_label_entropy: float
    position_correlation: float
    shards_per_batch: float
    bytes_per_sample: float | None = None
    read_amplification: float | None = None
    mode_params: Mapping[str, int] = field(default_factory=dict)

    @property
    def diversity_ratio(self) -> float:
        """Distinct labels per batch relative to an ideal shuffle (1.0 = ideal)."""
        return _ratio(self.distinct_labels, self.ideal_distinct_labels)

    @property
    def entropy_ratio(self) -> float:
        """Label entropy per batch relative to an ideal shuffle (1.0 = ideal)."""
        return _ratio(self.label_entropy, self.ideal_label_entropy)

    def as_dict(self) -> dict[str, object]:
        """Plain-data view, including the two ratios."""
        data = asdict(self)
        data["mode_params"] = dict(self.mode_params)
        data["diversity_ratio"] = self.diversity_ratio
        data["entropy_ratio"] = self.entropy_ratio
        return data


def _ratio(value: float, ideal: float) -> float:
    return float(value / ideal) if ideal and np.isfinite(ideal) else float("nan")


def _batches(streams: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """Stack every rank's consecutive full batches into a (num_batches, batch) matrix."""
    length = min((s.size for s in streams), default=0)
    width = min(batch_size, length)
    if width == 0:
        return np.zeros((0, 0), dtype=np.int64)
    per_rank = length // width
    return np.concatenate([s[: per_rank * width].reshape(per_rank, width) for s in streams])


def batch_diversity(ids: Sequence[np.ndarray], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and entropy (nats) of each batch.

    Args:
        ids: One array per rank, the value (label, shard id, ...) of each sample in read order.
        batch_size: Samples per batch; each rank's stream is cut into consecutive batches and the
            last partial batch dropped (a rank with fewer samples forms one smaller batch).

    Returns:
        ``(distinct, entropy)``, one entry per batch.
    """
    matrix = _batches(ids, batch_size)
    if matrix.size == 0:
        return np.zeros(0), np.zeros(0)
    rows, width = matrix.shape
    ordered = np.sort(matrix, axis=1)
    new = np.ones(ordered.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    starts = np.flatnonzero(new.ravel())
    p = np.diff(np.r_[starts, ordered.size]) / width
    entropy = np.bincount(starts // width, weights=-p * np.log(p), minlength=rows)
    return new.sum(axis=1).astype(np.float64), entropy


def position_correlation(streams: Sequence[np.ndarray]) -> float:
    """Pearson correlation of storage index with global read position ``k * W + r`` (nan if undefined)."""
    world_size = len(streams)
    length = min((s.size for s in streams), default=0)
    if length * world_size < 2:
        return float("nan")
    index = np.stack([s[:length] for s in streams], axis=1).ravel().astype(np.float64)
    position = np.arange(index.size, dtype=np.float64)
    if index.std() == 0:
        return float("nan")
    return float(np.corrcoef(index, position)[0, 1])


def _chunk_table(shard_nbytes: np.ndarray, chunk_bytes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunking of the shard files: first chunk id and chunk length per shard, byte size per chunk."""
    nbytes = np.asarray(shard_nbytes, dtype=np.int64)
    if chunk_bytes <= 0:
        step = np.maximum(nbytes, 1)
        count = np.ones_like(nbytes)
    else:
        step = np.full_like(nbytes, chunk_bytes)
        count = np.maximum(-(-nbytes // chunk_bytes), 1)
    base = np.cumsum(count) - count
    owner = np.repeat(np.arange(nbytes.size), count)
    offset = (np.arange(int(count.sum())) - base[owner]) * step[owner]
    return base, step, np.clip(nbytes[owner] - offset, 0, step[owner])


def _chunk_reads(
    indices: np.ndarray, layout: ShardLayout, shard_nbytes: np.ndarray, chunk_bytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Chunk ids touched by the reads, in order, and the byte size of every chunk."""
    base, step, chunk_size = _chunk_table(shard_nbytes, chunk_bytes)
    nbytes = np.asarray(shard_nbytes, dtype=np.int64)
    shard = layout.shard_of(indices)
    local = indices - layout.starts[shard]
    per = np.maximum(layout.sizes, 1)[shard]
    lo = local * nbytes[shard] // per
    hi = np.maximum((local + 1) * nbytes[shard] // per - 1, lo)
    first, last = lo // step[shard], hi // step[shard]
    return concat_ranges(base[shard] + first, last - first + 1), chunk_size


def bytes_read(
    indices: np.ndarray,
    layout: ShardLayout,
    shard_nbytes: np.ndarray,
    cache_bytes: int,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> int:
    """Bytes fetched from storage to read ``indices`` in order through an LRU cache.

    Model: storage is read in aligned chunks of ``chunk_bytes`` within each shard file (``0``: whole
    shards); samples are laid out back to back, each ``shard_nbytes / shard_size`` bytes; the cache
    holds up to ``cache_bytes`` of chunks (at least one), starts cold and evicts least recently used.

    Args:
        indices: Global sample indices in read order (for a job: all ranks interleaved).
        layout: Shard sizes.
        shard_nbytes: Bytes per shard file.
        cache_bytes: Cache capacity in bytes.
        chunk_bytes: Read granularity in bytes, ``0`` for whole shards.

    Returns:
        Total bytes fetched.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        return 0
    chunks, chunk_size = _chunk_reads(indices, layout, shard_nbytes, chunk_bytes)
    chunks = chunks[np.r_[True, chunks[1:] != chunks[:-1]]]
    size_of = chunk_size.tolist()
    cache: OrderedDict[int, int] = OrderedDict()
    used = fetched = 0
    for chunk in chunks.tolist():
        if chunk in cache:
            cache.move_to_end(chunk)
            continue
        size = size_of[chunk]
        fetched += size
        cache[chunk] = size
        used += size
        while used > cache_bytes and len(cache) > 1:
            used -= cache.popitem(last=False)[1]
    return fetched


def _ideal_diversity(
    labels: np.ndarray, config: ShuffleConfig, world_size: int, batch_size: int, epoch: int, batches: int
) -> tuple[float, float]:
    """Expected distinct labels and entropy per batch under uniform permutations dealt the same way.

    Averaged over enough independent permutations to cover about ``IDEAL_BATCHES`` batches (at most
    16 permutations), so that the reference is stable on small datasets too.
    """
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(99, epoch)))
    distinct, entropy = [], []
    for _ in range(min(-(-IDEAL_BATCHES // batches), 16)):
        order = rng.permutation(labels.size)
        streams = [labels[deal_global(order, world_size, r, config.drop_last)] for r in range(world_size)]
        d, e = batch_diversity(streams, batch_size)
        distinct.append(d)
        entropy.append(e)
    return float(np.concatenate(distinct).mean()), float(np.concatenate(entropy).mean())


def shuffle_stats(
    layout: ShardLayout,
    labels: np.ndarray | None,
    config: ShuffleConfig,
    *,
    world_size: int,
    batch_size: int,
    epoch: int = 0,
    shard_nbytes: np.ndarray | None = None,
    cache_bytes: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    io_samples: int = DEFAULT_IO_SAMPLES,
) -> ShuffleStats:
    """Measure one epoch of ``config`` on ``world_size`` ranks.

    Args:
        layout: Shard sizes of the dataset.
        labels: Label of every global sample index (negative = unlabeled), or None.
        config: Mode, seed, drop_last and mode parameters.
        world_size: Number of ranks.
        batch_size: Per-rank batch size.
        epoch: Epoch to measure.
        shard_nbytes: Bytes per shard; enables ``bytes_per_sample``.
        cache_bytes: Cache capacity for the IO model (default: 5% of the dataset's bytes).
        chunk_bytes: Read granularity of the IO model (``0``: whole shards).
        io_samples: The IO model simulates the first ``io_samples`` reads of the job (all ranks).

    Returns:
        A :class:`ShuffleStats`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = layout.num_samples
    streams = all_rank_indices(config, layout, epoch, world_size)
    width = min(batch_size, streams[0].size) if streams else 0
    shard_distinct, _ = batch_diversity([layout.shard_of(s) for s in streams], batch_size)
    distinct = entropy = ideal_distinct = ideal_entropy = float("nan")
    if labels is not None and n and np.any(np.asarray(labels) >= 0):
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        d, e = batch_diversity([labels[s] for s in streams], batch_size)
        di, ei = _ideal_diversity(labels, config, world_size, batch_size, epoch, max(d.size, 1))
        distinct, entropy, ideal_distinct, ideal_entropy = float(d.mean()), float(e.mean()), di, ei
    per_sample = amplification = None
    if shard_nbytes is not None and n:
        nbytes = np.asarray(shard_nbytes, dtype=np.int64)
        if nbytes.shape != layout.sizes.shape:
            raise ValueError(f"shard_nbytes must have shape {layout.sizes.shape}, got {nbytes.shape}")
        total = int(nbytes.sum())
        capacity = int(total * DEFAULT_CACHE_FRACTION) if cache_bytes is None else int(cache_bytes)
        read_streams = (
            streams if config.spec.read_order is None else all_rank_read_orders(config, layout, epoch, world_size)
        )
        reads = np.stack(read_streams, axis=1).ravel()[:io_samples]
        per_sample = bytes_read(reads, layout, nbytes, capacity, chunk_bytes) / max(reads.size, 1)
        amplification = per_sample / (total / n) if total else None
    return ShuffleStats(
        mode=config.mode,
        world_size=world_size,
        batch_size=width,
        num_samples=n,
        num_batches=int(shard_distinct.size),
        distinct_labels=distinct,
        ideal_distinct_labels=ideal_distinct,
        label_entropy=entropy,
        ideal_label_entropy=ideal_entropy,
        position_correlation=position_correlation(streams),
        shards_per_batch=float(shard_distinct.mean()) if shard_distinct.size else float("nan"),
        bytes_per_sample=per_sample,
        read_amplification=amplification,
        mode_params=dict(config.params),
    )
