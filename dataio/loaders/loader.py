"""``dataio.DataLoader``: ``torch.utils.data.DataLoader`` with a choice of worker processes or threads, and a fast
read → decode → augment → collate → GPU-prefetch pipeline for packed datasets.

It *is* a ``torch.utils.data.DataLoader`` (a subclass): the constructor takes exactly torch's parameters with
torch's defaults and validation, builds the same samplers and batch samplers, and ``len()`` is torch's. What
changes is how batches are produced:

- ``num_workers=0``: torch's own single-process iterator (identical behaviour).
- ``worker_mode="process"`` (the default without ``pipeline=``): torch's own worker processes, exactly
  (map-style and iterable datasets; seeding, worker info, persistent workers, timeouts, errors, pin thread).
- ``worker_mode="thread"``: ``num_workers`` threads with the same contracts (:mod:`dataio.loaders.generic.threaded`):
  better for IO-bound datasets, worse for GIL-bound ``__getitem__``.
- Both get dataio's extras (:mod:`dataio.loaders.generic.epoch`): ``stats()``, ``state_dict()`` resume of dataio
  samplers after the last delivered batch, ``device=``, ``progress=``, ``shuffle_mode=`` samplers.
- a :class:`~dataio.ShardDataset` with ``pipeline=`` (e.g. :class:`~dataio.ImagePipeline`): the fast path
  (:mod:`dataio.loaders.fast`, always threads), autotuned online (:mod:`dataio.loaders.autotune`); with
  ``ImagePipeline(backend="dali")``, NVIDIA DALI decodes (:mod:`dataio.loaders.dali.iterator`).

Design notes and the table of torch's behaviour vs dataio's: ``docs/loader.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch.utils.data

from dataio.dataset import ShardDataset
from dataio.loaders.autotune import AutotuneConfig
from dataio.loaders.fast.iterator import FastIterator  # at import time: no epoch thread ever imports (see below)
from dataio.loaders.generic.epoch import GenericEpoch, GenericRun
from dataio.loaders.generic.threaded import ThreadedIterator
from dataio.loaders.runtime import LoaderRuntime
from dataio.loaders.stats import verdict

__all__ = ["DataLoader"]

_WORKER_MODES = ("process", "thread")


def _mode_params(mode: str | None, **given: int | None) -> dict[str, int]:
    """The shuffle-mode parameters given (not None), checked to belong to ``mode``."""
    from dataio.sampling import get_mode

    params = {name: value for name, value in given.items() if value is not None}
    if not params:
        return {}
    if mode is None:
        raise ValueError(f"{', '.join(params)}= need shuffle_mode= (block_size, window: 'block'; buffer_size: 'shard')")
    foreign = [name for name in params if name not in get_mode(mode).defaults]
    if foreign:
        raise ValueError(f"shuffle_mode={mode!r} has no parameter {', '.join(foreign)}")
    return params


class DataLoader(torch.utils.data.DataLoader):
    """Drop-in replacement for ``torch.utils.data.DataLoader`` (same signature, defaults and meaning).

    Extra keyword-only options:
        worker_mode: How ``num_workers > 0`` datasets without ``pipeline=`` are served: ``"process"`` (the
            default: torch's worker processes, exactly torch's behaviour) or ``"thread"`` (worker threads with
            torch's contracts; see ``docs/loader.md`` for the few intended differences). The fast path always
            uses threads (``"process"`` with ``pipeline=`` is refused).
        pipeline: Per-sample processing for the fast path over a ShardDataset (an ImagePipeline).
        device: ``"cuda"`` etc.: batches arrive on that device (fast path: copied on a side stream ahead of use;
            otherwise each batch's tensors are moved with ``non_blocking=True``, asynchronous with
            ``pin_memory=True``).
        shuffle_mode: Sampling mode for a ShardDataset (``global``, ``local``, ``shard``, ``block``,
            ``sequential``); the sampler is then a rank-aware :class:`~dataio.DistributedShuffleSampler`.
        block_size, window: ``shuffle_mode="block"``: samples per block, blocks per shuffle window (as the
            sampler's; defaults 16 and 1024).
        buffer_size: ``shuffle_mode="shard"``: shuffle buffer slots (as the sampler's; default 1024).
        seed: Seed of shuffling and augmentation (default: drawn from ``generator`` or torch's RNG once).
        on_error: Fast path: a sample that fails to decode raises (``"raise"``, naming its key) or is left out of
            its batch and counted in ``stats()["skipped"]`` (``"skip"``).
        progress: Show a per-epoch progress bar (batches, batches/s) on stderr.
        autotune: Fast path: tune decode threads, batches in flight and reads in flight online for the highest
            throughput within CPU and memory limits (``True``, the default; an :class:`AutotuneConfig` to set
            its limits), or keep ``num_workers`` / ``prefetch_factor`` / the reader's threads fixed (``False``).
            Its settings and every decision are in ``stats()["autotune"]``.

    Every epoch iterator has an idempotent ``close()`` that stops its threads or processes at once (an epoch
    left early; they are also stopped when the iterator is garbage-collected; persistent workers live as long
    as the loader). ``set_epoch(e)`` forwards to the sampler when it has ``set_epoch``. ``state_dict()`` /
    ``load_state_dict()`` resume mid-epoch with exactly the batches the old loader would have produced next
    (a dataio sampler: ``shuffle_mode=`` or a ``DistributedShuffleSampler``). ``stats()`` reports every stage
    on the fast path, and batches, samples and the consumer's wait on the generic path.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int | None = 1,
        shuffle: bool | None = None,
        sampler: Any = None,
        batch_sampler: Any = None,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        drop_last: bool = False,
        timeout: float = 0,
        worker_init_fn: Callable[[int], None] | None = None,
        multiprocessing_context: Any = None,
        generator: Any = None,
        *,
        prefetch_factor: int | None = None,
        persistent_workers: bool = False,
        pin_memory_device: str = "",
        in_order: bool = True,
        pipeline: Any = None,
        device: str | None = None,
        shuffle_mode: str | None = None,
        seed: int | None = None,
        on_error: str = "raise",
        progress: bool = False,
        autotune: bool | AutotuneConfig = True,
        worker_mode: str | None = None,
        block_size: int | None = None,
        window: int | None = None,
        buffer_size: int | None = None,
    ) -> None:
        if worker_mode is not None and worker_mode not in _WORKER_MODES:
            raise ValueError(f"worker_mode must be 'process' or 'thread', got {worker_mode!r}")
        if pipeline is not None and worker_mode == "process":
            raise ValueError("pipeline= runs on threads (its decoding releases the GIL): use worker_mode='thread'")
        self.worker_mode = worker_mode or ("thread" if pipeline is not None else "process")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not isinstance(autotune, (bool, AutotuneConfig)):
            raise ValueError(f"autotune must be True, False or an AutotuneConfig, got {autotune!r}")
        self.autotune_config = AutotuneConfig() if autotune is True else (autotune or None)
        self._runtime = LoaderRuntime()
        self.pipeline = pipeline
        self.device = device
        self.shuffle_mode = shuffle_mode
        self.seed = seed
        self.on_error = on_error
        self.progress = progress
        mode_params = _mode_params(shuffle_mode, block_size=block_size, window=window, buffer_size=buffer_size)
        if shuffle_mode is not None or pipeline is not None:
            if not hasattr(dataset, "shard_sizes"):
                raise TypeError("pipeline= and shuffle_mode= need a dataio ShardDataset (dataio.open_dataset)")
            if sampler is None and batch_sampler is None:
                sampler = self._shard_sampler(dataset, shuffle, shuffle_mode, seed, generator, drop_last, mode_params)
                shuffle = None
            elif mode_params:
                raise ValueError(f"{', '.join(mode_params)}= configure shuffle_mode's sampler, not a given sampler")
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            collate_fn=collate_fn,
            pin_memory=pin_memory,
            drop_last=drop_last,
            timeout=timeout,
            worker_init_fn=worker_init_fn,
            multiprocessing_context=multiprocessing_context,
            generator=generator,
            prefetch_factor=prefetch_factor,
            persistent_workers=persistent_workers,
            pin_memory_device=pin_memory_device,
            in_order=in_order,
        )

    @staticmethod
    def _shard_sampler(
        dataset: Any,
        shuffle: bool | None,
        mode: str | None,
        seed: int | None,
        generator: Any,
        drop_last: bool,
        mode_params: dict[str, int],
    ) -> Any:
        from dataio.sampling import DistributedShuffleSampler

        if seed is None:
            seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item()) % 2**31
        if mode is None:  # a plain DataLoader(shuffle=…) over a ShardDataset: not rank-aware, like torch's
            return DistributedShuffleSampler(
                dataset, "global" if shuffle else "sequential", seed=seed, rank=0, world_size=1
            )
        return DistributedShuffleSampler(
            dataset,
            mode,
            seed=seed,
            drop_last=drop_last,
            block_size=mode_params.get("block_size"),
            window=mode_params.get("window"),
            buffer_size=mode_params.get("buffer_size"),
        )

    def state_dict(self) -> dict[str, Any]:
        """Resumable state (plain data): the sampler's position, epoch and seed.

        The state taken between two batches resumes exactly after the last one delivered: the fast path advances
        the sampler only for batches handed out; on the generic path (whose workers draw indices ahead) the
        sampler's position is replaced by the one after the last delivered batch (with ``in_order=True``).
        """
        state = getattr(self.sampler, "state_dict", None)
        if state is None:
            raise TypeError(f"{type(self.sampler).__name__} has no state_dict(): use a DistributedShuffleSampler")
        run = self._runtime.generic_run if self.pipeline is None else None
        sampler_state = run.sampler_state(self.sampler) if run is not None else state()
        return {"kind": "dataio.DataLoader", "version": 1, "sampler": sampler_state, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; the next iteration continues where the saved loader stopped."""
        if not isinstance(state, dict) or state.get("kind") != "dataio.DataLoader":
            raise ValueError("not a dataio.DataLoader state dict")
        self.sampler.load_state_dict(state["sampler"])
        self.seed = state.get("seed", self.seed)

    def stats(self) -> dict[str, Any]:
        """Per-stage throughput, busy %, queue occupancy, consumer wait and a one-line verdict (fast path),
        plus the reader's request/byte/retry counters and the cache's hits and misses when present. On the
        generic path: the latest epoch's batches, samples, rates and the consumer's wait for data."""
        stats = self._runtime.stats
        out: dict[str, Any] = stats.summary() if stats is not None else {}
        if self.pipeline is None and self._runtime.generic_run is not None:
            out.update(self._runtime.generic_run.summary())
        if isinstance(self.dataset, ShardDataset):
            io = self.dataset.io_stats()
            if io is not None:
                out["io"] = io
                if "verdict" in out:
                    out["verdict"] = verdict(out)  # again, now that it can weigh reads in flight and client CPU
            cache = self.dataset.cache_stats()
            if cache is not None:
                out["cache"] = cache
        return out

    @property
    def runtime(self) -> LoaderRuntime:
        """What this loader keeps across epochs: tuning, batch buffers, stats, the native kernel, DALI pipelines."""
        return self._runtime

    def check_worker_number_rationality(self) -> None:
        """torch warns when worker *processes* outnumber the cores; threads that mostly wait on IO and on
        GIL-free decoding may."""
        if getattr(self, "worker_mode", "process") == "process" and getattr(self, "pipeline", None) is None:
            super().check_worker_number_rationality()

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch of the sampler (and of augmentation randomness on the fast path)."""
        for candidate in (self.sampler, getattr(self.batch_sampler, "sampler", None)):
            set_epoch = getattr(candidate, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(epoch)
                return

    def __iter__(self) -> Any:
        if self.pipeline is not None:
            it: Any = self._get_iterator()  # a fresh pipeline every epoch (threads start in microseconds)
        else:
            run = GenericRun.begin(self, self.worker_mode if self.num_workers > 0 else "main")
            persistent = bool(self.persistent_workers and self.num_workers > 0)
            it = GenericEpoch(super().__iter__(), run, self.device, persistent)  # torch's persistent-worker logic
            self._runtime.generic_run = run
        if not self.progress:
            return it
        from tqdm import tqdm

        epoch = getattr(self.sampler, "epoch", None)
        try:
            total: int | None = len(it)
        except TypeError:  # a sampler without __len__
            total = None
        return iter(tqdm(it, total=total, unit="batch", desc=f"epoch {epoch}" if epoch is not None else None))

    def _get_iterator(self) -> Iterable[Any]:
        if getattr(self.pipeline, "backend", None) == "dali":
            from dataio.loaders.dali.iterator import DaliIterator

            return DaliIterator(self)
        if self.pipeline is not None:
            return FastIterator(self)
        if self.num_workers > 0 and self.worker_mode == "thread":
            return ThreadedIterator(self)
        return super()._get_iterator()  # torch's single-process or worker-process iterator
