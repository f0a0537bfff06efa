"""DistributedShuffleSampler: a resumable, elastic, mode-selectable distributed sampler."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sized
from typing import Any

import numpy as np

from dataio.sampling.distributed import resolve_rank_world
from dataio.sampling.layout import ShardLayout, first_use_order
from dataio.sampling.modes import get_mode, resolve_params
from dataio.sampling.plan import ShuffleConfig, epoch_length, in_order_of, rank_indices, remaining_length
from dataio.sampling.quality import ShuffleStats, shuffle_stats
from dataio.sampling.state import STATE_KIND, check_state

__all__ = ["DEFAULT_SHARD_SIZE", "DistributedShuffleSampler"]

DEFAULT_SHARD_SIZE = 1024


def _layout_of(dataset: object, shard_size: int) -> ShardLayout:
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)):
        raise TypeError(f"shard_size must be an int, got {type(shard_size).__name__}")
    sizes = getattr(dataset, "shard_sizes", None)
    if sizes is not None:
        layout = ShardLayout(np.asarray(sizes))
        if isinstance(dataset, Sized) and len(dataset) != layout.num_samples:
            raise ValueError(f"len(dataset)={len(dataset)} but its shard_sizes sum to {layout.num_samples}")
        return layout
    if not isinstance(dataset, Sized):
        raise TypeError(f"dataset must be Sized or expose shard_sizes, got {type(dataset).__name__}")
    return ShardLayout.uniform(len(dataset), int(shard_size))


class DistributedShuffleSampler:
    """Shuffle sampler for single- and multi-rank training, usable as ``DataLoader(sampler=...)``.

    Each epoch's order is a pure function of ``(seed, epoch, shard sizes)`` (and of the world size
    for the partitioned modes), so every rank, worker and restart computes the same order. Every rank
    yields exactly ``len(self)`` samples (see :mod:`dataio.sampling.plan` for the padding rule).

    Args:
        dataset: A ShardDataset (anything with ``shard_sizes``) or any Sized dataset, whose samples
            are then grouped into stand-in shards of ``shard_size`` consecutive samples.
        mode: ``"global"``, ``"local"``, ``"shard"``, ``"block"`` or ``"sequential"``
            (see :mod:`dataio.sampling.modes`).
        seed: Non-negative int seed shared by all ranks.
        rank: This rank; default from torch.distributed, then ``RANK``, then 0.
        world_size: Number of ranks; default from torch.distributed, then ``WORLD_SIZE``, then 1.
        drop_last: Yield ``floor(n / W)`` per rank instead of padding to ``ceil(n / W)``.
        shard_size: Stand-in shard size for datasets without ``shard_sizes``.
        block_size: ``block`` mode: samples per block (default 16).
        window: ``block`` mode: blocks per shuffle window (default 1024).
        buffer_size: ``shard`` mode: shuffle buffer slots (default 1024).

    An empty dataset is valid: every epoch is empty.
    """

    def __init__(
        self,
        dataset: object,
        mode: str = "global",
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = False,
        shard_size: int = DEFAULT_SHARD_SIZE,
        block_size: int | None = None,
        window: int | None = None,
        buffer_size: int | None = None,
    ) -> None:
        params = {"block_size": block_size, "window": window, "buffer_size": buffer_size}
        self._config = ShuffleConfig(mode, seed, drop_last, params)
        self._rank, self._world_size = resolve_rank_world(rank, world_size)
        self._layout = _layout_of(dataset, shard_size)
        self._dataset = dataset
        self._epoch = 0
        self._consumed = 0
        self._resume_pending = False  # set by load_state_dict: the next pass starts at `consumed`
        self._pass_active = False  # between begin_epoch() / __iter__ and the next set_epoch / load
        self._iteration = 0  # invalidates running iterators on set_epoch / load_state_dict

    # -- description ---------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """Shuffle mode name."""
        return self._config.mode

    @property
    def seed(self) -> int:
        """Seed shared by all ranks."""
        return self._config.seed

    @property
    def mode_params(self) -> dict[str, int]:
        """The mode's parameters (defaults filled in)."""
        return dict(self._config.params)

    @property
    def drop_last(self) -> bool:
        """Whether the tail is dropped instead of padded."""
        return self._config.drop_last

    @property
    def rank(self) -> int:
        """This rank."""
        return self._rank

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self._world_size

    @property
    def layout(self) -> ShardLayout:
        """Shard sizes (real or stand-in) the modes work on."""
        return self._layout

    @property
    def num_samples(self) -> int:
        """Samples in the dataset."""
        return self._layout.num_samples

    @property
    def epoch(self) -> int:
        """Current epoch."""
        return self._epoch

    @property
    def consumed(self) -> int:
        """Global positions consumed in the current epoch (``k * W`` once each rank yielded ``k``)."""
        return self._consumed

    @property
    def position(self) -> int:
        """Where the upcoming samples start, in global positions.

        During an unfinished pass, the current position (``consumed``); otherwise where the next pass
        will start: the loaded position right after ``load_state_dict``, else 0.
        """
        if self._resume_pending or (self._pass_active and self._left(self._consumed)):
            return self._consumed
        return 0

    def _left(self, position: int) -> int:
        return remaining_length(self._config, self.num_samples, self._world_size, position)

    def __len__(self) -> int:
        """Samples per rank in a full epoch (like torch's DistributedSampler, not the remainder)."""
        return epoch_length(self.num_samples, self._world_size, self._config.drop_last)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mode={self.mode!r}, seed={self.seed}, rank={self._rank}, "
            f"world_size={self._world_size}, epoch={self._epoch}, consumed={self._consumed}, "
            f"num_samples={self.num_samples}, mode_params={self.mode_params})"
        )

    # -- epochs and iteration ------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; a new epoch starts from its beginning, the current one is kept as is.

        Calling it with the current epoch (as a training loop does right after ``load_state_dict``)
        keeps the resume position.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"epoch must be an int, got {type(epoch).__name__}")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if int(epoch) != self._epoch:
            self._epoch = int(epoch)
            self._consumed = 0
            self._resume_pending = False
            self._pass_active = False
            self._iteration += 1

    def epoch_indices(self) -> np.ndarray:
        """This rank's upcoming indices of the current epoch as an int64 array (no side effect).

        Outside a pass (or once it is finished) these are the indices the next pass yields: the whole
        epoch, or its rest right after ``load_state_dict``. During a pass they start at the current
        position.
        """
        return rank_indices(self._config, self._layout, self._epoch, self._world_size, self._rank, self.position)

    def begin_epoch(self) -> np.ndarray:
        """Start a pass over the current epoch and return its indices (the loader's fast path).

        Like ``__iter__``: right after ``load_state_dict`` the pass resumes at the loaded position
        (possibly empty, if that epoch was finished); otherwise it starts at the beginning of the epoch,
        so iterating twice without ``set_epoch`` replays the epoch as torch's DistributedSampler does.
        Report progress with :meth:`advance`.
        """
        self._consumed = self._consumed if self._resume_pending else 0
        self._resume_pending = False
        self._pass_active = True
        self._iteration += 1
        return rank_indices(self._config, self._layout, self._epoch, self._world_size, self._rank, self._consumed)

    @property
    def pass_id(self) -> int:
        """Identifies the current pass: :meth:`begin_epoch`, ``set_epoch`` and ``load_state_dict`` change it."""
        return self._iteration

    def advance(self, count: int, pass_id: int | None = None) -> None:
        """Record that this rank consumed ``count`` more samples of the pass begun by :meth:`begin_epoch`.

        Args:
            count: Samples consumed since the last call.
            pass_id: :attr:`pass_id` right after the caller's ``begin_epoch()``; when a later pass has begun
                since (a second iterator of the same loader, a ``set_epoch``), the call is ignored: only the
                newest pass is the sampler's position, as with ``__iter__``.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise TypeError(f"count must be an int, got {type(count).__name__}")
        if pass_id is not None and pass_id != self._iteration:
            return
        if not self._pass_active:
            raise RuntimeError("advance() needs a pass: call begin_epoch() first")
        left = self._left(self._consumed)
        if not 0 <= count <= left:
            raise ValueError(f"count must be in [0, {left}], got {count}")
        self._consumed += int(count) * self._world_size

    def __iter__(self) -> Iterator[int]:
        """Yield this pass's indices as Python ints (see :meth:`begin_epoch`), counting progress."""
        indices = self.begin_epoch()
        return self._generate(indices, self._consumed, self._iteration)

    def _generate(self, indices: np.ndarray, start: int, iteration: int) -> Iterator[int]:
        step = self._world_size
        for k, index in enumerate(indices.tolist(), start=1):
            if self._iteration == iteration:
                self._consumed = start + k * step
            yield index

    # -- shard access order (cache prefetch / eviction) ----------------------------------------
    def shard_schedule(self, indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's upcoming shard accesses from the current position.

        Args:
            indices: The array :meth:`epoch_indices` returned, if the caller already has it (saves
                recomputing the epoch).

        Returns:
            ``(shards, first, last)``: shard ids in order of first access, and for each the rank-local
            position (0 = next sample) of its first and last access; a cache can prefetch in
            ``shards`` order and evict a shard after position ``last``.
        """
        upcoming = self.epoch_indices() if indices is None else np.asarray(indices, dtype=np.int64)
        return first_use_order(self._layout.shard_of(upcoming), self._layout.num_shards)

    def read_order(self, indices: np.ndarray) -> np.ndarray | None:
        """``indices`` (what is left of this pass, as :meth:`begin_epoch` returned it) rearranged in the mode's
        storage read order, or ``None`` when the mode reads in delivery order.

        ``shard`` mode reads shard after shard and delivers through a shuffle buffer: reading in this order and
        delivering through a buffer of ``buffer_size`` samples gives exactly the delivery order, with reads that
        are sequential inside each shard.
        """
        spec = self._config.spec
        if spec.read_order is None:
            return None
        full = spec.read_order(self._layout, self.seed, self._epoch, self._world_size, self._rank, **self.mode_params)
        return in_order_of(full, np.asarray(indices, dtype=np.int64))

    def shard_order(self, indices: np.ndarray | None = None) -> np.ndarray:
        """Shard ids this rank will read from the current position on, in first-access order."""
        return self.shard_schedule(indices)[0]

    # -- resumable state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable state: epoch, seed, mode, parameters and global progress."""
        return {
            "kind": STATE_KIND,
            "version": 1,
            "mode": self.mode,
            "seed": self.seed,
            "mode_params": self.mode_params,
            "epoch": self._epoch,
            "consumed": self._consumed,
            "world_size": self._world_size,
            "drop_last": self.drop_last,
            "num_samples": self.num_samples,
            "layout_digest": self._layout.digest,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; mode, seed and mode parameters are taken from it.

        ``global``, ``block`` and ``sequential`` resume on any world size: the remaining global order
        is dealt to the new ranks, with no sample skipped or repeated. ``local`` and ``shard`` resume
        on the same world size only.

        Raises:
            TypeError: If the state or one of its values has the wrong type.
            ValueError: If it does not belong to this dataset or cannot resume on this world size.
        """
        fields = check_state(state)
        spec = get_mode(fields["mode"])
        params = resolve_params(spec, fields["mode_params"])
        if fields["num_samples"] != self.num_samples:
            raise ValueError(
                f"state is for a dataset of {fields['num_samples']} samples, this one has {self.num_samples}"
            )
        if spec.uses_shards and fields["layout_digest"] != self._layout.digest:
            raise ValueError(f"mode {spec.name!r} depends on the shard sizes, which differ from the state's")
        saved_world = fields["world_size"]
        limit = epoch_length(self.num_samples, saved_world, fields["drop_last"]) * saved_world
        if fields["consumed"] > max(limit, self.num_samples):
            raise ValueError(f"consumed={fields['consumed']} exceeds the epoch ({limit} positions)")
        if not spec.elastic:
            if saved_world != self._world_size:
                raise ValueError(
                    f"mode {spec.name!r} partitions the data by world size: a state saved on "
                    f"{saved_world} ranks cannot resume on {self._world_size}; use the same world size "
                    "or an elastic mode ('global', 'block')"
                )
            if fields["consumed"] % saved_world:
                raise ValueError(f"consumed={fields['consumed']} is not a multiple of world_size={saved_world}")
        self._config = ShuffleConfig(spec.name, fields["seed"], self.drop_last, params)
        self._epoch = fields["epoch"]
        self._consumed = fields["consumed"]
        self._resume_pending = True
        self._pass_active = False
        self._iteration += 1

    # -- quality -------------------------------------------------------------------------------
    def shuffle_stats(self, batch_size: int, **io: Any) -> ShuffleStats:
        """Shuffle quality / IO numbers of the current epoch on this sampler's world size.

        Labels and shard byte sizes come from the dataset's ``labels`` / ``shard_nbytes`` when present.
        Keyword arguments go to :func:`dataio.sampling.quality.shuffle_stats` (``cache_bytes``,
        ``chunk_bytes``, ``io_samples``, ``labels``, ``shard_nbytes``).
        """
        labels = io.pop("labels", getattr(self._dataset, "labels", None))
        nbytes = io.pop("shard_nbytes", getattr(self._dataset, "shard_nbytes", None))
        return shuffle_stats(
            self._layout,
            labels,
            self._config,
            world_size=self._world_size,
            batch_size=batch_size,
            epoch=self._epoch,
            shard_nbytes=nbytes,
            **io,
        )
