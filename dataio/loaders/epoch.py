"""One epoch of a pipeline-backed loader: which samples, in which order, with which augmentation seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dataio.sampling.protocol import resumable

__all__ = ["EpochPlan", "plan_epoch"]


@dataclass(frozen=True)
class EpochPlan:
    """The samples of one epoch (from the sampler's current position), batched.

    Attributes:
        indices: Dataset indices in delivery order (``drop_last`` already applied).
        epoch: The sampler's epoch (augmentation randomness is keyed by it).
        seed: Augmentation seed: the loader's ``seed``, else the sampler's.
        batch_size: Samples per batch (the last one may be shorter).
        pass_id: The sampler's pass (see ``DistributedShuffleSampler.advance``), or None.
    """

    indices: np.ndarray
    epoch: int
    seed: int
    batch_size: int
    pass_id: int | None = None

    def advance(self, sampler: Any, count: int) -> None:
        """Reports ``count`` delivered samples of this pass to the sampler (a no-op for torch's samplers: a plan
        has a ``pass_id`` only when :func:`plan_epoch` began the pass of a resumable sampler)."""
        if self.pass_id is not None:
            sampler.advance(count, self.pass_id)

    @property
    def num_batches(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def batch_len(self, batch: int) -> int:
        return min(self.batch_size, len(self.indices) - batch * self.batch_size)


def plan_epoch(loader: Any) -> EpochPlan:
    """Starts an epoch of ``loader``'s sampler (a resumed sampler yields only what is left of its epoch)."""
    sampler = resumable(loader.sampler)
    batch_size = int(loader.batch_size or 1)
    pass_id = None
    if sampler is not None:
        indices = np.asarray(sampler.begin_epoch(), dtype=np.int64)
        epoch, seed, pass_id = int(sampler.epoch), int(sampler.seed), int(sampler.pass_id)
    else:
        torch.empty((), dtype=torch.int64).random_(generator=loader.generator)  # as torch's iterator does
        indices = np.fromiter(iter(loader.sampler), dtype=np.int64)
        epoch, seed = 0, 0
    seed = int(loader.seed) if loader.seed is not None else seed
    n = len(indices) - (len(indices) % batch_size if loader.drop_last else 0)
    return EpochPlan(indices[:n], epoch, seed, batch_size, pass_id)
