"""``dataio synth``: write a synthetic ImageNet-like ImageFolder (and optionally an ILSVRC-style val set)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dataio.commands._common import positive_int

NAME = "synth"
HELP = "write a synthetic ImageNet-like ImageFolder of natural-photo JPEGs (for demos, tests and benchmarks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``synth`` options to ``p``."""
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--images", type=positive_int, required=True, help="number of training images")
    p.add_argument("--classes", type=positive_int, required=True, help="number of classes (<= --images)")
    p.add_argument("--seed", type=int, default=0, help="seed of class names and images (default: 0)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=min(8, os.cpu_count() or 1),
        help="processes (default: CPUs, max 8)",
    )
    p.add_argument("--quality", type=int, default=90, help="JPEG quality, each image ±2 (default: 90)")
    p.add_argument(
        "--val-images",
        type=positive_int,
        default=None,
        metavar="M",
        help="also write an ILSVRC-style val set of M images; train then goes to OUT/train/<wnid>/, val to "
        "OUT/val/ and the label files (LOC_val_solution.csv, ILSVRC2012_validation_ground_truth.txt, "
        "synsets.txt) to OUT",
    )
    p.add_argument("--progress", action="store_true", help="show a progress counter on stderr")


def run(args: argparse.Namespace) -> int:
    """Write the data set and print a one-line summary; returns the exit status."""
    from dataio.pack.synth import synth_imagefolder, synth_val

    opts = {"seed": args.seed, "workers": args.workers, "quality": args.quality, "progress": args.progress}
    train_root = args.out / "train" if args.val_images else args.out
    reports = [synth_imagefolder(train_root, args.images, args.classes, **opts)]
    if args.val_images:
        reports.append(synth_val(args.out, args.val_images, reports[0].classes, **opts))
    images = sum(r.images for r in reports)
    mb = sum(r.total_bytes for r in reports) / 1e6
    seconds = sum(r.seconds for r in reports)
    split = f" (train {reports[0].images}, val {reports[1].images})" if len(reports) > 1 else ""
    print(
        f"synth: {images} images{split}, {args.classes} classes, {mb:.1f} MB -> {args.out} "
        f"in {seconds:.1f}s ({images / max(seconds, 1e-9):.0f} images/s)"
    )
    return 0
