"""One rank of the experiment: joins the gloo group, then trains every run it is given, one after the other.

Each run builds everything afresh from its seed (model, optimizer, dataset with an empty node-local cache,
``DistributedShuffleSampler``, ``dataio.DataLoader``), so a run's numbers do not depend on what ran before it in
the same processes; keeping the processes across runs only saves their start-up (importing torch and DDP costs
seconds per process). torch runs single-threaded and the loader's batches do not depend on thread timing, so the
same seed gives the same losses and accuracies bit for bit.

Per epoch, rank 0 records: training loss and accuracy (over all ranks, during the epoch), loss and accuracy of the
final model on the held-out set and on the whole training set, the training objective (that loss + λ/2 ‖w‖²: what
the reshuffling bounds are about), samples/s and
the step-time split (the harness's :class:`~dataio.train.steptime.StepTimer`), the IO every rank caused (the
reader's requests, fetches and bytes; the shard cache's hits, misses and downloads), and how spread the batches
were (distinct shards per rank batch and per global batch, distinct labels per global batch).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import dataio
from dataio.experiments.config import RunSpec, ShuffleExperimentConfig
from dataio.experiments.data import PreparedData
from dataio.experiments.model import build_model
from dataio.experiments.spread import batch_spread
from dataio.experiments.store import RunStore
from dataio.train.comm import build_allreduce
from dataio.train.harness import init_distributed
from dataio.train.hook import AllreduceHook
from dataio.train.steptime import StepSplit, StepTimer

__all__ = ["CACHE_COUNTERS", "READER_COUNTERS", "rank_main", "train_run"]

READER_COUNTERS = ("requests", "fetches", "bytes")
CACHE_COUNTERS = ("hits", "misses", "downloads", "bytes_downloaded", "evictions", "over_limit", "remote_reads")
_MEAN, _STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
_DECODED: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}


@dataclass(frozen=True)
class GroupJob:
    """What every rank of one process group runs."""

    config: ShuffleExperimentConfig
    runs: tuple[RunSpec, ...]
    data: dict[str, PreparedData]
    runs_dir: str
    cache_root: str
    port: int


def _pipeline(config: ShuffleExperimentConfig) -> dataio.ImagePipeline:
    # val geometry with crop_ratio 1: the whole digit resized to image_size; no random crop or flip for digits
    return dataio.ImagePipeline(
        train=False, size=config.image_size, backend="cpu", crop_ratio=1.0, mean=_MEAN, std=_STD
    )


def _decoded(path: str, config: ShuffleExperimentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole packed set decoded once per process (for evaluation), read through dataio.DataLoader in storage
    order."""
    key = (path, config.image_size)
    if key not in _DECODED:
        with dataio.open_dataset(path) as ds:
            sampler = dataio.DistributedShuffleSampler(ds, "sequential", rank=0, world_size=1)
            loader = dataio.DataLoader(ds, batch_size=256, sampler=sampler, num_workers=1,
                                       pipeline=_pipeline(config), autotune=False)  # fmt: skip
            batches = list(loader)
        _DECODED[key] = (torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches]))
    return _DECODED[key]


def _counters(loader: dataio.DataLoader) -> np.ndarray:
    stats = loader.stats()
    io = stats.get("io") or {}
    cache = stats.get("cache") or {}
    return np.array([io.get(k, 0) for k in READER_COUNTERS] + [cache.get(k, 0) for k in CACHE_COUNTERS], np.float64)


def _all_ranks_spread(ds: Any, sampler: Any, spec: RunSpec, config: ShuffleExperimentConfig, epoch: int) -> dict:
    """Batch spread of the epoch from every rank's indices (a pure function of seed, epoch and shard sizes)."""
    indices = []
    for r in range(spec.world_size):
        other = dataio.DistributedShuffleSampler(ds, spec.mode, seed=spec.seed, rank=r, world_size=spec.world_size,
                                                 drop_last=True, **sampler.mode_params)  # fmt: skip
        other.set_epoch(epoch)
        indices.append(other.epoch_indices())
    shard_of = np.repeat(np.arange(len(ds.shard_sizes)), ds.shard_sizes)
    return batch_spread(indices, config.per_rank_batch(spec.world_size), shard_of, ds.labels)


def _evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(images)
    model.train()
    return float(F.cross_entropy(logits, labels)), float((logits.argmax(1) == labels).double().mean())


def _penalty(model: torch.nn.Module, weight_decay: float) -> float:
    """λ/2 ‖w‖² over every parameter (SGD's ``weight_decay`` applies to all of them)."""
    with torch.no_grad():
        return 0.5 * weight_decay * float(sum((p.double() ** 2).sum() for p in model.parameters()))


def train_run(spec: RunSpec, job: GroupJob, hook: AllreduceHook) -> dict[str, Any]:
    """Trains one run on this rank (collective); returns its record (complete on rank 0)."""
    config, data = job.config, job.data[spec.dataset]
    rank = dist.get_rank()
    cache_dir = Path(job.cache_root, spec.run_id)
    cached = config.cached(spec)
    if rank == 0 and cached:
        shutil.rmtree(cache_dir, ignore_errors=True)
        cache_dir.mkdir(parents=True)
    dist.barrier()
    path = data.train[spec.order]
    with dataio.open_dataset(path) as probe:
        total_bytes = int(probe.shard_nbytes.sum())
    cache_limit = int(config.cache_fraction * total_bytes)
    ds = dataio.open_dataset(
        path,
        threads=config.read_threads,
        coalesce_gap=config.coalesce_gap,
        cache_dir=str(cache_dir) if cached else None,
        cache_limit=cache_limit if cached else None,
    )
    try:
        sampler = dataio.DistributedShuffleSampler(ds, spec.mode, seed=spec.seed, drop_last=True,
                                                   block_size=config.block_size, window=config.window,
                                                   buffer_size=config.buffer_size)  # fmt: skip
        loader = dataio.DataLoader(ds, batch_size=config.per_rank_batch(spec.world_size), sampler=sampler,
                                   num_workers=config.workers, drop_last=True, pipeline=_pipeline(config),
                                   seed=spec.seed, autotune=False)  # fmt: skip
        torch.manual_seed(spec.seed)
        np.random.seed(spec.seed)
        model = build_model(config.model, data.num_classes, config.image_size, spec.seed)
        ddp = DistributedDataParallel(model)
        hook.install(ddp)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)  # fmt: skip
        evaluate = {}
        if rank == 0:  # the held-out set, and the whole training set: the objective the theory bounds
            evaluate = {"heldout": _decoded(data.heldout, config), "full_train": _decoded(path, config)}
        run = _Run(spec, config, ds, sampler, loader, ddp, optimizer, hook, evaluate)
        started = time.perf_counter()
        epochs = [run.epoch(e) for e in range(config.epochs)]
        record = {
            "epochs": epochs,
            "wall_s": time.perf_counter() - started,
            "num_train": len(ds),
            "num_shards": len(ds.shard_sizes),
            "dataset_bytes": total_bytes,
            "cache_limit": cache_limit if cached else None,
            "per_rank_batch": config.per_rank_batch(spec.world_size),
            "steps_per_epoch": len(loader),
            "mode_params": sampler.mode_params,
        }
    finally:
        ds.close()
        dist.barrier()
        if rank == 0 and cached:
            shutil.rmtree(cache_dir, ignore_errors=True)
    return record


@dataclass
class _Run:
    """The live objects of one run on this rank."""

    spec: RunSpec
    config: ShuffleExperimentConfig
    ds: Any
    sampler: Any
    loader: Any
    ddp: Any
    optimizer: Any
    hook: AllreduceHook
    evaluate: dict[str, tuple[torch.Tensor, torch.Tensor]]  # rank 0: name -> the set to evaluate on

    def steps(self, timer: StepTimer) -> torch.Tensor:
        """Trains one epoch of this rank's batches; returns this rank's (summed loss, correct, samples)."""
        sums = torch.zeros(3, dtype=torch.float64)
        batches = iter(self.loader)
        try:
            while True:
                timer.start()
                try:
                    images, labels = next(batches)
                except StopIteration:
                    break
                timer.data_ready()
                logits = self.ddp(images)
                loss = F.cross_entropy(logits, labels)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                timer.backward_done()
                self.optimizer.step()
                timer.end(len(labels))
                n = len(labels)
                correct = float((logits.argmax(1) == labels).sum())
                sums += torch.tensor([float(loss.detach()) * n, correct, n], dtype=torch.float64)
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        return sums

    def epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch (collective); its record on rank 0, ``{}`` elsewhere."""
        self.loader.set_epoch(epoch)
        before = _counters(self.loader)
        timer = StepTimer(self.hook)
        timer.measuring = True
        started = time.perf_counter()
        sums = self.steps(timer)
        dist.all_reduce(sums)
        split = StepSplit.gather(timer, "cpu")
        io = torch.from_numpy(_counters(self.loader) - before)
        dist.all_reduce(io)
        seconds = time.perf_counter() - started
        if dist.get_rank() != 0:
            return {}
        loss_sum, correct, images_seen = (float(v) for v in sums)
        record: dict[str, Any] = {"epoch": epoch, "train_loss": loss_sum / images_seen,
                                  "train_accuracy": correct / images_seen}  # fmt: skip
        for name, (images, labels) in self.evaluate.items():
            record[f"{name}_loss"], record[f"{name}_accuracy"] = _evaluate(self.ddp.module, images, labels)
        # the objective SGD minimises: what the random-reshuffling bounds are about
        record["objective"] = record["full_train_loss"] + _penalty(self.ddp.module, self.config.weight_decay)
        return record | {
            "samples": int(images_seen),
            "seconds": seconds,
            "samples_per_s": images_seen / seconds,
            "data_pct": split.data_pct,
            "io": dict(zip(READER_COUNTERS + CACHE_COUNTERS, (int(v) for v in io.tolist()), strict=True)),
            "spread": _all_ranks_spread(self.ds, self.sampler, self.spec, self.config, epoch),
        }


def rank_main(rank: int, world_size: int, job: GroupJob) -> None:
    """``torch.multiprocessing`` entry point: rank ``rank`` of ``world_size`` runs ``job.runs`` in order."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(job.port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    init_distributed(torch.device("cpu"))
    hook = AllreduceHook(build_allreduce("flat", device="cpu"), "cpu")
    store = RunStore(job.runs_dir, job.config.run_digest())
    try:
        for spec in job.runs:
            try:
                record = train_run(spec, job, hook)
            except Exception as exc:
                raise RuntimeError(f"rank {rank}/{world_size}: run {spec.run_id}: {type(exc).__name__}: {exc}") from exc
            if rank == 0:
                store.save(spec, record)
            dist.barrier()
    finally:
        hook.close()
        dist.destroy_process_group()
