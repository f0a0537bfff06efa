"""The fast path's epoch state and its stage threads, written as functions over that state.

No stage holds a reference to the iterator (only to :class:`EpochState`), so an iterator dropped mid-epoch is
garbage-collected, and its finalizer stops the threads. Batch buffers go back to the pool only once the last
stage thread has left (a decode call still writing into a buffer keeps it from being reused).

Hand-offs are bounded rings (:mod:`dataio.loaders.rings`: the native lock-free ring, else its Python twin):
``records`` (reader → decode workers, chunks of one batch), ``finished`` (decode workers → the consumer, or the
CUDA transfer thread: indices of complete batches, in any order) and, with CUDA, ``out`` (transfer thread →
consumer, device batches in order). Waiting threads block in the ring; stopping closes every ring, which wakes
them all at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from dataio.loaders.device import DeviceFeeder
from dataio.loaders.epoch import EpochPlan
from dataio.loaders.ring import BatchRing
from dataio.loaders.rings import RingClosed
from dataio.loaders.stats import PipelineStats
from dataio.loaders.tuning import PipelineTuning

__all__ = ["BatchWaiter", "EpochState", "shutdown", "start_decode_workers", "start_thread"]

POLL = 0.05  # seconds a waiting stage sleeps before it re-checks the stop event


@dataclass(eq=False)
class EpochState:
    """Everything the threads of one epoch share (the iterator holds it; the threads hold nothing else)."""

    ds: Any
    pipeline: Any
    plan: EpochPlan
    decoder: Any  # NativeDecoder | PythonDecoder
    tuning: PipelineTuning
    ring: BatchRing
    feeder: DeviceFeeder
    stats: PipelineStats
    records: Any  # ring of (start, [record, ...])
    finished: Any  # ring of batch indices
    out: Any  # ring of DeviceBatch (CUDA)
    chunk: int
    on_error: str
    worker_init_fn: Any
    scale: torch.Tensor
    shift: torch.Tensor
    filled: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    read_done: threading.Event = field(default_factory=threading.Event)
    done: threading.Condition = field(default_factory=threading.Condition)
    error: BaseException | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    workers: int = 0  # decode worker threads started
    live: int = 0  # stage threads not yet finished
    released: bool = False  # ring buffers returned to the pool

    @property
    def scale_list(self) -> list[float]:
        return self.scale.flatten().tolist()

    @property
    def shift_list(self) -> list[float]:
        return self.shift.flatten().tolist()

    def fail(self, exc: BaseException) -> None:
        with self.done:
            if self.error is None:
                self.error = exc
        self.stop.set()
        self.close_rings()

    def close_rings(self) -> None:
        """Wakes every thread waiting in a hand-off (idempotent)."""
        for ring in (self.records, self.finished, self.out):
            ring.close()


def start_thread(st: EpochState, target: Any, name: str, *args: Any) -> None:
    """Starts a stage thread over ``st``; it counts itself out when it ends (see :func:`_exit`)."""
    with st.done:
        st.live += 1
    t = threading.Thread(target=_run, args=(st, target, *args), name=f"dataio-fast-{name}", daemon=True)
    st.threads.append(t)
    t.start()


def _run(st: EpochState, target: Any, *args: Any) -> None:
    try:
        target(st, *args)
    except BaseException as exc:
        st.fail(exc)
    finally:
        with st.done:
            st.live -= 1
            last = st.live == 0
        if last and st.stop.is_set():
            _release_buffers(st)


def _release_buffers(st: EpochState) -> None:
    with st.done:
        if st.released:
            return
        st.released = True
    st.ring.abandon()


def shutdown(st: EpochState, join: bool) -> None:
    """Stops the epoch's threads (waiting for them when ``join``); its buffers go back once none is left.
    Idempotent; safe from a finalizer (``join=False``: never blocks)."""
    st.stop.set()
    st.close_rings()
    if join:
        for t in st.threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
    with st.done:
        idle = st.live == 0
    if idle:
        _release_buffers(st)


def start_decode_workers(st: EpochState) -> None:
    """Starts decode worker threads up to what the decoder wants for the current setting (the autotuner may
    raise it; lowering it parks the highest-numbered ones)."""
    want = st.decoder.workers(st.tuning.decode_threads, st.plan.batch_size)
    while st.workers < want and not st.stop.is_set():
        start_thread(st, decode_stage, f"decode-{st.workers}", st.workers)
        st.workers += 1


def read_stage(st: EpochState) -> None:
    """Reads records in order and hands them on in chunks of consecutive positions inside one batch; closes the
    records ring at the end, so the decode workers drain it and leave."""
    stage = st.stats.stages["read"]
    chunk: list[Any] = []
    start, nbytes, n = 0, 0, len(st.plan.indices)
    try:
        t = time.perf_counter()
        for pos, record in enumerate(st.ds.read_records(st.plan.indices)):
            if not chunk:
                start = pos
            chunk.append(record)
            nbytes += len(record)
            if len(chunk) == st.chunk or (pos + 1) % st.plan.batch_size == 0 or pos + 1 == n:
                stage.add(len(chunk), nbytes, time.perf_counter() - t)
                st.records.put((start, chunk))  # RingClosed once the epoch stops
                st.stats.sample_queue("records", len(st.records), st.records.capacity)
                chunk, nbytes = [], 0
                t = time.perf_counter()
    except RingClosed:
        return
    finally:
        st.records.close()


def decode_stage(st: EpochState, worker: int) -> None:
    """Takes chunks, decodes them into their batch's slot, and announces each batch it completes."""
    stage = st.stats.stages["decode"]
    timed = st.decoder.busy_seconds() is None  # the native kernel measures its own threads' busy time
    if st.worker_init_fn is not None:
        st.worker_init_fn(worker)
    while not st.stop.is_set():
        if worker >= st.decoder.workers(st.tuning.decode_threads, st.plan.batch_size):  # parked by the tuner
            if st.records.closed:
                return
            st.stop.wait(POLL)
            continue
        try:
            start, records = st.records.get(timeout=POLL)
        except TimeoutError:
            continue
        except RingClosed:  # drained after the reader's end, or stopped
            return
        t = time.perf_counter()
        batch = start // st.plan.batch_size  # a chunk never crosses a batch boundary
        slot = st.ring.acquire(batch, st.stop)
        if slot is None:
            return
        skipped = st.decoder.decode(st, start, records, slot)
        stage.add(len(records), 0, time.perf_counter() - t if timed else 0.0)
        with st.done:
            st.filled[batch] += len(records)
            st.stats.skipped += skipped
            complete = st.filled[batch] == st.plan.batch_len(batch)
        if complete:
            st.finished.put(batch)  # capacity >= batches in flight: never waits


class BatchWaiter:
    """The in-order view of the ``finished`` ring for its one reader (the consumer, or the CUDA transfer thread):
    batches complete in any order; ``wait(b)`` returns once batch ``b`` has."""

    def __init__(self, st: EpochState) -> None:
        self.st = st
        self.complete: set[int] = set()

    def wait(self, batch: int, wait: float | None) -> bool:
        """True once ``batch`` is complete; False after ``wait`` seconds (None: 0.1 s slices until it is, or the
        epoch stopped: then False)."""
        st = self.st
        deadline = None if wait is None else time.perf_counter() + wait
        while batch not in self.complete:
            if st.error is not None:
                return False
            left = 0.1 if deadline is None else deadline - time.perf_counter()
            if left <= 0:
                return False
            try:
                self.complete.add(st.finished.get(timeout=min(0.1, left)))
            except TimeoutError:
                continue
            except RingClosed:
                return False
        self.complete.discard(batch)
        return st.error is None


def take_batch(st: EpochState, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The delivered tensors of a complete batch (views of the ring's buffer; skipped samples left out)."""
    import numpy as np

    slot, size = batch % st.ring.n, st.plan.batch_len(batch)
    # always a view (a new tensor on the buffer's storage, even at full size): the pool sees it is in use
    images, labels = st.ring.images[slot][:size], st.ring.labels[slot][:size]  # type: ignore[index]
    valid = st.ring.valid[slot][:size]
    if not valid.all():
        keep = torch.from_numpy(np.flatnonzero(valid))
        images, labels = images.index_select(0, keep), labels.index_select(0, keep)
    elif not st.feeder.cuda:
        labels = labels.clone()
    return images, labels


def transfer_stage(st: EpochState) -> None:
    """CUDA: copies each complete batch to the device on a side stream, in order."""
    waiter = BatchWaiter(st)
    try:
        for batch in range(st.plan.num_batches):
            while not waiter.wait(batch, None):
                if st.error is not None or st.stop.is_set():
                    return
            images, labels = take_batch(st, batch)
            sent = st.feeder.copy(images, labels)
            sent.event.synchronize()  # the pinned buffer may be refilled only once the copy has finished
            st.ring.release(batch)
            st.out.put(sent)
    except RingClosed:
        return
