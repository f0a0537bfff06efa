"""Train-pipeline images/s at 224 px: dataio.DataLoader (fast path over a packed synth set) vs
torch.utils.data.DataLoader over the original JPEG folder with the same transforms done the torchvision way
(PIL open → RandomResizedCrop → flip → ToTensor → Normalize), in one run.

    python benchmarks/loader_throughput.py [--images 2000] [--classes 20] [--batch-size 64] [--device cuda]

Efficiency = dataio images/s ÷ (workers × the single-thread per-image rate of the same decode + augment +
normalise). Goals (issue 5): ≥ 1.5× torch's DataLoader, efficiency ≥ 0.9. Writes benchmarks/results/loader.md
(or loader_gpu.md with --device cuda).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
import torch.utils.data as tud
from common import RESULTS, WORK, machine, markdown_table, synth_set

import dataio
from dataio.loaders.reference import ReferencePipeline
from dataio.loaders.transforms import sample_rng
from dataio.pack import PackOptions, pack


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
    it = iter(loader)
    first = next(it)  # start-up (threads/processes, first reads) is not steady-state throughput
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


def single_thread_rate(ds, pipeline, count: int = 300) -> float:
    records = [ds[i] for i in range(min(count, len(ds)))]
    norm = pipeline.normalize
    t = time.perf_counter()
    for i, s in enumerate(records):
        img, _ = pipeline.process(s, sample_rng(0, 0, i))
        norm(torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0))
    return len(records) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--device", default=None, help="cuda: batches delivered on the GPU (dataio's side-stream copy)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    src = synth_set(args.images, args.classes)
    packed = WORK / f"packed-{args.images}-{args.classes}"
    if not (packed / "manifest.json").exists():
        pack(src, packed, PackOptions(shard_size=32 * 10**6, workers=2))
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=True, size=args.size)
    w = args.workers
    torch.set_num_threads(1)  # each loader thread does its own work; no nested intra-op pools

    rows, rates = [], {}
    for rep in range(args.repeats):
        ours = dataio.DataLoader(
            ds,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=w,
            pipeline=pipe,
            seed=rep,
            device=args.device,
            prefetch_factor=4,
        )
        dt, n = timed_epoch(ours, None)
        rates.setdefault("dataio", []).append(n / dt)
        verdict = ours.stats()["verdict"].split(":")[0]
        theirs = tud.DataLoader(
            FolderDataset(src, args.size),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=w,
            pin_memory=args.device == "cuda",
            prefetch_factor=4,
        )
        dt, n = timed_epoch(theirs, args.device)
        rates.setdefault("torch", []).append(n / dt)
    single = single_thread_rate(ds, pipe)
    ref_single = len(range(200)) / _time(
        lambda: [ReferencePipeline(train=True, size=args.size)(ds[i], sample_rng(0, 0, i)) for i in range(200)]
    )
    dataio_rate, torch_rate = float(np.median(rates["dataio"])), float(np.median(rates["torch"]))
    efficiency = dataio_rate / (w * single)
    rows = [
        [
            "dataio.DataLoader (threads, packed shards, fast decode)",
            f"{dataio_rate:,.0f}",
            f"{dataio_rate / torch_rate:.2f}×",
        ],
        ["torch DataLoader (processes, JPEG folder, PIL transforms)", f"{torch_rate:,.0f}", "1.00×"],
    ]
    text = [
        "# Loader throughput" + (" (GPU)" if args.device else ""),
        "",
        f"`python benchmarks/loader_throughput.py --images {args.images} --batch-size {args.batch_size}"
        + (f" --device {args.device}" if args.device else "")
        + f"` on {machine()}"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else "")
        + ".",
        f"Train transform at {args.size} px (RandomResizedCrop + flip + normalise), batch {args.batch_size}, "
        f"{w} workers (threads for dataio, processes for torch), one epoch of {len(ds)} images after the first "
        f"batch, median of {args.repeats}.",
        "",
        markdown_table(["loader", "images/s", "vs torch"], rows),
        "",
        f"Single-thread per-image rate of the same decode + augment + normalise: {single:,.0f} images/s "
        f"(the PIL/torchvision-style reference: {ref_single:,.0f} images/s).",
        f"Efficiency = {dataio_rate:,.0f} / ({w} × {single:,.0f}) = **{efficiency:.2f}** (goal ≥ 0.9); "
        f"speed-up over torch's DataLoader **{dataio_rate / torch_rate:.2f}×** (goal ≥ 1.5). "
        f"Loader verdict: {verdict}.",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("loader_gpu.md" if args.device else "loader.md")).write_text("\n".join(text))
    print("\n".join(text))


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
