"""What a sampler must offer for the loaders to resume it mid-epoch and to read its shards in order.

:class:`~dataio.sampling.DistributedShuffleSampler` is the implementation; the loaders (fast path, DALI path,
generic path) meet a sampler only through :func:`resumable`, never by probing attributes one at a time. Any
other sampler (torch's, a user's) is iterated as torch's loader would iterate it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["ResumableSampler", "resumable"]


@runtime_checkable
class ResumableSampler(Protocol):
    """A sampler whose passes the loader drives: begin a pass, report delivered samples, resume from a state.

    Attributes:
        epoch: The current epoch (augmentation randomness is keyed by it).
        seed: The shuffle seed.
        pass_id: Identifies the current pass; :meth:`begin_epoch`, ``set_epoch`` and ``load_state_dict`` change it.
        position: Where the upcoming samples start, in global positions.
        world_size: Ranks sharing each epoch.
    """

    @property
    def epoch(self) -> int: ...

    @property
    def seed(self) -> int: ...

    @property
    def pass_id(self) -> int: ...

    @property
    def position(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    def begin_epoch(self) -> np.ndarray:
        """Starts a pass over the current epoch; returns this rank's indices from the current position."""
        ...

    def advance(self, count: int, pass_id: int | None = None) -> None:
        """Records ``count`` more delivered samples of pass ``pass_id`` (ignored if a newer pass began)."""
        ...

    def shard_order(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Shard ids this rank reads from the current position on, in first-access order."""
        ...

    def read_order(self, indices: np.ndarray) -> np.ndarray | None:
        """What is left of the pass in the mode's storage read order, or None to read in delivery order."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Any) -> None: ...


def resumable(sampler: object) -> ResumableSampler | None:
    """``sampler`` if it is a :class:`ResumableSampler`, else ``None`` (torch's samplers, a user's iterable)."""
    return sampler if isinstance(sampler, ResumableSampler) else None
