"""What a :class:`dataio.DataLoader` keeps between epochs, in one object the loader owns.

Iterators come and go (one per epoch, sometimes two at once); the loader's tuned settings, its reusable batch
buffers, its stats, the native kernel's thread pool, its DALI pipelines and (generic datasets) the record of the
latest epoch outlive them. They live here, so no
iterator writes attributes onto the loader, and two live iterators do not fight over one tuner: the first takes
the shared :class:`PipelineTuning` (and tunes it), a second one meanwhile runs on a private, fixed copy of the
current settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dataio.loaders import native
from dataio.loaders.fast.slots import BufferPool
from dataio.loaders.fast.tuning import PipelineTuning
from dataio.loaders.stats import PipelineStats

__all__ = ["LoaderRuntime"]


class LoaderRuntime:
    """A loader's state across epochs (tuning, buffers, stats, native kernel, DALI pipelines). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stats: PipelineStats | None = None
        self._tuning: PipelineTuning | None = None
        self._tuning_leased = False
        self._buffers: BufferPool | None = None
        self._kernel: Any = None
        self._dali: Any = None
        self.generic_run: Any = None  # generic path: the latest epoch's GenericRun (stats, resume position)

    def stats_for(self, stages: list[tuple[str, int]]) -> PipelineStats:
        """The loader's stats (created on first use with these stages)."""
        with self._lock:
            if self.stats is None:
                self.stats = PipelineStats(stages)
            return self.stats

    def lease_tuning(self, make: Callable[[], PipelineTuning]) -> PipelineTuning:
        """The shared tuning (made on first use) if no live iterator holds it, else a private fixed copy."""
        with self._lock:
            if self._tuning is None:
                self._tuning = make()
            if not self._tuning_leased:
                self._tuning_leased = True
                return self._tuning
            return self._tuning.fixed_copy()

    def holds(self, tuning: PipelineTuning) -> bool:
        """Whether ``tuning`` is the loader's shared tuning (not a private copy)."""
        return tuning is self._tuning

    def return_tuning(self, tuning: PipelineTuning) -> None:
        """An iterator is done with ``tuning`` (its lease ends; a private copy is simply dropped)."""
        with self._lock:
            if tuning is self._tuning:
                self._tuning_leased = False

    def buffer_pool(self, shape: tuple[int, ...], cap: int) -> BufferPool:
        """Reusable float32 batch buffers of ``shape`` (a new pool when the shape changed)."""
        with self._lock:
            if self._buffers is None or self._buffers.shape != shape:
                self._buffers = BufferPool(shape, cap=cap)
            return self._buffers

    @property
    def buffers(self) -> BufferPool | None:
        return self._buffers

    def image_kernel(self, threads: int) -> Any:
        """The native batch kernel (``dataio._native.ImageKernel``), started once with ``threads`` threads."""
        with self._lock:
            if self._kernel is None:
                self._kernel = native.require().ImageKernel(max(1, int(threads)))
            return self._kernel

    @property
    def dali(self) -> Any:
        """The loader's DALI pipelines (:class:`~dataio.loaders.dali.iterator.DaliState`)."""
        with self._lock:
            if self._dali is None:
                from dataio.loaders.dali.iterator import DaliState

                self._dali = DaliState()
            return self._dali

    def close(self) -> None:
        """Stops the native kernel's threads (also done when the loader is garbage-collected). Idempotent."""
        with self._lock:
            kernel, self._kernel = self._kernel, None
        if kernel is not None:
            kernel.close()
