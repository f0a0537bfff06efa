"""``dataio verify DATASET``."""

from __future__ import annotations

import argparse
import sys

from dataio.commands._common import add_storage_options, storage_options

NAME = "verify"
HELP = "check every checksum and the manifest/shard/index consistency; non-zero exit on any problem"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset directory or URL")
    p.add_argument("--threads", type=int, default=2, help="shards checked in parallel")
    add_storage_options(p)


def run(args: argparse.Namespace) -> int:
    from dataio.inspection import verify_dataset

    report = verify_dataset(args.dataset, storage_options(args), threads=args.threads)
    for line in report.problems:
        print(line, file=sys.stderr)
    status = "OK" if report.ok else f"FAILED: {len(report.problems)} problems"
    print(f"verified {report.shards} shards, {report.samples} samples, {report.bytes / 1e6:.1f} MB: {status}")
    return 0 if report.ok else 1
