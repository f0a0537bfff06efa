"""``dataio info DATASET``."""

from __future__ import annotations

import argparse
import json

from dataio.commands._common import add_storage_options, storage_options

NAME = "info"
HELP = "show samples, shards, bytes, classes and per-class counts of a dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset directory or URL")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--top", type=int, default=10, help="how many per-class counts to list (default 10)")
    add_storage_options(p)


def run(args: argparse.Namespace) -> int:
    from dataio.inspection import dataset_info

    info = dataset_info(args.dataset, storage_options(args))
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    counts = info["class_counts"]
    print(f"dataset        {info['root']}")
    print(f"format version {info['format_version']}")
    print(f"samples        {info['samples']}")
    print(f"shards         {info['shards']}")
    print(f"bytes          {info['bytes']} ({info['bytes'] / 1e6:.1f} MB)")
    print(f"fields         {', '.join(f['name'] + ':' + f['type'] for f in info['schema'])}")
    print(f"classes        {info['classes']}")
    if counts:
        values = list(counts.values())
        print(f"per class      min {min(values)}, max {max(values)}, mean {sum(values) / len(values):.1f}")
        for name, count in list(counts.items())[: args.top]:
            print(f"  {name:<20} {count}")
        if len(counts) > args.top:
            print(f"  … {len(counts) - args.top} more (--top N or --json)")
    print(f"skipped files  {len(info['skipped'])}")
    for s in info["skipped"]:
        print(f"  {s['path']}: {s['reason']}")
    return 0
