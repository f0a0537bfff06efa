"""Epochs of datasets that are not served by the fast path, with dataio's extras on top of the batches.

The batches come from torch's own iterators (``num_workers=0``; ``worker_mode="process"``: torch's worker
processes, exactly) or from :class:`~dataio.loaders.generic.threaded.ThreadedIterator` (``worker_mode="thread"``).
:class:`GenericEpoch` wraps that iterator and adds, per delivered batch:

- counters for ``loader.stats()`` (batches, samples, the time the training loop waited for data);
- progress of a dataio sampler (one with ``begin_epoch``/``advance``/``state_dict``): the workers draw indices
  ahead of what was delivered, so the sampler's own position runs ahead by the prefetched batches;
  :meth:`GenericRun.sampler_state` reports the position after the last *delivered* batch instead, and
  ``load_state_dict`` then resumes exactly with the next batch (batches yielded in sampler order, i.e.
  ``in_order=True``);
- ``device=``: tensors moved to that device one batch ahead, on a side CUDA stream (asynchronous when they come
  pinned, i.e. with ``pin_memory=True``): batch ``i + 1`` is copied while the training loop works on batch
  ``i``; the consumer's stream waits on the copy's event and the tensors are marked with ``record_stream``.

Nothing here holds the inner iterator beyond the wrapper itself, so dropping the wrapper drops the epoch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from dataio.sampling.protocol import resumable

__all__ = ["GenericEpoch", "GenericRun", "to_device"]


@dataclass
class GenericRun:
    """The loader's latest generic epoch: what ``stats()`` and ``state_dict()`` report (no iterator inside)."""

    mode: str
    workers: int
    batch_size: int | None
    pass_id: int | None = None  # the dataio sampler pass this epoch draws from
    start: int = 0  # that pass's first global position
    world_size: int = 1
    batches: int = 0
    samples: int = 0
    finished: bool = False
    wait_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls, loader: Any, mode: str) -> GenericRun:
        """Called right before the epoch's iterator is made (it begins the sampler's next pass)."""
        run = cls(mode, int(loader.num_workers), loader.batch_size)
        sampler = resumable(loader.sampler)
        if sampler is not None and loader.batch_size is not None:
            run.pass_id = int(sampler.pass_id) + 1
            run.start = int(sampler.position)
            run.world_size = int(sampler.world_size)
        return run

    def delivered(self, batch: Any, waited: float) -> None:
        self.batches += 1
        self.samples += _batch_len(batch, self.batch_size)
        self.wait_s += waited

    def sampler_state(self, sampler: Any) -> dict[str, Any]:
        """``sampler.state_dict()``, at the position after the last delivered batch of this epoch."""
        state = sampler.state_dict()
        driven = resumable(sampler)
        if self.pass_id is not None and not self.finished and driven is not None and driven.pass_id == self.pass_id:
            state["consumed"] = self.start + self.samples * self.world_size
        return state

    def summary(self) -> dict[str, Any]:
        wall = max(time.perf_counter() - self.started, 1e-9)
        return {
            "path": "generic",
            "worker_mode": self.mode,
            "workers": self.workers,
            "wall_s": wall,
            "batches": self.batches,
            "samples": self.samples,
            "batches_per_s": self.batches / wall,
            "samples_per_s": self.samples / wall,
            "consumer_wait_s": self.wait_s,
            "consumer_wait_pct": 100.0 * self.wait_s / wall,
        }


def _batch_len(batch: Any, batch_size: int | None) -> int:
    """Samples in a collated batch: the first dimension of its first tensor, else ``batch_size`` (or 1)."""
    for leaf in _leaves(batch):
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    if isinstance(batch, list | tuple) and batch_size is not None:
        return len(batch)
    return int(batch_size or 1)


def _leaves(x: Any, depth: int = 0) -> Iterator[Any]:
    if depth > 4:
        return
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v, depth + 1)
    elif isinstance(x, list | tuple):
        for v in x:
            yield from _leaves(v, depth + 1)
    else:
        yield x


def to_device(x: Any, device: torch.device) -> Any:
    """Tensors inside dicts, lists, tuples and named tuples moved to ``device`` (other values kept)."""
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=True)
    if isinstance(x, dict):
        moved = {k: to_device(v, device) for k, v in x.items()}
        return moved if type(x) is dict else type(x)(moved)
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(to_device(v, device) for v in x))
    if isinstance(x, list | tuple):
        return type(x)(to_device(v, device) for v in x)
    return x


class GenericEpoch(Iterator[Any]):
    """One epoch of a generic-path iterator with stats, sampler progress and the device copy (see module)."""

    def __init__(
        self, inner: Iterator[Any], run: GenericRun, device: str | torch.device | None, persistent: bool = False
    ) -> None:
        self._inner = inner
        self._run = run
        self._persistent = persistent
        dev = torch.device(device) if device is not None else None
        self._device = dev if dev is not None and dev.type != "cpu" else None
        self._stream = torch.cuda.Stream(self._device) if self._device is not None and dev.type == "cuda" else None
        self._ahead: tuple[Any, Any, Any, float] | None = None  # (host batch, device batch, copy event, wait)
        self._exhausted = False

    def __next__(self) -> Any:
        if self._stream is not None:
            return self._next_prefetched()
        t0 = time.perf_counter()
        try:
            batch = next(self._inner)
        except StopIteration:
            self._run.finished = True
            raise
        self._run.delivered(batch, time.perf_counter() - t0)
        return to_device(batch, self._device) if self._device is not None else batch

    def _fetch_and_copy(self) -> tuple[Any, Any, Any, float] | None:
        """The next batch from the workers, its copy to the device started on the side stream (None at the end)."""
        if self._exhausted:
            return None
        t0 = time.perf_counter()
        try:
            batch = next(self._inner)
        except StopIteration:
            self._exhausted = True
            return None
        waited = time.perf_counter() - t0
        with torch.cuda.stream(self._stream):
            moved = to_device(batch, self._device)
            event = torch.cuda.Event()
            event.record(self._stream)
        return batch, moved, event, waited

    def _next_prefetched(self) -> Any:
        current = self._ahead if self._ahead is not None else self._fetch_and_copy()
        if current is None:
            self._run.finished = True
            raise StopIteration
        self._ahead = self._fetch_and_copy()  # batch i + 1 is copied while the caller works on batch i
        host, moved, event, waited = current
        stream = torch.cuda.current_stream(self._device)
        stream.wait_event(event)
        for leaf in _leaves(moved):
            if isinstance(leaf, torch.Tensor) and leaf.is_cuda:
                leaf.record_stream(stream)  # the caching allocator must not reuse it while that stream may read it
        self._run.delivered(host, waited)
        return moved

    def __iter__(self) -> GenericEpoch:
        return self

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stops the epoch's workers now (they are also stopped when this iterator is dropped). Persistent
        workers belong to the loader and are kept. Idempotent."""
        if self._persistent:
            return
        close = getattr(self._inner, "close", None) or getattr(self._inner, "_shutdown_workers", None)
        if close is not None:
            close()
