"""One epoch of the fast path, as the training loop sees it: ``next()``, ``close()``, and the accounting after
each delivered batch. It builds the epoch (plan, decoder, slots, rings, stages), starts the stage threads and
only consumes; everything the threads share is passed to them explicitly (see :mod:`.stages`).
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import numpy as np
import torch

from dataio.loaders.epoch import EpochPlan, plan_epoch
from dataio.loaders.fast.control import EpochControl
from dataio.loaders.fast.decoders import Decoder, NativeDecoder, PythonDecoder
from dataio.loaders.fast.device import DeviceFeeder
from dataio.loaders.fast.slots import BatchRing, Normalization
from dataio.loaders.fast.stages import BatchWaiter, DecodeStage, ReadStage, start_decode_workers, transfer_stage
from dataio.loaders.fast.tuning import PipelineTuning
from dataio.loaders.rings import RingClosed, make_ring
from dataio.loaders.runtime import LoaderRuntime
from dataio.loaders.stats import PipelineStats
from dataio.sampling.protocol import resumable

__all__ = ["FastIterator"]


class FastIterator:
    """One epoch of the fast path (see :mod:`dataio.loaders.fast`)."""

    def __init__(self, loader: Any) -> None:
        runtime: LoaderRuntime = loader.runtime
        ds, pipeline = loader.dataset, loader.pipeline
        self.sampler = loader.sampler
        self.plan = plan = plan_epoch(loader)
        driven = resumable(self.sampler)
        read_order = driven.read_order(plan.indices) if driven is not None else None
        if driven is not None:
            ds.prefetch(driven.shard_order(plan.indices if read_order is None else read_order))
        workers = max(1, int(loader.num_workers))
        prefetch = int(loader.prefetch_factor or 2)
        self._feeder = feeder = DeviceFeeder(loader.device)
        self._pipeline = pipeline
        shape = tuple(pipeline.out_shape)

        def make_tuning() -> PipelineTuning:
            batch_bytes = plan.batch_size * int(np.prod(shape)) * (1 if feeder.cuda else 4)
            return PipelineTuning(workers, max(2, prefetch * workers), batch_bytes, ds.reader, loader.autotune_config)

        self._runtime = runtime
        self._tuning = tuning = runtime.lease_tuning(make_tuning)
        try:
            self._decoder = decoder = _decoder(loader, plan, tuning)
            self._ring = ring = BatchRing(
                tuning.max_prefetch,
                plan.batch_size,
                shape,
                feeder.cuda,
                Normalization.of(pipeline.mean, pipeline.std),
                plan.batch_len,
                tuning.prefetch,
                runtime.buffer_pool((plan.batch_size, *shape), cap=tuning.max_prefetch + 2),
            )
            tuning.start_epoch(ring)
            self._stats = stats = runtime.stats_for([("read", 1), ("decode", tuning.decode_threads)])
            stats.extra.update(backend=decoder.name, device=str(feeder.device))
            stats.autotune = tuning.summary
            chunk = decoder.chunk(plan.batch_size, workers)
            queued = max(2 * plan.batch_size // chunk, prefetch * plan.batch_size // chunk)
            self._records = records = make_ring(queued, "mpmc")
            self._finished = finished = make_ring(tuning.max_prefetch + 1, "mpmc")
            self._out = out = make_ring(prefetch, "spsc")
        except BaseException:
            runtime.return_tuning(tuning)  # the lease must not outlive a failed start
            raise
        self._control = control = EpochControl((records, finished, out), ring.abandon)
        self.timeout = float(loader.timeout or 0)
        self.next_batch = 0
        self._waiter = BatchWaiter(control, finished)
        self._busy_seen = decoder.busy_seconds() or 0.0
        self._closed = False
        self._finalizer = weakref.finalize(self, _finish, control, runtime, tuning)
        self._decode = DecodeStage(
            control, plan, decoder, tuning, records, ring, finished, stats, loader.worker_init_fn
        )
        control.start(ReadStage(plan, ds.read_records, read_order, records, chunk, stats), "read")
        if feeder.cuda:
            control.start(transfer_stage, "transfer", control, plan, ring, feeder, finished, out)
        self._decode_workers = start_decode_workers(control, self._decode, 0)

    # -- read-only views of the epoch, for callers and tests -----------------------------------------------------
    @property
    def indices(self) -> np.ndarray:
        return self.plan.indices

    @property
    def num_batches(self) -> int:
        return self.plan.num_batches

    @property
    def stats(self) -> PipelineStats:
        return self._stats

    @property
    def threads(self) -> list[Any]:
        return self._control.threads

    @property
    def control(self) -> EpochControl:
        """The epoch's threads: stop event, error, live count, whether its buffers went back to the pool."""
        return self._control

    @property
    def tuning(self) -> PipelineTuning:
        """The settings this epoch runs with (the loader's, or a fixed copy while another iterator tunes)."""
        return self._tuning

    @property
    def decoder(self) -> Decoder:
        return self._decoder

    def __iter__(self) -> FastIterator:
        return self

    def __len__(self) -> int:
        return self.plan.num_batches

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.next_batch
        if self._closed or batch >= self.plan.num_batches:
            self.close()
            raise StopIteration
        t = time.perf_counter()
        if self._feeder.cuda:
            images, labels = self._next_from_device(t)
        else:
            while not self._waiter.wait(batch, 0.1):
                self._check(t)
            images, labels = self._ring.take(batch)
            self._ring.release(batch)
        self._stats.consumer_wait += time.perf_counter() - t
        self.next_batch += 1
        self._account(batch)
        self.plan.advance(self.sampler, self.plan.batch_len(batch))
        return images, labels

    def _account(self, batch: int) -> None:
        """Stats and tuning after a delivered batch; applies a decode-thread setting the tuner changed."""
        stats, tuning, decoder = self._stats, self._tuning, self._decoder
        stats.batches += 1
        decode = stats.stages["decode"]
        decode.set_threads(tuning.decode_threads)
        busy = decoder.busy_seconds()
        if busy is not None:  # native: the kernel's threads' busy time since the last batch
            decode.add(0, 0, busy - self._busy_seen)
            self._busy_seen = busy
        tuning.observe(self.plan.batch_len(batch), len(self._records) / self._records.capacity)
        decoder.set_threads(tuning.decode_threads)
        self._decode_workers = start_decode_workers(self._control, self._decode, self._decode_workers)

    def _check(self, start: float) -> None:
        """Raises the epoch's error, or a timeout, after closing the iterator."""
        control = self._control
        if control.error is not None:
            self.close()
            raise control.error
        if self.timeout and time.perf_counter() - start > self.timeout:
            self.close()
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds")
        if control.stop.is_set():
            self.close()
            raise StopIteration

    def _next_from_device(self, start: float) -> tuple[torch.Tensor, torch.Tensor]:
        while True:
            try:
                sent = self._out.get(timeout=0.1)
                break
            except (TimeoutError, RingClosed):
                self._check(start)
        images, labels = self._feeder.receive(sent)
        return self._pipeline.normalize(images), labels

    def close(self) -> None:
        """Stops every stage thread and waits for them (at most a few seconds). Idempotent."""
        self._closed = True
        self._control.shutdown(join=True)
        self._finalizer()


def _decoder(loader: Any, plan: EpochPlan, tuning: PipelineTuning) -> Decoder:
    """The native decoder over the loader's shared kernel, or the Python one. Only the iterator holding the
    loader's tuning sets the shared kernel's thread count."""
    runtime, pipeline, ds = loader.runtime, loader.pipeline, loader.dataset
    if not pipeline.native:
        return PythonDecoder(pipeline, plan, ds.decode, loader.on_error)
    kernel = runtime.image_kernel(tuning.decode_threads)
    decoder = NativeDecoder(pipeline, plan, ds.decode, loader.on_error, kernel, owns_threads=runtime.holds(tuning))
    decoder.set_threads(tuning.decode_threads)
    return decoder


def _finish(control: EpochControl, runtime: LoaderRuntime, tuning: PipelineTuning) -> None:
    """The end of an epoch, however it ends (finished, closed, or the iterator garbage-collected)."""
    control.shutdown(join=False)
    runtime.return_tuning(tuning)
