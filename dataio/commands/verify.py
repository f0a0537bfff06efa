"""``dataio verify DATASET``."""

from __future__ import annotations

import argparse
import sys

from dataio.commands._common import add_storage_options, storage_options

NAME = "verify"
HELP = (
    "check every checksum, the manifest against every shard and the Parquet index against the shards, and that "
    "every sample decodes; non-zero exit on any problem (docs/format.md: what verify guarantees)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset directory or URL")
    p.add_argument("--threads", type=int, default=2, help="shards checked in parallel")
    add_storage_options(p)


def run(args: argparse.Namespace) -> int:
    from dataio.inspection import verify_dataset

    report = verify_dataset(args.dataset, storage_options(args), threads=args.threads)
    for line in report.problems:
        print(line, file=sys.stderr)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    status = "OK" if report.ok else f"FAILED: {len(report.problems)} problems"
    print(f"verified {report.shards} shards, {report.samples} samples, {report.bytes / 1e6:.1f} MB: {status}")
    return 0 if report.ok else 1
