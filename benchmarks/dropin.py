"""Swapping the import: a torchvision-style training input pipeline under torch's DataLoader and dataio's.

The dataset is what an existing script has: an ImageFolder of JPEGs (``dataio synth``), each sample opened
with PIL, RandomResizedCrop + flip + ToTensor + Normalize (the PIL reference transforms; torchvision itself is
not needed). The same loader arguments go to

- ``torch.utils.data.DataLoader``;
- ``dataio.DataLoader`` (default ``worker_mode="process"``: torch's worker processes, so the same speed);
- ``dataio.DataLoader(worker_mode="thread")`` (GIL-bound ``__getitem__``: expected slower on many cores).

One epoch each, in the order torch, process, thread, then torch again (the two torch runs show the machine's
drift), after a warm-up read of every file (page cache). Worker start-up is included: it is what a script pays.

    python benchmarks/dropin.py [--images 512] [--workers 2] [--batch-size 32] [--size 112]

Writes benchmarks/results/dropin.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import torch.utils.data as tud
from common import RESULTS, machine, markdown_table, synth_set
from loader_parts import FolderDataset as JpegFolder  # ImageFolder + PIL train transforms, the usual way

import dataio


def epoch_rate(loader: tud.DataLoader) -> float:
    t = time.perf_counter()
    n = sum(len(labels) for _, labels in loader)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=112)
    args = ap.parse_args()

    root = synth_set(args.images, args.classes)
    ds = JpegFolder(root, args.size)
    for path, _ in ds.items:  # page cache warm for every run alike
        path.read_bytes()
    kw = {"batch_size": args.batch_size, "shuffle": True, "num_workers": args.workers, "drop_last": False}

    def seeded() -> torch.Generator:
        return torch.Generator().manual_seed(0)

    runs = [
        ("torch.utils.data.DataLoader", lambda: tud.DataLoader(ds, generator=seeded(), **kw)),
        ("dataio.DataLoader (process, default)", lambda: dataio.DataLoader(ds, generator=seeded(), **kw)),
        ('dataio.DataLoader(worker_mode="thread")',
         lambda: dataio.DataLoader(ds, worker_mode="thread", generator=seeded(), **kw)),
        ("torch.utils.data.DataLoader (again)", lambda: tud.DataLoader(ds, generator=seeded(), **kw)),
    ]  # fmt: skip
    load = os.getloadavg()[0]
    rates = []
    for name, make in runs:
        rate = epoch_rate(make())
        rates.append((name, rate))
        print(f"{name:45s} {rate:8.1f} images/s", flush=True)
    torch_rate = (rates[0][1] + rates[3][1]) / 2
    rows = [[name, f"{rate:.1f}", f"{rate / torch_rate:.2f}"] for name, rate in rates]
    text = "\n".join([
        "# Drop-in: the same script under torch's DataLoader and dataio's",
        "",
        f"`python benchmarks/dropin.py --images {args.images} --workers {args.workers} --batch-size "
        f"{args.batch_size} --size {args.size}` on {machine()}; one epoch per row (worker start-up included), "
        f"PIL decode + RandomResizedCrop({args.size}) + flip + ToTensor + Normalize per sample, page cache warm.",
        f"Ratio: over the mean of the two torch rows. Load average at the start: {load:.1f}, niceness "
        f"{os.nice(0)} (a machine shared with other jobs: differences within the spread of the two torch rows "
        "are noise). Process mode runs torch's own worker processes, so its expected ratio is 1; threads share a GIL.",
        "",
        markdown_table(["loader", "images/s", "ratio to torch"], rows),
        "",
    ])  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dropin.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
