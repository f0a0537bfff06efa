"""The fast path's run-time settings (decode threads, prefetch depth, reads in flight) and their autotuner.

One :class:`PipelineTuning` lives on a loader across epochs, so a tuned loader starts its next epoch with the
settings it found. Each epoch's iterator reads ``decode_threads`` / ``prefetch`` live and registers its batch
ring, so a knob the tuner moves takes effect at once.
"""

from __future__ import annotations

import os
from typing import Any

from dataio.loaders.autotune import AutotuneConfig, Knob, Tuner

__all__ = ["PipelineTuning", "cpu_count"]


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class PipelineTuning:
    """Live settings of a loader's fast path, and the tuner moving them when autotuning is on.

    Args:
        workers: Initial decode threads (the loader's ``num_workers``, at least 1).
        prefetch: Initial batches in flight.
        batch_bytes: Bytes of one batch buffer (bounds the prefetch depth by ``config.memory_limit``).
        reader: The dataset's RangeReader (its ``set_threads`` is the IO knob), or None.
        config: Autotuner settings, or None for fixed settings.
    """

    def __init__(
        self, workers: int, prefetch: int, batch_bytes: int, reader: Any, config: AutotuneConfig | None
    ) -> None:
        self.config = config
        self.reader = reader
        self.batch_bytes = batch_bytes
        self.decode_threads = workers
        self.prefetch = prefetch
        self.ring: Any = None
        self.tuner: Tuner | None = None
        if config is None:
            self.max_decode_threads, self.max_prefetch = workers, prefetch
            return
        self.max_decode_threads = max(workers, config.max_decode_threads or 2 * cpu_count())
        by_memory = max(1, config.memory_limit // max(1, batch_bytes))
        self.max_prefetch = max(prefetch, min(config.max_prefetch, by_memory))
        knobs = [
            Knob("decode_threads", workers, 1, self.max_decode_threads, self._set_decode),
            Knob("prefetch", prefetch, min(2, prefetch), self.max_prefetch, self._set_prefetch),
        ]
        if reader is not None:
            hi = min(config.max_io_threads or reader.max_threads, reader.max_threads)
            knobs.append(Knob("io_threads", reader.threads, 1, max(hi, reader.threads), reader.set_threads, True))
        self.tuner = Tuner(knobs, config)

    def fixed_copy(self) -> PipelineTuning:
        """The current settings, fixed (no tuner, no reader knob): for an iterator that runs while another one
        holds the loader's tuning."""
        return PipelineTuning(self.decode_threads, self.prefetch, self.batch_bytes, None, None)

    def _set_decode(self, value: int) -> None:
        self.decode_threads = value

    def _set_prefetch(self, value: int) -> None:
        self.prefetch = value
        if self.ring is not None:
            self.ring.set_depth(value)

    def start_epoch(self, ring: Any) -> None:
        """Binds the epoch's batch ring; the tuner leaves the epoch boundary out of its measurements."""
        self.ring = ring
        if self.tuner is not None:
            self.tuner.pause()

    def observe(self, items: int, records_fill: float) -> None:
        """One batch handed out; ``records_fill`` is the records queue's fill (0..1), the bottleneck hint."""
        if self.tuner is None:
            return
        if records_fill > 0.5:  # decoded work is the scarce part
            hint = ["decode_threads", "prefetch", "io_threads"]
        else:  # decode threads starve: reads are the scarce part
            hint = ["io_threads", "prefetch", "decode_threads"]
        self.tuner.observe(items, hint)

    def summary(self) -> dict[str, Any]:
        if self.tuner is None:
            return {
                "enabled": False,
                "knobs": {
                    "decode_threads": self.decode_threads,
                    "prefetch": self.prefetch,
                    **({"io_threads": self.reader.threads} if self.reader is not None else {}),
                },
            }
        return self.tuner.summary()
