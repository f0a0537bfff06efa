"""The feeder of the DALI backend: a reader thread turning an epoch's records into DALI's batched inputs.

It reads records in the sampler's order through the dataset's RangeReader (many ranged reads in flight),
parses each image's header (no pixel decoding) and computes the sample's crop window and flip from
``(seed, epoch, index)`` exactly as the CPU backend does. Batches wait in a bounded queue for DALI's
``external_source`` callback, so memory stays flat.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataio.loaders.epoch import EpochPlan
from dataio.loaders.handoff import put_until_stopped
from dataio.loaders.image.decode import DecodeError, read_header
from dataio.loaders.image.jpeg_check import refusal
from dataio.loaders.image.transforms import label_of, sample_rng
from dataio.loaders.stats import StageStats

__all__ = ["END", "Failure", "FedBatch", "Feeder", "sample_window"]

END = object()


@dataclass(frozen=True)
class Failure:
    """An exception of the feeder thread, shipped to the consumer (re-raised with its traceback)."""

    exc: BaseException


@dataclass(frozen=True)
class FedBatch:
    """One batch for DALI: ``positions`` are epoch positions of its samples; ``covers`` is how many epoch
    positions its delivery completes (its own plus those of batches whose every sample was skipped)."""

    batch: int
    positions: list[int]
    covers: int
    inputs: tuple[list[np.ndarray], ...]


def sample_window(pipeline: Any, data: bytes, rng: np.random.Generator | None) -> tuple[np.ndarray, ...]:
    """``(start_xy, end_xy, flip)`` of one sample: ``pipeline.window`` as DALI's integer crop window.

    Raises:
        DecodeError: bytes every other path refuses before decoding (a cut JPEG, over the pixel limit:
            :func:`~dataio.loaders.image.jpeg_check.refusal`), so DALI gives the same verdict whatever its decoder does.
    """
    header = read_header(data)
    why = refusal(data, header.width, header.height)
    if why is not None:
        raise DecodeError(why)
    box, flip = pipeline.window(header, rng)
    x0, y0 = round(box[0]), round(box[1])  # train boxes are whole pixels already; val's centre box may not be
    x1, y1 = max(x0 + 1, round(box[2])), max(y0 + 1, round(box[3]))
    return np.array([x0, y0], np.int32), np.array([x1, y1], np.int32), np.array(int(flip), np.int32)


class Feeder:
    """Reads batches ``start_batch…`` of ``plan`` in a thread; ``get()`` hands them out in order.

    Args:
        ds: The ShardDataset.
        pipeline: The ImagePipeline (geometry and train/val).
        plan: The epoch.
        start_batch: First batch to feed (a restart after a skipped sample feeds from the failing batch).
        bad: Epoch positions to leave out (known-bad samples under ``on_error="skip"``).
        on_bad: Called with ``(position, key, exception)`` for a sample whose header cannot be read; returns
            True to skip it, or raises.
        stage: The loader's ``read`` stage counters.
        depth: Batches buffered ahead of DALI.
    """

    def __init__(
        self,
        ds: Any,
        pipeline: Any,
        plan: EpochPlan,
        start_batch: int,
        bad: set[int],
        on_bad: Callable[[int, Any, BaseException], bool],
        stage: StageStats,
        depth: int,
    ) -> None:
        self.ds, self.pipeline, self.plan = ds, pipeline, plan
        self.start_batch, self.bad, self.on_bad, self.stage = start_batch, bad, on_bad, stage
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="dataio-dali-feed", daemon=True)
        self.thread.start()

    def _put(self, item: Any) -> bool:
        return put_until_stopped(self.queue, item, self.stop)

    def _run(self) -> None:
        plan, size = self.plan, self.plan.batch_size
        start = self.start_batch * size
        inputs: tuple[list[np.ndarray], ...] = ([], [], [], [], [])
        positions: list[int] = []
        covers = 0
        try:
            t = time.perf_counter()
            nbytes = 0
            records = self.ds.read_records(plan.indices[start:])
            for pos, record in enumerate(records, start):
                covers += 1
                nbytes += len(record)
                if pos not in self.bad and self._add(pos, record, inputs):
                    positions.append(pos)
                if (pos + 1) % size and pos + 1 != len(plan.indices):
                    continue
                self.stage.add(covers, nbytes, time.perf_counter() - t)
                if positions:
                    if not self._put(FedBatch(pos // size, positions, covers, inputs)):
                        return
                    inputs, positions, covers = ([], [], [], [], []), [], 0
                nbytes, t = 0, time.perf_counter()
            self._put(END)
        except BaseException as exc:
            self._put(Failure(exc))

    def _add(self, pos: int, record: bytes, inputs: tuple[list[np.ndarray], ...]) -> bool:
        index = int(self.plan.indices[pos])
        sample = self.ds.decode(record)
        data = sample["image"]
        rng = sample_rng(self.plan.seed, self.plan.epoch, index) if self.pipeline.train else None
        try:
            start, end, flip = sample_window(self.pipeline, data, rng)
        except Exception as exc:
            if self.on_bad(pos, sample.get("key"), exc):
                return False
            raise
        inputs[0].append(np.frombuffer(data, dtype=np.uint8))
        inputs[1].append(start)
        inputs[2].append(end)
        inputs[3].append(flip)
        inputs[4].append(np.array(label_of(sample), np.int64))
        return True

    def get(self, give_up: Callable[[], bool]) -> Any:
        """The next :class:`FedBatch`, :data:`END` or :class:`Failure`; None once ``give_up()`` says so."""
        while True:
            try:
                return self.queue.get(timeout=0.05)
            except queue.Empty:
                if give_up():
                    return None

    def close(self) -> None:
        """Stops the thread. Idempotent."""
        self.stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=5)
