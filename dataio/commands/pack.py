"""``dataio pack SOURCE OUTPUT``."""

from __future__ import annotations

import argparse

from dataio.commands._common import add_storage_options, storage_options
from dataio.units import SIZE_HELP

NAME = "pack"
HELP = "pack an image folder, ILSVRC tar archive or file list into checksummed shards"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="image folder, .tar archive (flat or of per-class tars), or .csv/.parquet list")
    p.add_argument("output", help="dataset directory or URL (s3://, oss://, …)")
    p.add_argument("--shard-size", default="256MB", help=f"target shard size: 8MB, 256MB, 1GiB or bytes ({SIZE_HELP})")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (output bytes do not depend on it)")
    p.add_argument("--order", choices=("sorted", "shuffled"), default="sorted")
    p.add_argument("--seed", type=int, default=0, help="seed of --order shuffled")
    p.add_argument("--max-size", type=int, default=None, metavar="PX", help="re-encode: shrink the long side to PX")
    p.add_argument("--quality", type=int, default=None, metavar="Q", help="re-encode: JPEG quality")
    p.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="unreadable images and non-UTF-8 file names: fail, or skip naming each",
    )
    p.add_argument("--labels", default=None, help="labels of a flat val set: devkit ground truth txt or CSV")
    p.add_argument("--synsets", default=None, help="ILSVRC id -> wnid mapping (devkit meta.mat or text)")
    p.add_argument("--classes-from", default=None, metavar="TRAIN_DATASET", help="use this dataset's class indices")
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="read symlinked files and folders of SOURCE (default: refuse them); FIFOs and devices are always refused",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing, different dataset at OUTPUT, and pack into an OUTPUT holding files pack did not "
        "create (refused otherwise; pack never deletes them)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--retry-budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long one request to a URL output retries transient failures (default 120)",
    )
    add_storage_options(p)


def run(args: argparse.Namespace) -> int:
    from dataio.pack import PackOptions, pack, parse_size
    from dataio.storage import RetryPolicy

    options = PackOptions(
        shard_size=parse_size(args.shard_size),
        order=args.order,
        seed=args.seed,
        max_size=args.max_size,
        quality=args.quality,
        on_error=args.on_error,
        workers=args.workers,
        follow_symlinks=args.follow_symlinks,
    )
    classes = None
    if args.classes_from:
        from dataio.manifest_file import load_manifest
        from dataio.storage import open_store

        classes = load_manifest(open_store(args.classes_from, storage_options(args))).classes
        if classes is None:
            raise ValueError(f"{args.classes_from}: that dataset records no classes")
    report = pack(
        args.source,
        args.output,
        options,
        labels=args.labels,
        synsets=args.synsets,
        classes=classes,
        storage_options=storage_options(args),
        overwrite=args.overwrite,
        progress=not args.no_progress,
        retry=RetryPolicy(budget=args.retry_budget) if args.retry_budget is not None else None,
    )
    rate = report.num_samples / max(report.seconds, 1e-9)
    print(
        f"packed {report.num_samples} samples into {report.num_shards} shards ({report.bytes / 1e6:.1f} MB) "
        f"at {report.output} in {report.seconds:.1f} s: {rate:.0f} samples/s, "
        f"{report.source_bytes / 1e6 / max(report.seconds, 1e-9):.1f} MB/s "
        f"({report.written_shards} written, {report.reused_shards} reused)"
    )
    from dataio.pack.sources import printable

    for path, why in report.skipped:
        print(f"skipped {printable(path)}: {why}")  # a path under a non-UTF-8 folder name is printable too
    return 0
