"""The fast path's stage threads: read, decode and (with CUDA) transfer, each a function of the rings and objects
it uses, run by :class:`~dataio.loaders.fast.control.EpochControl`.

Hand-offs are bounded rings (:mod:`dataio.loaders.rings`: the native lock-free ring, else its Python twin):
``records`` (read → decode, chunks of consecutive positions of one batch), ``finished`` (decode → the consumer or
the CUDA transfer thread: indices of complete batches, in any order) and, with CUDA, ``out`` (transfer →
consumer, device batches in order). Waiting threads block in a ring; stopping closes every ring, which wakes them
all at once.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataio.loaders.epoch import EpochPlan
from dataio.loaders.fast.control import EpochControl
from dataio.loaders.fast.decoders import Decoder
from dataio.loaders.fast.device import DeviceFeeder
from dataio.loaders.fast.slots import BatchRing
from dataio.loaders.fast.tuning import PipelineTuning
from dataio.loaders.rings import RingClosed
from dataio.loaders.stats import PipelineStats

__all__ = ["BatchWaiter", "DecodeStage", "ReadStage", "in_delivery_order", "start_decode_workers", "transfer_stage"]

POLL = 0.05  # seconds a waiting stage sleeps before it re-checks the stop event


def in_delivery_order(records: Iterable[Any], read: np.ndarray, delivery: np.ndarray) -> Iterator[Any]:
    """Records read in the order ``read`` (the sampler's storage order), yielded in the order ``delivery`` (the
    same multiset of indices). Holds only the records read ahead of their turn: for a shuffle buffer, at most its
    size."""
    waiting: defaultdict[int, deque[Any]] = defaultdict(deque)
    source = zip(read.tolist(), records, strict=True)
    for index in delivery.tolist():
        while not waiting[index]:
            try:
                got, record = next(source)
            except StopIteration:
                raise RuntimeError(
                    f"read stage: sample {index} is to be delivered but is not in the read order"
                ) from None
            waiting[got].append(record)
        yield waiting[index].popleft()


@dataclass(frozen=True)
class ReadStage:
    """Reads the epoch's records (in the sampler's read order when it has one) and hands them on in delivery
    order, in chunks of consecutive positions inside one batch; closes ``records`` at the end, so the decode
    workers drain it and leave.

    Attributes:
        read_records: ``ds.read_records``: records of indices in the given order, many reads in flight.
        read_order: The epoch's indices in storage read order, or None to read in delivery order.
    """

    plan: EpochPlan
    read_records: Callable[[np.ndarray], Iterable[Any]]
    read_order: np.ndarray | None
    records: Any  # ring of (start, [record, ...])
    chunk: int
    stats: PipelineStats

    def __call__(self) -> None:
        plan, stage = self.plan, self.stats.stages["read"]
        chunk: list[Any] = []
        start, nbytes, n = 0, 0, len(plan.indices)
        if self.read_order is None:
            read = iter(self.read_records(plan.indices))
        else:
            read = in_delivery_order(self.read_records(self.read_order), self.read_order, plan.indices)
        try:
            t = time.perf_counter()
            for pos, record in enumerate(read):
                if not chunk:
                    start = pos
                chunk.append(record)
                nbytes += len(record)
                if len(chunk) == self.chunk or (pos + 1) % plan.batch_size == 0 or pos + 1 == n:
                    stage.add(len(chunk), nbytes, time.perf_counter() - t)
                    self.records.put((start, chunk))  # RingClosed once the epoch stops
                    self.stats.sample_queue("records", len(self.records), self.records.capacity)
                    chunk, nbytes = [], 0
                    t = time.perf_counter()
        except RingClosed:
            return
        finally:
            self.records.close()


@dataclass(frozen=True)
class DecodeStage:
    """Takes chunks, decodes them into their batch's slot, and announces each batch it completes. One worker
    thread runs ``self(worker)``; the tuner parks workers above what the decoder wants."""

    control: EpochControl
    plan: EpochPlan
    decoder: Decoder
    tuning: PipelineTuning
    records: Any  # ring of (start, [record, ...])
    ring: BatchRing
    finished: Any  # ring of batch indices
    stats: PipelineStats
    worker_init_fn: Callable[[int], None] | None

    def __call__(self, worker: int) -> None:
        stop, plan, stage = self.control.stop, self.plan, self.stats.stages["decode"]
        timed = self.decoder.busy_seconds() is None  # the native kernel measures its own threads' busy time
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker)
        while not stop.is_set():
            if worker >= self.decoder.workers(self.tuning.decode_threads, plan.batch_size):  # parked by the tuner
                if self.records.closed:
                    return
                stop.wait(POLL)
                continue
            try:
                start, records = self.records.get(timeout=POLL)
            except TimeoutError:
                continue
            except RingClosed:  # drained after the reader's end, or stopped
                return
            t = time.perf_counter()
            slot = self.ring.acquire(start // plan.batch_size, stop)  # a chunk never crosses a batch boundary
            if slot is None:
                return
            skipped = self.decoder.decode(records, np.arange(start, start + len(records)), slot)
            stage.add(len(records), 0, time.perf_counter() - t if timed else 0.0)
            self.stats.add_skipped(skipped)
            if self.ring.filled(slot, len(records)):
                self.finished.put(slot.batch)  # capacity >= batches in flight: never waits


def start_decode_workers(control: EpochControl, stage: DecodeStage, started: int) -> int:
    """Starts decode workers up to what the decoder wants for the current setting (the autotuner may raise it;
    lowering it parks the highest-numbered ones); returns how many are started now."""
    want = stage.decoder.workers(stage.tuning.decode_threads, stage.plan.batch_size)
    while started < want and not control.stop.is_set():
        control.start(stage, f"decode-{started}", started)
        started += 1
    return started


class BatchWaiter:
    """The in-order view of the ``finished`` ring for its one reader (the consumer, or the CUDA transfer thread):
    batches complete in any order; ``wait(b)`` returns once batch ``b`` has."""

    def __init__(self, control: EpochControl, finished: Any) -> None:
        self.control, self.finished = control, finished
        self.complete: set[int] = set()

    def wait(self, batch: int, wait: float | None) -> bool:
        """True once ``batch`` is complete; False after ``wait`` seconds (None: 0.1 s slices until it is, or the
        epoch stopped: then False)."""
        deadline = None if wait is None else time.perf_counter() + wait
        while batch not in self.complete:
            if self.control.error is not None:
                return False
            left = 0.1 if deadline is None else deadline - time.perf_counter()
            if left <= 0:
                return False
            try:
                self.complete.add(self.finished.get(timeout=min(0.1, left)))
            except TimeoutError:
                continue
            except RingClosed:
                return False
        self.complete.discard(batch)
        return self.control.error is None


def transfer_stage(
    control: EpochControl, plan: EpochPlan, ring: BatchRing, feeder: DeviceFeeder, finished: Any, out: Any
) -> None:
    """CUDA: copies each complete batch to the device on a side stream, in order."""
    waiter = BatchWaiter(control, finished)
    try:
        for batch in range(plan.num_batches):
            while not waiter.wait(batch, None):
                if control.error is not None or control.stop.is_set():
                    return
            images, labels = ring.take(batch)
            sent = feeder.copy(images, labels)
            sent.event.synchronize()  # the pinned buffer may be refilled only once the copy has finished
            ring.release(batch)
            out.put(sent)
    except RingClosed:
        return
