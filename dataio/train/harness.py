"""``train(config)``: DDP training of an image classifier on a dataio dataset, with dataio's allreduce hook,
bucket-size tuning and the step-time split.

Runs under torchrun (``torchrun --nproc-per-node N -m dataio.train DATASET``: the process group comes from the
environment) or as a single process (``dataio train DATASET``: a one-rank gloo / NCCL group on an in-memory store).
Every rank runs the same number of steps: the sampler gives each rank an equal share of every epoch and partial
batches are dropped. Rank 0 prints the per-epoch loss / accuracy and the final report; every failure names the
rank and the stage it happened in.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from dataio.train.comm import build_allreduce
from dataio.train.config import TrainConfig
from dataio.train.data import LoaderBatches, SyntheticBatches, open_batches
from dataio.train.errors import TrainError
from dataio.train.fusion import BucketTuner
from dataio.train.hook import AllreduceHook
from dataio.train.model import build_model, count_parameters
from dataio.train.report import EpochResult, TrainReport, format_epoch, format_report
from dataio.train.steptime import StepSplit, StepTimer

__all__ = ["init_distributed", "resolve_device", "train"]


def resolve_device(name: str) -> torch.device:
    """``"auto"``: this rank's GPU (``LOCAL_RANK``) when CUDA is available, else the CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("--device cuda, but CUDA is not available")
    index = int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count()
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def init_distributed(device: torch.device) -> bool:
    """Joins torchrun's process group (``env://``), or makes a one-rank group; True if it created one."""
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if os.environ.get("WORLD_SIZE") and os.environ.get("MASTER_ADDR"):
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


class _Run:
    """One training run's state (model, optimizer, DDP wrapper, hook, timers)."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        self.config, self.device = config, device
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.where = f"rank {self.rank}"
        with self.stage("setup"):
            torch.manual_seed(config.seed)
            self.source = open_batches(config, device)
            self.model = build_model(config.model, self.source.num_classes, config.image_size, config.width)
            self.model.to(device)
            self.grad_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters() if p.requires_grad)
            self.optimizer = torch.optim.SGD(
                self.model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
            allreduce = build_allreduce(
                config.allreduce,
                ranks_per_node=config.ranks_per_node,
                compress=config.compress,
                variant=config.variant,
                device=device,
                probe_bytes=min(self.grad_bytes, 4 << 20),
            )
            self.where = allreduce.groups.describe()
            self.hook = AllreduceHook(allreduce, device)
        self.tuner: BucketTuner | None = None
        if config.bucket_mb == "auto":
            self.tuner = BucketTuner(config.bucket_candidates, config.tune_steps, self.grad_bytes)
        self.ddp: Any = None
        self.bucket_mb = 0.0
        self.tuned_for = 0  # steps since the bucket size was settled

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Re-raises any failure as a TrainError naming this rank and ``name``."""
        try:
            yield
        except TrainError:
            raise
        except Exception as exc:
            raise TrainError(f"{self.where}: {name}: {type(exc).__name__}: {exc}") from exc

    def wrap(self, bucket_mb: float) -> None:
        """(Re)builds the DDP wrapper with this bucket size and installs the hook on it."""
        if self.ddp is not None and bucket_mb == self.bucket_mb:
            return
        self.ddp = None
        gc.collect()  # the old wrapper's reducer (and its autograd hooks) must be gone before the new one exists
        with self.stage("DDP setup"):
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids, bucket_cap_mb=bucket_mb)
            self.hook.install(self.ddp)
        self.bucket_mb = bucket_mb

    def step(self, batches: Iterator[Any], timer: StepTimer) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step; returns (summed loss, correct predictions, images) of this rank's batch."""
        timer.start()
        with self.stage("data"):
            images, labels = next(batches)
        timer.data_ready()
        with self.stage("forward/backward"):
            logits = self.ddp(images)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        timer.backward_done()
        with self.stage("optimizer"):
            self.optimizer.step()
        n = len(labels)
        seconds = timer.end(n)
        if self.tuner is not None and self.tuner.active:
            with self.stage("bucket tuning"):
                self.tuner.record(seconds, self.device)
        else:
            self.tuned_for += 1
        return loss.detach() * n, (logits.argmax(1) == labels).sum(), n

    def current_bucket(self) -> float:
        if self.tuner is not None:
            return self.tuner.current
        return float(self.config.bucket_mb)

    def run(
        self, source: LoaderBatches | SyntheticBatches, total: int, timer: StepTimer, label: str = ""
    ) -> list[EpochResult]:
        """``total`` steps over as many epochs as needed; returns the per-epoch results (all ranks)."""
        done, epoch, results = 0, 0, []
        spe = source.steps_per_epoch
        while done < total:
            steps = min(spe, total - done)
            batches = source.epoch(epoch)
            sums = torch.zeros(3, dtype=torch.float64, device=self.device)
            for _ in range(steps):
                self.wrap(self.current_bucket())
                timer.measuring = self.tuned_for >= self.config.warmup_steps and not (self.tuner and self.tuner.active)
                loss, correct, n = self.step(batches, timer)
                sums += torch.stack([loss.double(), correct.double(), torch.tensor(float(n), device=self.device)])
            with self.stage("epoch statistics"):
                dist.all_reduce(sums)
            loss_sum, correct, images = (float(v) for v in sums.cpu())
            result = EpochResult(epoch, steps, int(images), loss_sum / images, correct / images)
            results.append(result)
            if self.rank == 0:
                print(label + format_epoch(result), flush=True)
            done += steps
            epoch += 1
        return results


def _total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    return config.steps if config.steps is not None else (config.epochs or 1) * steps_per_epoch


def train(config: TrainConfig) -> TrainReport:
    """Trains as configured and returns the report (every rank gets it; rank 0 prints it).

    Raises:
        TrainError: A stage failed (the message names the rank and stage).
        ValueError: Options that do not fit the dataset or the job.
    """
    device = resolve_device(config.device)
    created = init_distributed(device)
    run: _Run | None = None
    try:
        run = _Run(config, device)
        total = _total_steps(config, run.source.steps_per_epoch)
        if run.tuner is not None and total < run.tuner.total_steps + 1:
            raise ValueError(
                f"--bucket-mb auto tries {len(run.tuner.candidates)} sizes in {run.tuner.total_steps} steps: "
                f"run at least {run.tuner.total_steps + 1} steps"
            )
        if run.rank == 0:
            print(
                f"dataio train: {run.world} rank(s), {run.hook.allreduce!r}, {total} steps "
                f"({run.source.steps_per_epoch} per epoch), data: "
                f"{'synthetic' if config.synthetic_data else config.dataset}",
                flush=True,
            )
        timer = StepTimer(run.hook)
        epochs = run.run(run.source, total, timer)
        split = StepSplit.gather(timer, device)
        loader = run.source.stats()
        synthetic = None
        if config.compare_synthetic:
            steps = max(1, split.steps) + config.warmup_steps
            fake = SyntheticBatches(config, device, run.source.num_classes, steps)
            run.tuned_for = 0
            fake_timer = StepTimer(run.hook)
            run.run(fake, steps, fake_timer, label="synthetic data: ")
            synthetic = StepSplit.gather(fake_timer, device)
        layout = run.hook.allreduce.groups.layout
        report = TrainReport(
            world_size=run.world,
            nodes=layout.num_nodes,
            ranks_per_node=layout.ranks_per_node,
            device=str(device),
            backend=dist.get_backend(),
            model=config.model,
            parameters=count_parameters(run.model),
            grad_bytes=run.grad_bytes,
            batch_size=config.batch_size,
            image_size=config.image_size,
            data="synthetic (no IO)" if config.synthetic_data else str(config.dataset),
            allreduce=repr(run.hook.allreduce),
            bucket_mb=run.bucket_mb,
            bucket_tuning=run.tuner.summary() if run.tuner is not None else None,
            epochs=epochs,
            split=split,
            loader={"verdict": loader["verdict"]} if "verdict" in loader else {},
            synthetic=synthetic,
        )
        if run.rank == 0:
            print(format_report(report), flush=True)
            if config.json_path:
                with open(config.json_path, "w", encoding="utf-8") as f:
                    f.write(report.to_json())
        return report
    finally:
        if run is not None:
            run.hook.close()
            run.source.close()
        if created:
            dist.destroy_process_group()
