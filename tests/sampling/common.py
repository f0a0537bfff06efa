"""Strategies and adapters shared by the sampling tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from hypothesis import strategies as st

from dataio.sampling import MODES, DistributedShuffleSampler

ALL_MODES = sorted(MODES)
ELASTIC_MODES = sorted(name for name, mode in MODES.items() if mode.elastic)
PARTITIONED_MODES = sorted(name for name, mode in MODES.items() if not mode.elastic)
SHUFFLING_MODES = [m for m in ALL_MODES if m != "sequential"]


class Sharded:
    """Minimal stand-in for a ShardDataset: only ``shard_sizes`` and ``len``."""

    def __init__(self, sizes: Any) -> None:
        self.shard_sizes = np.asarray(sizes, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.shard_sizes.sum())

    def __repr__(self) -> str:
        return f"Sharded({self.shard_sizes.tolist()})"


datasets = st.one_of(
    st.lists(st.integers(0, 40), max_size=25).map(Sharded),
    st.integers(0, 500).map(range),
)
mode_kwargs = st.fixed_dictionaries(
    {
        "block_size": st.integers(1, 9),
        "window": st.integers(1, 6),
        "buffer_size": st.integers(1, 20),
        "shard_size": st.integers(1, 64),
    }
)


def rank_epochs(dataset: Any, mode: str, world_size: int, **kw: Any) -> list[np.ndarray]:
    """Every rank's ``epoch_indices()``."""
    return [
        DistributedShuffleSampler(dataset, mode, world_size=world_size, rank=r, **kw).epoch_indices()
        for r in range(world_size)
    ]


def interleave(streams: list[np.ndarray]) -> np.ndarray:
    """Global read order of equal-length rank streams: step k of rank r at position k * W + r."""
    if not streams or streams[0].size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.stack(streams, axis=1).ravel()


class Job:
    """All ranks of a job stepping in lockstep, seen as one resumable object (for assert_state_roundtrip)."""

    def __init__(self, dataset: Any, world_size: int, mode: str, **kw: Any) -> None:
        self.ranks = [
            DistributedShuffleSampler(dataset, mode, world_size=world_size, rank=r, **kw)
            for r in range(world_size)
        ]
        self._iters: list[Iterator[int]] | None = None

    def state_dict(self) -> dict[str, Any]:
        states = [s.state_dict() for s in self.ranks]
        assert all(s == states[0] for s in states), "ranks disagree on the state"
        return states[0]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for sampler in self.ranks:
            sampler.load_state_dict(state)

    def consume(self, steps: int | None) -> list[int]:
        """Each rank yields ``steps`` more samples (None: to the end); returns them interleaved."""
        if self._iters is None:
            self._iters = [iter(s) for s in self.ranks]
        out: list[int] = []
        while steps is None or len(out) < steps * len(self.ranks):
            row = [next(it, None) for it in self._iters]
            if row[0] is None:
                assert all(x is None for x in row), "ranks ended at different steps"
                break
            out.extend(row)  # type: ignore[arg-type]
        return out
