"""Train-pipeline images/s at 224 px on ImageNet-shaped photo JPEGs, in one run, as ratios:

- dataio.DataLoader, native kernel (C threads, one GIL release per batch), num_workers = cores, fixed;
  the same with 1 … cores threads (the scaling table) and with 8 threads on these cores (no GIL fight);
- the same loader on its pure-Python decode path (ImagePipeline(native=False));
- the native loader autotuned from a poor start (1 thread, 1 read in flight, prefetch 2);
- dataio.DataLoader with ImagePipeline(backend="dali"), and DALI's own file-reader pipeline on the JPEG
  folder (fn.readers.file → decoders.image_random_crop → resize → crop_mirror_normalize), CPU decode here;
- torch.utils.data.DataLoader over the JPEG folder, transforms the torchvision way (PIL), worker processes.

Images: ``common.photo_set`` (400-500 × 250-470 px, ~60-110 KB of photo texture; ``dataio synth``'s smooth
~40 KB images flatter every decoder). Single-thread CPU per image is measured with ``time.process_time`` (the
kernel's thread included) for both decode paths on the same images. Efficiency = loader images/s ÷ (threads ×
the single-thread rate of the same decode + augment + normalise with no reading and no queues).

    python benchmarks/loader_throughput.py [--images 1500] [--classes 20] [--batch-size 64] [--device cuda]

Writes benchmarks/results/loader.md (loader_gpu.md with --device cuda, where the DALI rows decode on the GPU).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
import torch.utils.data as tud
from common import RESULTS, WORK, machine, markdown_table, photo_set
from dali_baselines import dali_folder_rate
from loader_parts import FolderDataset, single_thread_cpu, single_thread_rate, timed_epoch

import dataio
from dataio.loaders import native
from dataio.loaders.dali.pipeline import dali_available
from dataio.pack import PackOptions, pack


def loader_rate(ds, pipe, args, rep: int, workers: int, **kw) -> tuple[float, dict]:
    loader = dataio.DataLoader(
        ds, batch_size=args.batch_size, shuffle=True, pipeline=pipe, seed=rep, device=args.device,
        num_workers=workers, prefetch_factor=4, **kw,
    )
    dt, n = timed_epoch(loader, None)
    stats = loader.stats()
    loader.runtime.close()
    return n / dt, stats


def autotuned(ds, pipe, args) -> tuple[float, dict]:
    """Epochs of a loader started with poor settings until its tuner has converged; the last epoch's rate."""
    ds.reader.set_threads(1)
    loader = dataio.DataLoader(ds, batch_size=args.batch_size, shuffle=True, pipeline=pipe, seed=0,
                               device=args.device, num_workers=1, prefetch_factor=2)
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
    loader.runtime.close()
    ds.reader.set_threads(ds.threads or ds.store.default_threads)
    return rate, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--device", default=None, help="cuda: batches delivered on the GPU (dataio's side-stream copy)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tune-epochs", type=int, default=30)
    ap.add_argument("--result", default=None, help="file name under benchmarks/results/ (default: loader.md, "
                    "loader_gpu.md with --device cuda)")
    args = ap.parse_args()
    native.require()  # this benchmark is about the native kernel

    src = photo_set(args.images, args.classes)
    packed = WORK / f"packed-photos-{args.images}-{args.classes}"
    if not (packed / "manifest.json").exists():
        pack(src, packed, PackOptions(shard_size=32 * 10**6, workers=2))
    ds = dataio.open_dataset(packed)
    fast = dataio.ImagePipeline(train=True, size=args.size, backend="cpu", native=True)
    slow = dataio.ImagePipeline(train=True, size=args.size, backend="cpu", native=False)
    dali = dataio.ImagePipeline(train=True, size=args.size, backend="dali") if dali_available() else None
    w, cores = args.workers, os.cpu_count() or 1
    torch.set_num_threads(1)  # each loader thread does its own work; no nested intra-op pools

    rates: dict[str, list[float]] = {}
    verdicts: dict[str, str] = {}
    singles: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    for rep in range(args.repeats):
        for name, pipe in (("native", fast), ("python", slow)):
            cpu.setdefault(name, []).append(single_thread_cpu(ds, pipe, seed=rep))
            single = single_thread_rate(ds, pipe, seed=rep)
            rate, stats = loader_rate(ds, pipe, args, rep, w, autotune=False)
            single = (single + single_thread_rate(ds, pipe, seed=rep + 100)) / 2  # bracket the loader's run
            singles.setdefault(name, []).append(single)
            rates.setdefault(name, []).append(rate)
            verdicts[name] = stats["verdict"].split(":")[0]
        for threads in sorted({*range(1, cores + 1), 8}):
            rate, _ = loader_rate(ds, fast, args, rep, threads, autotune=False)
            rates.setdefault(f"native-{threads}", []).append(rate)
        if dali is not None:
            rate, stats = loader_rate(ds, dali, args, rep, w)
            rates.setdefault("dali", []).append(rate)
            verdicts["dali"] = f"{stats['backend']}, {stats['verdict'].split(':')[0]}"
            rates.setdefault("dali-folder", []).append(dali_folder_rate(src, args, w))
        theirs = tud.DataLoader(
            FolderDataset(src, args.size), batch_size=args.batch_size, shuffle=True, num_workers=w,
            pin_memory=args.device == "cuda", prefetch_factor=4,
            multiprocessing_context="spawn",  # forking a process that ran DALI's thread pools crashes the children
        )
        dt, n = timed_epoch(theirs, args.device)
        rates.setdefault("torch", []).append(n / dt)
    tuned_rate, tuned = autotuned(ds, fast, args)
    med = {k: float(np.median(v)) for k, v in rates.items()}
    single = {k: float(np.median(v)) for k, v in singles.items()}
    cpu_ms = {k: 1e3 * float(np.median(v)) for k, v in cpu.items()}
    torch_rate, ours = med["torch"], med["native"]
    eff = ours / (w * single["native"])
    auto = tuned["autotune"]
    knobs = ", ".join(f"{k} {v}" for k, v in auto["knobs"].items())
    trials = sum(1 for d in auto["decisions"] if "knob" in d)
    gpu = args.device == "cuda"

    def row(name: str, rate: float, note: str) -> list[str]:
        return [name, f"{rate:,.0f}", f"{rate / torch_rate:.2f}×", note]

    rows = [
        row("dataio.DataLoader, native kernel", ours, f"{w} kernel threads, fixed; {verdicts['native']}"),
        row("dataio.DataLoader, native kernel, 8 threads", med["native-8"],
            f"{med['native-8'] / med[f'native-{w}']:.2f}× the {w}-thread rate on {cores} cores"),
        row("dataio.DataLoader, native kernel, autotuned from 1 thread", tuned_rate,
            f"tuner: {knobs} after {trials} trials ({auto['phase']})"),
        row("dataio.DataLoader, Python decode path (native=False)", med["python"],
            f"{w} decode threads, fixed; {verdicts['python']}"),
    ]
    if dali is not None:
        where = "GPU" if gpu else "CPU"
        rows.append(row(f"dataio.DataLoader, backend='dali' ({where} decode)", med["dali"], f"DALI {w} threads; "
                        f"{verdicts['dali']}"))
        rows.append(row(f"DALI fn.readers.file on the JPEG folder ({where} decode)", med["dali-folder"],
                        "DALI's own reader + image_random_crop"))
    rows.append(row("torch DataLoader (processes, JPEG folder, PIL transforms)", torch_rate, f"{w} processes"))
    scaling = [
        [str(t), f"{med[f'native-{t}']:,.0f}", f"{med[f'native-{t}'] / (min(t, cores) * single['native']):.2f}"]
        for t in sorted({*range(1, cores + 1), 8})
    ]
    vs_dali = med["native"] / med["dali-folder"] if "dali-folder" in med else float("nan")
    goals = [
        ["native vs Python path, single-thread CPU per image", f"{cpu_ms['native'] / cpu_ms['python']:.2f}×",
         "≤ 0.6×", f"{cpu_ms['native']:.2f} vs {cpu_ms['python']:.2f} ms"],
        [f"native loader vs DALI's own CPU file-reader pipeline, {w} threads", f"{vs_dali:.2f}×", "≥ 1.2×", ""],
        [f"native loader vs torch's DataLoader, {w} workers", f"{ours / torch_rate:.2f}×", "≥ 2.0×", ""],
        ["efficiency (loader ÷ threads × single-thread rate)", f"{eff:.2f}", "≥ 0.9",
         f"single-thread {single['native']:,.0f} images/s"],
        [f"8 threads vs {w} threads on {cores} cores", f"{med['native-8'] / med[f'native-{w}']:.2f}×", "≥ 0.9×", ""],
    ]
    text = [
        "# Loader throughput" + (" (GPU)" if args.device else ""),
        "",
        f"`python benchmarks/loader_throughput.py --images {args.images} --batch-size {args.batch_size}"
        + (f" --device {args.device}" if args.device else "") + f"` on {machine()}.",
        f"Train transform at {args.size} px (RandomResizedCrop + flip + normalise), batch {args.batch_size}, "
        f"{w} workers (kernel threads for dataio, processes for torch), one epoch of {len(ds)} ImageNet-shaped photo "
        f"JPEGs (400-500 × 250-470 px, ~60-110 KB) after the first batch, median of {args.repeats}. "
        + (f"GPU: {torch.cuda.get_device_name()}." if gpu else "No GPU: the DALI rows decode on DALI's CPU threads."),
        "",
        markdown_table(["loader", "images/s", "vs torch", "notes"], rows),
        "",
        "## Goals (issue 11)",
        "",
        markdown_table(["measure", "result", "goal", "detail"], goals),
        "",
        "## Scaling of the native loader",
        "",
        markdown_table(["kernel threads", "images/s", "efficiency (÷ min(threads, cores) × single)"], scaling),
        "",
        f"Single-thread rates with no reading or queues: native {single['native']:,.0f} images/s, Python path "
        f"{single['python']:,.0f} images/s. Python path loader: {med['python'] / (w * single['python']):.2f} "
        f"efficiency.",
        "",
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / (args.result or ("loader_gpu.md" if args.device else "loader.md"))).write_text("\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
