"""Train-pipeline images/s at 224 px, in one run:

- dataio.DataLoader, CPU backend (fast path over a packed synth set), fixed settings (num_workers = cores);
- the same, autotuned from a poor start (1 decode thread, 1 read in flight, prefetch 2): the rate of the last
  epoch, once the tuner has settled, and the settings it chose;
- dataio.DataLoader with ImagePipeline(backend="dali"): DALI on its CPU threads here, fed by dataio's reader;
- DALI's own pipeline on the original JPEG folder (fn.readers.file → decoders.image_random_crop → resize →
  crop_mirror_normalize), the same transform;
- torch.utils.data.DataLoader over the JPEG folder with the transforms done the torchvision way (PIL open →
  RandomResizedCrop → flip → ToTensor → Normalize).

    python benchmarks/loader_throughput.py [--images 2000] [--classes 20] [--batch-size 64] [--device cuda]

Efficiency = dataio images/s ÷ (workers × the single-thread per-image rate of the same decode + augment +
normalise). Goals (issue 5): ≥ 1.5× torch's DataLoader, efficiency ≥ 0.9. Writes benchmarks/results/loader.md
(or loader_gpu.md with --device cuda, where the DALI rows decode on the GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
import torch.utils.data as tud
from common import RESULTS, WORK, machine, markdown_table, synth_set
from dali_baselines import dali_folder_rate, dali_parallel_source_rate

import dataio
from dataio.loaders.dali_pipeline import dali_available
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


def single_thread_rate(ds, pipeline, count: int = 400, seed: int = 0, threads: int = 1) -> float:
    """Per-image rate of decode + augment + normalise over a random subset of the epoch (the images differ in
    size: the first ones alone would not be representative), on one thread — or, with ``threads``, the same
    loop split over that many bare threads: no reading, no queues, no batches; the ceiling that the GIL and the
    cores leave to any thread-based loader."""
    picks = np.random.default_rng(seed).permutation(len(ds))[: count * threads]
    records = [ds[int(i)] for i in picks]
    norm = pipeline.normalize

    def loop(part: range) -> None:
        for k in part:
            img, _ = pipeline.process(records[k], sample_rng(0, 0, int(picks[k])))
            norm(torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0))

    workers = [threading.Thread(target=loop, args=(range(k, len(records), threads),)) for k in range(threads)]
    t = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(records) / (time.perf_counter() - t)


def _process_worker(path: str, size: int, seed: int, start: float, out) -> None:
    torch.set_num_threads(1)
    ds = dataio.open_dataset(path)
    pipe = dataio.ImagePipeline(train=True, size=size, backend="cpu")
    single_thread_rate(ds, pipe, count=50, seed=seed)  # warm-up (imports, first decodes) before the common start
    time.sleep(max(0.0, start - time.time()))
    out.put(single_thread_rate(ds, pipe, count=800, seed=seed))


def process_rate(packed: Path, size: int, workers: int, seed: int) -> float:
    """The same per-image loop in ``workers`` processes at once (no GIL shared): the sum of their rates."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 8.0
    procs = [
        ctx.Process(target=_process_worker, args=(str(packed), size, seed + k, start, out)) for k in range(workers)
    ]
    for p in procs:
        p.start()
    rates = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    return float(sum(rates))


def dataio_rate(ds, pipe, args, rep: int, **kw) -> tuple[float, dict]:
    loader = dataio.DataLoader(
        ds, batch_size=args.batch_size, shuffle=True, pipeline=pipe, seed=rep, device=args.device, **kw
    )
    dt, n = timed_epoch(loader, None)
    return n / dt, loader.stats()


def autotuned(ds, pipe, args) -> tuple[float, dict]:
    """Epochs of a loader started with poor settings until its tuner has converged; the last epoch's rate."""
    ds.reader.set_threads(1)
    loader = dataio.DataLoader(
        ds,
        batch_size=args.batch_size,
        shuffle=True,
        pipeline=pipe,
        seed=0,
        device=args.device,
        num_workers=1,
        prefetch_factor=2,
    )
    rate = 0.0
    for epoch in range(args.tune_epochs):
        loader.set_epoch(epoch)
        dt, n = timed_epoch(loader, None)
        rate = n / dt
        if loader.stats()["autotune"]["phase"] == "converged" and epoch >= 1:
            loader.set_epoch(epoch + 1)
            dt, n = timed_epoch(loader, None)
            rate = n / dt
            break
    stats = loader.stats()
    ds.reader.set_threads(ds.threads or ds.store.default_threads)
    return rate, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--device", default=None, help="cuda: batches delivered on the GPU (dataio's side-stream copy)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--tune-epochs", type=int, default=40)
    args = ap.parse_args()

    src = synth_set(args.images, args.classes)
    packed = WORK / f"packed-{args.images}-{args.classes}"
    if not (packed / "manifest.json").exists():
        pack(src, packed, PackOptions(shard_size=32 * 10**6, workers=2))
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=True, size=args.size, backend="cpu")
    dali = dataio.ImagePipeline(train=True, size=args.size, backend="dali") if dali_available() else None
    w = args.workers
    torch.set_num_threads(1)  # each loader thread does its own work; no nested intra-op pools

    rates: dict[str, list[float]] = {}
    verdicts: dict[str, str] = {}
    efficiencies: list[float] = []
    ceilings: list[float] = []
    process_ceilings: list[float] = []
    for rep in range(args.repeats):
        single_before = single_thread_rate(ds, pipe, seed=rep)
        rate, stats = dataio_rate(ds, pipe, args, rep, num_workers=w, prefetch_factor=4, autotune=False)
        single = (single_before + single_thread_rate(ds, pipe, seed=rep + 100)) / 2  # bracket the loader's run
        rates.setdefault("single", []).append(single)
        efficiencies.append(rate / (w * single))
        ceilings.append(single_thread_rate(ds, pipe, seed=rep + 200, threads=w) / (w * single))
        process_ceilings.append(process_rate(packed, args.size, w, rep + 300) / (w * single))
        rates.setdefault("dataio", []).append(rate)
        verdicts["dataio"] = stats["verdict"].split(":")[0]
        if dali is not None:
            rate, stats = dataio_rate(ds, dali, args, rep, num_workers=w, prefetch_factor=4)
            rates.setdefault("dali", []).append(rate)
            verdicts["dali"] = f"{stats['backend']}, {stats['verdict'].split(':')[0]}"
            rates.setdefault("dali-folder", []).append(dali_folder_rate(src, args, w))
            if args.device != "cuda":
                rates.setdefault("dali-pes", []).append(dali_parallel_source_rate(packed, dali, args, w, rep))
        theirs = tud.DataLoader(
            FolderDataset(src, args.size),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=w,
            pin_memory=args.device == "cuda",
            prefetch_factor=4,
            # forking a process that runs DALI's thread pools crashes the children; start-up is not timed
            multiprocessing_context="spawn",
        )
        dt, n = timed_epoch(theirs, args.device)
        rates.setdefault("torch", []).append(n / dt)
    tuned_rate, tuned = autotuned(ds, pipe, args)
    ref_single = len(range(200)) / _time(
        lambda: [ReferencePipeline(train=True, size=args.size)(ds[i], sample_rng(0, 0, i)) for i in range(200)]
    )
    med = {k: float(np.median(v)) for k, v in rates.items()}
    torch_rate, ours = med["torch"], med["dataio"]
    single = med["single"]
    efficiency = float(np.median(efficiencies))
    thread_ceiling, proc_ceiling = float(np.median(ceilings)), float(np.median(process_ceilings))
    auto = tuned["autotune"]
    knobs = ", ".join(f"{k} {v}" for k, v in auto["knobs"].items())
    trials = sum(1 for d in auto["decisions"] if "knob" in d)

    def row(name: str, rate: float, note: str) -> list[str]:
        return [name, f"{rate:,.0f}", f"{rate / torch_rate:.2f}×", note]

    gpu = args.device == "cuda"
    rows = [
        row(
            "dataio.DataLoader, CPU backend (threads, packed shards)",
            ours,
            f"{w} decode threads, fixed; {verdicts['dataio']}",
        )
    ]
    rows.append(
        row(
            "dataio.DataLoader, CPU backend, autotuned from 1 thread",
            tuned_rate,
            f"tuner: {knobs} after {trials} trials ({auto['phase']})",
        )
    )
    if dali is not None:
        rows.append(
            row(
                f"dataio.DataLoader, backend='dali' ({'GPU' if gpu else 'CPU'} decode)",
                med["dali"],
                f"DALI {w} threads; {verdicts['dali']}",
            )
        )
        if "dali-pes" in med:
            rows.append(
                row(
                    "same DALI graph fed by DALI's parallel external_source (CPU decode)",
                    med["dali-pes"],
                    f"{w} Python worker processes read the shards instead of dataio's feeder thread",
                )
            )
        rows.append(
            row(
                f"DALI fn.readers.file on the JPEG folder ({'GPU' if gpu else 'CPU'} decode)",
                med["dali-folder"],
                "DALI's own reader + image_random_crop",
            )
        )
    rows.append(row("torch DataLoader (processes, JPEG folder, PIL transforms)", torch_rate, f"{w} processes"))
    gpu_line = (
        f"GPU: {torch.cuda.get_device_name()}."
        if gpu
        else "No GPU in this run: the DALI rows decode on DALI's CPU threads (`device='cpu'`); "
        "the GPU (`mixed`) figures need `--device cuda` on a GPU machine."
    )
    text = [
        "# Loader throughput" + (" (GPU)" if args.device else ""),
        "",
        f"`python benchmarks/loader_throughput.py --images {args.images} --batch-size {args.batch_size}"
        + (f" --device {args.device}" if args.device else "")
        + f"` on {machine()}.",
        f"Train transform at {args.size} px (RandomResizedCrop + flip + normalise), batch {args.batch_size}, "
        f"{w} workers (threads for dataio, processes for torch), one epoch of {len(ds)} images after the first "
        f"batch, median of {args.repeats}. {gpu_line}",
        "",
        markdown_table(["loader", "images/s", "vs torch", "notes"], rows),
        "",
        f"Single-thread per-image rate of the same decode + augment + normalise: {single:,.0f} images/s "
        f"(the PIL/torchvision-style reference: {ref_single:,.0f} images/s).",
        f"Efficiency (each run over the single-thread rate measured right before and after it, median) = "
        f"**{efficiency:.2f}** (goal ≥ 0.9); "
        f"speed-up over torch's DataLoader **{ours / torch_rate:.2f}×** (goal ≥ 1.5).",
        f"The same per-image loop split over {w} bare threads (no reading, no queues, no batching) reaches "
        f"{thread_ceiling:.2f} of {w} × the single-thread rate: that is the ceiling the GIL-held part "
        f"of each image (header parse, crop geometry, RNG, torch dispatch) and the shared cores leave to threads; "
        f"the loader's reader and consumer threads, which the bare loop does not have, run on the same "
        f"{os.cpu_count()} cores. The same loop in {w} processes at once (no GIL shared) reaches "
        f"{proc_ceiling:.2f}. These ceilings are medians of {args.repeats} short runs on a shared VM whose speed "
        f"drifts by ±20 % within minutes, so only their size is firm: "
        + (
            f"on these {os.cpu_count()} vCPUs not even separate processes reach 0.9; "
            if proc_ceiling < 0.9
            else "separate processes reach 0.9, threads do not; "
        )
        + f"the loader delivers {efficiency / thread_ceiling:.0%} of what bare threads do. The GIL's share is "
        f"what a process mode (planned with the native shared-memory queues) would recover.",
        f"Autotuning from 1 decode thread / 1 read in flight / prefetch 2 reaches **{tuned_rate / ours:.2f}×** the "
        f"hand-set rate; its decisions: "
        + "; ".join(
            f"{d['knob']} {d['from']}→{d['to']} {d['rate_before']:,.0f}→{d['rate_after']:,.0f}/s "
            f"{'kept' if d['kept'] else 'reverted'}"
            for d in auto["decisions"]
            if "knob" in d
        )
        + ".",
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
