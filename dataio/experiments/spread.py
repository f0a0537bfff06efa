"""How spread out an epoch's batches are: distinct shards and distinct labels per batch. Pure numpy.

A DDP step consumes batch ``j`` of every rank at once, so besides each rank's own batch (what one reader touches)
the *global* batch, the union of the ranks' batch ``j``, is what the averaged gradient sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["batch_spread", "distinct_per_row", "global_batches"]


def distinct_per_row(values: np.ndarray) -> np.ndarray:
    """Number of distinct values in each row of a 2-D integer array (0 for rows of length 0)."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {values.shape}")
    if values.shape[1] == 0:
        return np.zeros(values.shape[0], dtype=np.int64)
    ordered = np.sort(values, axis=1)
    return 1 + (np.diff(ordered, axis=1) != 0).sum(axis=1)


def global_batches(rank_indices: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """``steps × (ranks · batch_size)`` sample indices: row ``j`` is batch ``j`` of every rank (full batches only).

    Raises:
        ValueError: No ranks, or a batch size below 1.
    """
    if not rank_indices:
        raise ValueError("no ranks")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    steps = min(len(ix) for ix in rank_indices) // batch_size
    per_rank = [np.asarray(ix[: steps * batch_size], dtype=np.int64).reshape(steps, batch_size) for ix in rank_indices]
    return np.concatenate(per_rank, axis=1)


def batch_spread(
    rank_indices: Sequence[np.ndarray], batch_size: int, shard_of: np.ndarray, labels: np.ndarray
) -> dict[str, float]:
    """Mean distinct shards per rank batch and per global batch, and mean distinct labels per global batch.

    Args:
        rank_indices: Every rank's epoch indices, in delivery order.
        batch_size: Per-rank batch size.
        shard_of: Shard id of every sample index of the dataset.
        labels: Label of every sample index.
    """
    rows = global_batches(rank_indices, batch_size)
    if rows.shape[0] == 0:
        nan = float("nan")
        return {"shards_per_rank_batch": nan, "shards_per_global_batch": nan, "labels_per_global_batch": nan}
    shards = np.asarray(shard_of)[rows]
    ranks = len(rank_indices)
    per_rank = distinct_per_row(shards.reshape(rows.shape[0] * ranks, batch_size))
    return {
        "shards_per_rank_batch": float(per_rank.mean()),
        "shards_per_global_batch": float(distinct_per_row(shards).mean()),
        "labels_per_global_batch": float(distinct_per_row(np.asarray(labels)[rows]).mean()),
    }
