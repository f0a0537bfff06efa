"""One epoch of :class:`dataio.DataLoader` with ``ImagePipeline(backend="dali")``.

::

    feeder thread   ds.read_records(epoch order) → header → crop window + flip  (dataio, many reads in flight)
       │  bounded queue of batches
    DALI            external_source → decoders.image_slice (ROI decode; "mixed" = on the GPU) → resize →
       │            crop_mirror_normalize                                        (DALI's threads / the GPU)
    consumer        pipe.run() → torch tensors (on the GPU with "mixed") → sampler.advance

The DALI pipeline is built once per loader and reused by every epoch that runs to its end; an epoch left
early, or a decode failure, drops it (the next epoch builds a new one). A sample DALI cannot decode is found by
decoding that batch's samples with the CPU backend, then named (``on_error="raise"``) or left out and counted,
with the pipeline rebuilt and fed again from that batch (``"skip"``).
"""

from __future__ import annotations

import collections
import time
import weakref
from typing import Any

import torch

from dataio.errors import SampleError
from dataio.loaders.dali.feed import Failure, FedBatch, Feeder
from dataio.loaders.dali.pipeline import build_pipeline
from dataio.loaders.epoch import plan_epoch
from dataio.loaders.image.transforms import sample_rng
from dataio.loaders.stats import PipelineStats
from dataio.sampling.protocol import resumable

__all__ = ["DaliIterator", "DaliState"]


class _Lease:
    """One built DALI pipeline and the iterator its ``external_source`` callback feeds from right now (held
    weakly: the pipeline must not keep an abandoned iterator, and with it its feeder thread, alive)."""

    def __init__(self) -> None:
        self.pipe: Any = None
        self.current: weakref.ref[DaliIterator] | None = None

    def source(self) -> tuple[list[Any], ...]:
        """DALI's ``external_source`` callback (runs in DALI's thread, once per batch, in order)."""
        current = self.current() if self.current is not None else None
        if current is None:
            raise StopIteration
        return current.source()


class DaliState:
    """A loader's DALI pipelines across epochs: an epoch that ran to its end hands its pipeline, reset, to
    the next one (so a loader builds one pipeline however many epochs it runs); iterators alive at the same
    time each hold their own."""

    def __init__(self) -> None:
        self.idle: list[_Lease] = []
        self.builds = 0

    def acquire(self, loader: Any, gpu: bool) -> _Lease:
        if self.idle:
            return self.idle.pop()
        lease = _Lease()
        p = loader.pipeline
        lease.pipe = build_pipeline(
            lease.source,
            batch_size=int(loader.batch_size or 1),
            size=p.size,
            mean=p.mean,
            std=p.std,
            num_threads=max(1, int(loader.num_workers)),
            device_id=torch.cuda.current_device() if gpu else None,
            prefetch=int(loader.prefetch_factor or 2),
        )
        self.builds += 1
        return lease

    def release(self, lease: _Lease) -> None:
        """Takes back a pipeline whose epoch ended (and was reset)."""
        lease.current = None
        self.idle.append(lease)


class DaliIterator:
    """One epoch through DALI (see the module docstring)."""

    def __init__(self, loader: Any) -> None:
        self.loader, self.ds, self.pipeline = loader, loader.dataset, loader.pipeline
        self.plan = plan_epoch(loader)
        self.gpu = self.pipeline.dali_device == "mixed"
        if self.gpu:
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
            if loader.device is not None and torch.device(loader.device).type != "cpu":
                raise RuntimeError(f"device={loader.device!r} needs a GPU DALI pipeline, but CUDA is not available")
        sampler = resumable(loader.sampler)
        if sampler is not None:
            self.ds.prefetch(sampler.shard_order(self.plan.indices))
        self.state: DaliState = loader.runtime.dali
        self.stats: PipelineStats = loader.runtime.stats_for([("read", 1), ("decode", 1)])
        self.stats.extra.update(backend=f"dali-{self.pipeline.dali_device}", device=str(self.device))
        self.stats.extra.setdefault("source_wait_s", 0.0)
        self.stats.autotune = lambda: {"enabled": False, "reason": "DALI's executor owns the decode threads"}
        self.timeout = float(loader.timeout or 0)
        self.bad: set[int] = set()
        self.inflight: collections.deque[FedBatch] = collections.deque()
        self.error: BaseException | None = None
        self.finished = False
        self._start(0)

    def _start(self, batch: int) -> None:
        """Takes a pipeline (an idle one, or a new build) and feeds it from ``batch`` on."""
        self.lease = self.state.acquire(self.loader, self.gpu)
        self.lease.current = weakref.ref(self)
        self.pipe = self.lease.pipe
        depth = int(self.loader.prefetch_factor or 2)
        stage = self.stats.stages["read"]
        on_bad = _bad_sample_handler(self.loader.on_error, self.stats, self.plan)  # no reference to self
        self.feeder = Feeder(self.ds, self.pipeline, self.plan, batch, self.bad, on_bad, stage, depth)
        self._finalizer = weakref.finalize(self, _close, self.lease, self.feeder)

    # -- DALI's side ------------------------------------------------------------------------------
    def source(self) -> tuple[list[Any], ...]:
        start = time.perf_counter()
        item = self.feeder.get(self._give_up(start))
        self.stats.extra["source_wait_s"] += time.perf_counter() - start
        if isinstance(item, FedBatch):
            self.inflight.append(item)
            return item.inputs
        if isinstance(item, Failure):
            self.error = item.exc
        elif item is None and self.error is None and not self.feeder.stop.is_set():
            self.error = RuntimeError(f"DataLoader timed out after {self.timeout} seconds")
        raise StopIteration  # END, a failure or a stop: the consumer sees why

    def _give_up(self, start: float) -> Any:
        def give_up() -> bool:
            if self.feeder.stop.is_set():
                return True
            return bool(self.timeout) and time.perf_counter() - start > self.timeout

        return give_up

    # -- consumer ---------------------------------------------------------------------------------
    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.finished:  # ended, failed or closed: iteration is over
            raise StopIteration
        t = time.perf_counter()
        wait0 = self.stats.extra["source_wait_s"]
        while True:
            try:
                images, labels = self.pipe.run()
                break
            except StopIteration:
                self._end()
                if self.error is not None:
                    raise self.error from None
                raise
            except RuntimeError as exc:  # DALI reports a failed operator (e.g. an undecodable image)
                self._on_dali_error(exc)
        fed = self.inflight.popleft()
        out_images, out_labels = self._to_torch(images, labels)
        elapsed = time.perf_counter() - t
        starved = self.stats.extra["source_wait_s"] - wait0
        self.stats.stages["decode"].add(len(fed.positions), 0, max(0.0, elapsed - starved))
        self.stats.consumer_wait += elapsed
        self.stats.batches += 1
        self.plan.advance(self.loader.sampler, fed.covers)
        return out_images, out_labels

    def _on_dali_error(self, exc: RuntimeError) -> None:
        if not self.inflight:  # not a batch's failure (the pipeline itself)
            self.close()
            raise exc
        fed = self.inflight[0]
        culprits = [pos for pos in fed.positions if self._cpu_fails(pos)]
        self._restart_from(fed.batch)
        if not culprits or self.loader.on_error != "skip":
            self.close()
            where = culprits[:1] or fed.positions
            keys = [self.ds[int(self.plan.indices[p])].get("key") for p in where[:4]]
            what = f"sample {int(self.plan.indices[where[0]])} (key {keys[0]!r})" if culprits else f"batch {keys}"
            raise SampleError(f"{what}: DALI could not decode it: {str(exc).strip().splitlines()[0]}") from exc
        self.bad.update(culprits)
        self.stats.skipped += len(culprits)

    def _cpu_fails(self, pos: int) -> bool:
        index = int(self.plan.indices[pos])
        try:
            self.pipeline.process(self.ds[index], sample_rng(self.plan.seed, self.plan.epoch, index))
        except Exception:
            return True
        return False

    def _restart_from(self, batch: int) -> None:
        """Drops the pipeline (with its prefetched batches) and feeds a fresh one from ``batch``."""
        self._finalizer()
        self.inflight.clear()
        self._start(batch)

    def _to_torch(self, images: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        batch = images.as_tensor()
        out = torch.empty(batch.shape(), dtype=torch.float32, device=self.device)
        if self.gpu:
            feed_ndarray(batch, out, cuda_stream=torch.cuda.current_stream(self.device))
        else:
            feed_ndarray(batch, out)
        lab = torch.empty(labels.as_tensor().shape(), dtype=torch.int64)
        feed_ndarray(labels.as_tensor(), lab)
        return out, lab.to(self.device, non_blocking=True)

    def _end(self) -> None:
        """The epoch ran to its end: the pipeline is reset for the next one (or discarded after a failure)."""
        self.finished = True
        if self.error is None:
            self._finalizer.detach()
            self.feeder.close()
            self.pipe.reset()
            self.state.release(self.lease)
        else:
            self._finalizer()

    def __iter__(self) -> DaliIterator:
        return self

    def __len__(self) -> int:
        return self.plan.num_batches

    def close(self) -> None:
        """Stops the feeder; an unfinished epoch discards the pipeline. Idempotent."""
        self.finished = True
        self._finalizer()


def _bad_sample_handler(on_error: str, stats: PipelineStats, plan: Any) -> Any:
    """The feeder's callback for a sample whose header cannot be read: skip it (counted) or raise naming it."""

    def on_bad(pos: int, key: Any, exc: BaseException) -> bool:
        if on_error == "skip":
            stats.skipped += 1
            return True
        raise SampleError(f"sample {int(plan.indices[pos])} (key {key!r}): {exc}") from exc

    return on_bad


def _close(lease: _Lease, feeder: Feeder) -> None:
    """Stops the feeder and drops the pipeline: mid-epoch, it cannot be reused."""
    feeder.close()
    lease.current = None
    lease.pipe = None
