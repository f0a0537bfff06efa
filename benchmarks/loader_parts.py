"""Pieces of benchmarks/loader_throughput.py: the torch baseline's dataset, epoch timing, and the single-thread
per-image measurements of both decode paths (no reading, no queues: the baseline that efficiency divides by)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data as tud

from dataio.loaders import native
from dataio.loaders.image.reference import ReferencePipeline
from dataio.loaders.image.transforms import sample_rng

__all__ = ["FolderDataset", "single_thread_cpu", "single_thread_rate", "timed_epoch"]


class FolderDataset(tud.Dataset):
    """torchvision.datasets.ImageFolder + the reference transforms, without torchvision."""

    def __init__(self, root: Path, size: int) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(p, i) for i, c in enumerate(classes) for p in sorted((root / c).glob("*.JPEG"))]
        self.pipeline = ReferencePipeline(train=True, size=size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[i]
        image, _ = self.pipeline({"image": path.read_bytes(), "label": label}, np.random.default_rng(i))
        return image, label


def timed_epoch(loader, device: str | None) -> tuple[float, int]:
    """Seconds and images of one epoch after its first batch (start-up is not steady-state throughput)."""
    it = iter(loader)
    first = next(it)
    n = 0
    t = time.perf_counter()
    for images, _ in it:
        if device:
            images = images.to(device, non_blocking=True)
        n += len(images)
    if device == "cuda":
        torch.cuda.synchronize()
    del first
    return time.perf_counter() - t, n


def _work(ds, pipe, count: int, seed: int):
    """A function decoding ``count`` random samples the way the loader's decode stage does (native: batches of 64
    through a 1-thread kernel; Python: per image + normalise), with the records read beforehand."""
    picks = np.random.default_rng(seed).permutation(len(ds))[:count]
    samples = [ds.decode(ds.read_record(int(i)), views=True) for i in picks]
    if not pipe.native:
        def run() -> None:
            for k, sample in enumerate(samples):
                img, _ = pipe.process(sample, sample_rng(0, 0, int(picks[k])))
                pipe.normalize(torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0))

        return run, None
    kernel = native.require().ImageKernel(1)
    mean, std = np.array(pipe.mean), np.array(pipe.std)
    scale, shift = (1 / (255 * std)).tolist(), (-mean / std).tolist()
    out = torch.empty((64, 3, pipe.size, pipe.size), dtype=torch.float32)

    def run() -> None:
        for s in range(0, count, 64):
            part = samples[s : s + 64]
            images = [x["image"] for x in part]
            headers = native.jpeg_headers(images)
            boxes, flips = pipe.windows(headers[:, :2], picks[s : s + 64], 0, 0)
            kernel.run(images, boxes, flips, out.numpy(), np.arange(len(part)), pipe.train, scale, shift)

    return run, kernel


def _timed(ds, pipe, count: int, seed: int, clock) -> float:
    run, kernel = _work(ds, pipe, count, seed)
    t = clock()
    run()
    dt = clock() - t
    if kernel is not None:
        kernel.close()
    return dt


def single_thread_rate(ds, pipe, count: int = 384, seed: int = 0) -> float:
    """Images/s of one thread doing the loader's decode work (wall clock)."""
    return count / _timed(ds, pipe, count, seed, time.perf_counter)


def single_thread_cpu(ds, pipe, count: int = 384, seed: int = 0) -> float:
    """CPU seconds per image of the same work (``process_time``: every thread of this process, the kernel's too)."""
    return _timed(ds, pipe, count, seed, time.process_time) / count
