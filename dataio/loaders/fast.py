"""The fast path of :class:`dataio.DataLoader` over a ShardDataset: read → decode/augment → collate → device.

Stages and their bounds::

    reader thread      ds.read_records(epoch indices): RangeReader, many ranged reads in flight, in order
       │  queue of ≤ prefetch_factor × batch_size records
    decode threads     pipeline.process(sample, rng) → HWC uint8, written straight into its batch slot
       │  ring of prefetch_factor × max(1, num_workers) reusable uint8 batch buffers (pinned with a GPU)
    consumer           normalise (on the device with a GPU: copied on a side stream first), yield

Memory is flat: records in the queue plus the ring of batch buffers, whatever the dataset size. Augmentation
randomness of sample ``i`` in epoch ``e`` comes from ``(seed, e, i)`` only, so batches do not depend on thread
timing, and a loader restored from ``state_dict()`` continues with exactly the batches the old one would have
produced.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from typing import Any

import numpy as np
import torch

from dataio.loaders.device import DeviceFeeder
from dataio.loaders.epoch import plan_epoch
from dataio.loaders.handoff import put_until_stopped
from dataio.loaders.ring import BatchRing, BufferPool
from dataio.loaders.stats import PipelineStats
from dataio.loaders.transforms import sample_rng
from dataio.loaders.tuning import PipelineTuning

__all__ = ["FastIterator", "SampleError"]

class SampleError(RuntimeError):
    """A sample that could not be decoded; names the sample key and index."""


class FastIterator:
    """One epoch of the fast path (see the module docstring)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.ds, self.pipeline, self.sampler = loader.dataset, loader.pipeline, loader.sampler
        self.plan = plan = plan_epoch(loader)
        self.batch_size, self.epoch, self.seed = plan.batch_size, plan.epoch, plan.seed
        self.indices = plan.indices
        self.num_batches = plan.num_batches
        if hasattr(self.sampler, "shard_order"):
            self.ds.prefetch(self.sampler.shard_order(self.indices))
        workers = max(1, int(loader.num_workers))
        depth = max(2, int(loader.prefetch_factor or 2) * workers)
        self.feeder = DeviceFeeder(loader.device)
        shape = tuple(self.pipeline.out_shape)
        if loader._dataio_tuning is None:
            batch_bytes = self.batch_size * int(np.prod(shape)) * (1 if self.feeder.cuda else 4)
            reader = self.ds.reader if hasattr(self.ds, "reader") else None
            loader._dataio_tuning = PipelineTuning(workers, depth, batch_bytes, reader, loader.autotune_config)
        self.tuning: PipelineTuning = loader._dataio_tuning
        pool = loader._dataio_buffers
        if pool is None or pool.shape != (self.batch_size, *shape):
            pool = loader._dataio_buffers = BufferPool((self.batch_size, *shape), cap=self.tuning.max_prefetch + 2)
        self.ring = BatchRing(
            self.tuning.max_prefetch, self.batch_size, shape, self.feeder.cuda, self.tuning.prefetch, pool
        )
        self.tuning.start_epoch(self.ring)
        mean = torch.tensor(self.pipeline.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.pipeline.std, dtype=torch.float32).view(3, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std
        # records travel in chunks: enough chunks per batch for every decode thread to get work
        self.chunk = max(1, min(16, self.batch_size // (2 * workers)))
        queued = max(8, int(loader.prefetch_factor or 2) * self.batch_size // self.chunk)
        self.records: queue.Queue[Any] = queue.Queue(maxsize=queued)
        self.out: queue.Queue[Any] = queue.Queue(maxsize=max(1, int(loader.prefetch_factor or 2)))
        self.done = threading.Condition()
        self.filled = [0] * self.num_batches
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.read_done = threading.Event()
        self.next_batch = 0
        self.on_error = loader.on_error
        self.timeout = float(loader.timeout or 0)
        if loader._dataio_stats is None:
            loader._dataio_stats = PipelineStats([("read", 1), ("decode", self.tuning.decode_threads)])
        self.stats: PipelineStats = loader._dataio_stats
        self.stats.extra.update(backend=getattr(self.pipeline, "backend", "cpu"), device=str(self.feeder.device))
        self.stats.autotune = self.tuning.summary
        targets = [("read", self._read)] + ([("transfer", self._transfer)] if self.feeder.cuda else [])
        self.threads = [threading.Thread(target=fn, name=f"dataio-fast-{name}", daemon=True) for name, fn in targets]
        self._finalizer = weakref.finalize(self, _stop_all, self.stop, self.threads, self.ring)
        for t in self.threads:
            t.start()
        self._decoders = 0
        self._start_decoders()

    def _start_decoders(self) -> None:
        """Starts decode threads up to the current setting (the autotuner may raise it; lowering it parks the
        highest-numbered ones, which then poll slowly until raised again or the epoch ends)."""
        while self._decoders < self.tuning.decode_threads and not self.stop.is_set():
            t = threading.Thread(target=self._decode, name=f"dataio-fast-decode-{self._decoders}", daemon=True)
            self.threads.append(t)  # the list _stop_all joins
            t.start()
            self._decoders += 1

    # -- stages ---------------------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        with self.done:
            if self.error is None:
                self.error = exc
            self.done.notify_all()
        self.stop.set()

    def _read(self) -> None:
        """Reads records in order and hands them to the decode threads in chunks of consecutive positions
        inside one batch (fewer queue hand-offs and lock round trips per sample)."""
        stage = self.stats.stages["read"]
        chunk: list[bytes] = []
        start = 0
        try:
            t = time.perf_counter()
            nbytes = 0
            for pos, record in enumerate(self.ds.read_records(self.indices)):
                if not chunk:
                    start = pos
                chunk.append(record)
                nbytes += len(record)
                if len(chunk) == self.chunk or (pos + 1) % self.batch_size == 0 or pos + 1 == len(self.indices):
                    stage.add(len(chunk), nbytes, time.perf_counter() - t)
                    if not put_until_stopped(self.records, (start, chunk), self.stop):
                        return
                    self.stats.sample_queue("records", self.records.qsize(), self.records.maxsize)
                    chunk, nbytes = [], 0
                    t = time.perf_counter()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self.read_done.set()  # decode threads leave once the queue is drained

    def _decode(self) -> None:
        stage = self.stats.stages["decode"]
        worker = int(threading.current_thread().name.rsplit("-", 1)[-1])
        try:
            if self.loader.worker_init_fn is not None:
                self.loader.worker_init_fn(worker)
            while not self.stop.is_set():
                if worker >= self.tuning.decode_threads:  # parked by the autotuner
                    if self.read_done.is_set():
                        return
                    self.stop.wait(0.05)
                    continue
                try:
                    item = self.records.get(timeout=0.05)
                except queue.Empty:
                    if self.read_done.is_set() and self.records.empty():
                        return
                    continue
                t = time.perf_counter()
                start, records = item
                batch = start // self.batch_size  # a chunk never crosses a batch boundary
                slot = self.ring.acquire(batch, self.stop)
                if slot is None:
                    return
                failed = 0
                for k, record in enumerate(records):
                    failed += not self._decode_one(start + k, record, slot, (start + k) % self.batch_size)
                stage.add(len(records), 0, time.perf_counter() - t)
                with self.done:
                    self.filled[batch] += len(records)
                    self.stats.skipped += failed
                    if self.filled[batch] == self._batch_len(batch):  # wake the consumer once per batch
                        self.done.notify_all()
        except BaseException as exc:
            self._fail(exc)

    def _decode_one(self, pos: int, record: bytes, slot: int, row: int) -> bool:
        index = int(self.indices[pos])
        sample = self.ds.decode(record)
        try:
            image, label = self.pipeline.process(sample, sample_rng(self.seed, self.epoch, index))
        except Exception as exc:
            if self.on_error == "skip":
                self.ring.valid[slot][row] = False
                return False
            raise SampleError(f"sample {index} (key {sample.get('key')!r}): {exc}") from exc
        if not image.flags.writeable:
            image = image.copy()
        chw = torch.from_numpy(image).permute(2, 0, 1)  # the pipeline's images are CHW memory: contiguous
        dst = self.ring.images[slot][row]  # type: ignore[index]
        if self.feeder.cuda:
            dst.copy_(chw)
        else:  # normalise here, in this (GIL-free) thread; 2.6x faster than one addcmul of the uint8 input
            dst.copy_(chw).mul_(self.scale).add_(self.shift)
        self.ring.labels[slot][row] = int(label)
        self.ring.valid[slot][row] = True
        return True

    def _wait_filled(self, batch: int) -> bool:
        """Blocks until every sample of ``batch`` is decoded; False if the pipeline failed or stopped."""
        size = self._batch_len(batch)
        with self.done:
            while self.filled[batch] < size and self.error is None and not self.stop.is_set():
                self.done.wait(0.1)
            return self.error is None and not self.stop.is_set()

    def _take(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        slot, size = batch % self.ring.n, self._batch_len(batch)
        # always a view (a new tensor on the buffer's storage, even at full size): the pool sees it is in use
        images, labels = self.ring.images[slot][:size], self.ring.labels[slot][:size]  # type: ignore[index]
        valid = self.ring.valid[slot][:size]
        if not valid.all():
            keep = torch.from_numpy(np.flatnonzero(valid))
            images, labels = images.index_select(0, keep), labels.index_select(0, keep)
        elif not self.feeder.cuda:
            labels = labels.clone()
        return images, labels

    def _transfer(self) -> None:
        try:
            for batch in range(self.num_batches):
                if not self._wait_filled(batch):
                    return
                images, labels = self._take(batch)
                sent = self.feeder.copy(images, labels)
                sent.event.synchronize()  # the pinned buffer may be refilled only once the copy has finished
                self.ring.release(batch)
                if not put_until_stopped(self.out, sent, self.stop):
                    return
        except BaseException as exc:
            self._fail(exc)

    # -- consumer -------------------------------------------------------------------------------
    def _batch_len(self, batch: int) -> int:
        return self.plan.batch_len(batch)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.next_batch
        if batch >= self.num_batches:
            self.close()
            raise StopIteration
        t = time.perf_counter()
        if self.feeder.cuda:
            images, labels = self._next_from_device(t)
        else:
            deadline = t + self.timeout if self.timeout else None
            while not self._wait_filled_until(batch, deadline):
                pass
            images, labels = self._take(batch)
            self.ring.release(batch)
        self.stats.consumer_wait += time.perf_counter() - t
        self.next_batch += 1
        self.stats.batches += 1
        self.stats.stages["decode"].set_threads(self.tuning.decode_threads)
        self.tuning.observe(self._batch_len(batch), self.records.qsize() / max(1, self.records.maxsize))
        if self.tuning.decode_threads > self._decoders:
            self._start_decoders()
        self.plan.advance(self.sampler, self._batch_len(batch))
        return images, labels

    def _wait_filled_until(self, batch: int, deadline: float | None) -> bool:
        with self.done:
            if self.filled[batch] >= self._batch_len(batch) and self.error is None:
                return True
            if self.error is None:
                self.done.wait(0.1)
        if self.error is not None:
            self.close()
            raise self.error
        if deadline is not None and time.perf_counter() > deadline:
            self.close()
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds")
        return False

    def _next_from_device(self, start: float) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            try:
                sent = self.out.get(timeout=0.1)
                break
            except queue.Empty:
                if self.error is not None:
                    self.close()
                    raise self.error from None
                if self.timeout and time.perf_counter() - start > self.timeout:
                    self.close()
                    raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds") from None
        images, labels = self.feeder.receive(sent)
        return self.pipeline.normalize(images), labels

    def __iter__(self) -> FastIterator:
        return self

    def __len__(self) -> int:
        return self.num_batches

    def close(self) -> None:
        """Stops every stage thread. Idempotent."""
        self._finalizer()


def _stop_all(stop: threading.Event, threads: list[threading.Thread], ring: BatchRing) -> None:
    stop.set()
    for t in threads:
        if t is not threading.current_thread():
            t.join(timeout=5)
    ring.abandon()
