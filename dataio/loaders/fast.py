"""The fast path of :class:`dataio.DataLoader` over a ShardDataset: read → decode/augment → collate → device.

Stages and their bounds::

    reader thread      ds.read_records(epoch indices): RangeReader, many ranged reads in flight, in order
       │  ring of ≤ prefetch_factor × batch_size records, in chunks inside one batch (lock-free, native)
    decode             native (default): 2 Python threads hand whole batches to dataio._native.ImageKernel,
                       whose C threads decode the crop window, resize, flip and normalise every image into
                       its batch slot (one GIL release per batch); Python fallback: decode_threads Python
                       threads, ImagePipeline.process per image (fast_stages / batch_decode)
       │  ring of reusable batch buffers (pinned with a GPU); indices of finished batches through a ring
    consumer           yields views of finished batches (with a GPU: copied on a side stream and normalised)

Memory is flat: records in the ring plus the ring of batch buffers, whatever the dataset size. Augmentation
randomness of sample ``i`` in epoch ``e`` comes from ``(seed, e, i)`` only, so batches do not depend on thread
timing or on which decoder ran, and a loader restored from ``state_dict()`` continues with exactly the batches
the old one would have produced.

Lifecycle: the stage threads run functions over an :class:`~dataio.loaders.fast_stages.EpochState` and hold no
reference to the iterator, so an iterator abandoned mid-epoch (``break``, an exception) is garbage-collected and
its threads stop; ``close()`` stops them at once; ``next()`` after either raises StopIteration. Settings,
buffers, stats and the native kernel live in the loader's :class:`~dataio.loaders.runtime.LoaderRuntime`.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import numpy as np
import torch

from dataio.loaders.batch_decode import NativeDecoder, PythonDecoder, SampleError
from dataio.loaders.device import DeviceFeeder
from dataio.loaders.epoch import plan_epoch
from dataio.loaders.fast_stages import (
    BatchWaiter,
    EpochState,
    read_stage,
    shutdown,
    start_decode_workers,
    start_thread,
    take_batch,
    transfer_stage,
)
from dataio.loaders.ring import BatchRing
from dataio.loaders.rings import RingClosed, make_ring
from dataio.loaders.tuning import PipelineTuning
from dataio.sampling.protocol import resumable

__all__ = ["FastIterator", "SampleError"]


class FastIterator:
    """One epoch of the fast path (see the module docstring)."""

    def __init__(self, loader: Any) -> None:
        runtime = loader.runtime
        ds, pipeline, sampler = loader.dataset, loader.pipeline, loader.sampler
        self.sampler = sampler
        self.plan = plan = plan_epoch(loader)
        driven = resumable(sampler)
        if driven is not None:
            ds.prefetch(driven.shard_order(plan.indices))
        workers = max(1, int(loader.num_workers))
        prefetch = int(loader.prefetch_factor or 2)
        feeder = DeviceFeeder(loader.device)
        shape = tuple(pipeline.out_shape)

        def make_tuning() -> PipelineTuning:
            batch_bytes = plan.batch_size * int(np.prod(shape)) * (1 if feeder.cuda else 4)
            reader = ds.reader if hasattr(ds, "reader") else None
            return PipelineTuning(workers, max(2, prefetch * workers), batch_bytes, reader, loader.autotune_config)

        tuning = runtime.lease_tuning(make_tuning)
        try:
            self._st = st = _epoch_state(loader, plan, tuning, feeder, shape)
        except BaseException:
            runtime.return_tuning(tuning)  # the lease must not outlive a failed start
            raise
        self.timeout = float(loader.timeout or 0)
        self.next_batch = 0
        self._waiter = BatchWaiter(st)
        self._busy_seen = st.decoder.busy_seconds() or 0.0
        self._closed = False
        self._finalizer = weakref.finalize(self, _finish, st, runtime, False)
        start_thread(st, read_stage, "read")
        if feeder.cuda:
            start_thread(st, transfer_stage, "transfer")
        start_decode_workers(st)

    # -- read-only views of the epoch, for callers and tests -----------------------------------------------------
    @property
    def indices(self) -> np.ndarray:
        return self.plan.indices

    @property
    def num_batches(self) -> int:
        return self.plan.num_batches

    @property
    def stats(self) -> Any:
        return self._st.stats

    @property
    def threads(self) -> list[Any]:
        return list(self._st.threads)

    def __iter__(self) -> FastIterator:
        return self

    def __len__(self) -> int:
        return self.plan.num_batches

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        st, batch = self._st, self.next_batch
        if self._closed or batch >= self.plan.num_batches:
            self.close()
            raise StopIteration
        t = time.perf_counter()
        if st.feeder.cuda:
            images, labels = self._next_from_device(t)
        else:
            while not self._waiter.wait(batch, 0.1):
                self._check(t)
            images, labels = take_batch(st, batch)
            st.ring.release(batch)
        st.stats.consumer_wait += time.perf_counter() - t
        self.next_batch += 1
        self._account(batch)
        self.plan.advance(self.sampler, self.plan.batch_len(batch))
        return images, labels

    def _account(self, batch: int) -> None:
        """Stats and tuning after a delivered batch; applies a decode-thread setting the tuner changed."""
        st = self._st
        st.stats.batches += 1
        decode = st.stats.stages["decode"]
        decode.set_threads(st.tuning.decode_threads)
        busy = st.decoder.busy_seconds()
        if busy is not None:  # native: the kernel's threads' busy time since the last batch
            decode.add(0, 0, busy - self._busy_seen)
            self._busy_seen = busy
        st.tuning.observe(st.plan.batch_len(batch), len(st.records) / st.records.capacity)
        st.decoder.set_threads(st.tuning.decode_threads)
        start_decode_workers(st)

    def _check(self, start: float) -> None:
        """Raises the epoch's error, or a timeout, after closing the iterator."""
        st = self._st
        if st.error is not None:
            self.close()
            raise st.error
        if self.timeout and time.perf_counter() - start > self.timeout:
            self.close()
            raise RuntimeError(f"DataLoader timed out after {self.timeout} seconds")
        if st.stop.is_set():
            self.close()
            raise StopIteration

    def _next_from_device(self, start: float) -> tuple[torch.Tensor, torch.Tensor]:
        st = self._st
        while True:
            try:
                sent = st.out.get(timeout=0.1)
                break
            except (TimeoutError, RingClosed):
                self._check(start)
        images, labels = st.feeder.receive(sent)
        return st.pipeline.normalize(images), labels

    def close(self) -> None:
        """Stops every stage thread and waits for them (at most a few seconds). Idempotent."""
        self._closed = True
        shutdown(self._st, join=True)
        self._finalizer()


def _epoch_state(
    loader: Any, plan: Any, tuning: PipelineTuning, feeder: DeviceFeeder, shape: tuple[int, ...]
) -> EpochState:
    """The epoch's decoder, batch ring, hand-off rings and stats, over the loader's runtime."""
    runtime, pipeline = loader.runtime, loader.pipeline
    workers, prefetch = max(1, int(loader.num_workers)), int(loader.prefetch_factor or 2)
    if pipeline.native:  # only the iterator holding the loader's tuning sets the shared kernel's thread count
        kernel = runtime.image_kernel(tuning.decode_threads)
        decoder: Any = NativeDecoder(pipeline, kernel, owns_threads=runtime.holds(tuning))
        decoder.set_threads(tuning.decode_threads)
    else:
        decoder = PythonDecoder(pipeline)
    pool = runtime.buffer_pool((plan.batch_size, *shape), cap=tuning.max_prefetch + 2)
    ring = BatchRing(tuning.max_prefetch, plan.batch_size, shape, feeder.cuda, tuning.prefetch, pool)
    tuning.start_epoch(ring)
    stats = runtime.stats_for([("read", 1), ("decode", tuning.decode_threads)])
    stats.extra.update(backend=decoder.name, device=str(feeder.device))
    stats.autotune = tuning.summary
    chunk = decoder.chunk(plan.batch_size, workers)
    queued = max(2 * plan.batch_size // chunk, prefetch * plan.batch_size // chunk)
    mean = torch.tensor(pipeline.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(pipeline.std, dtype=torch.float32).view(3, 1, 1)
    return EpochState(
        ds=loader.dataset,
        pipeline=pipeline,
        plan=plan,
        decoder=decoder,
        tuning=tuning,
        ring=ring,
        feeder=feeder,
        stats=stats,
        records=make_ring(queued, "mpmc"),
        finished=make_ring(tuning.max_prefetch + 1, "mpmc"),
        out=make_ring(prefetch, "spsc"),
        chunk=chunk,
        on_error=loader.on_error,
        worker_init_fn=loader.worker_init_fn,
        scale=1.0 / (255.0 * std),
        shift=-mean / std,
        filled=[0] * plan.num_batches,
    )


def _finish(st: EpochState, runtime: Any, join: bool) -> None:
    """The end of an epoch, however it ends (finished, closed, or the iterator garbage-collected)."""
    shutdown(st, join)
    runtime.return_tuning(st.tuning)
