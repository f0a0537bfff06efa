"""``dataio shuffle-stats DATASET``: shuffle quality and IO cost of each sampling mode."""

from __future__ import annotations

import argparse
import json

from dataio.commands._common import add_storage_options, storage_options
from dataio.units import SIZE_HELP, parse_size, positive_int, size_arg

NAME = "shuffle-stats"
HELP = "compare sampling modes: label diversity per batch, storage/read correlation and IO cost"

_MODES = ("sequential", "global", "block", "shard", "local")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="dataset directory or URL")
    p.add_argument(
        "--mode",
        action="append",
        choices=_MODES,
        help="mode to measure (repeatable; default: all, in the order sequential global block shard local)",
    )
    p.add_argument("--world-size", type=positive_int, default=8, help="number of ranks (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="per-rank batch size (default 256)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--epoch", type=int, default=0, help="epoch to measure (default 0)")
    p.add_argument("--drop-last", action="store_true", help="drop the tail instead of padding")
    p.add_argument("--block-size", type=positive_int, default=None, help="block mode: samples per block")
    p.add_argument("--window", type=positive_int, default=None, help="block mode: blocks per shuffle window")
    p.add_argument("--buffer-size", type=positive_int, default=None, help="shard mode: shuffle buffer slots")
    p.add_argument(
        "--cache-bytes",
        type=size_arg,
        default=None,
        help=f"IO model: cache capacity shared by the ranks (default: 5%% of the dataset; {SIZE_HELP})",
    )
    p.add_argument(
        "--chunk-bytes",
        type=size_arg,
        default=parse_size("1MiB"),
        help="IO model: storage read granularity, 0 for whole shards (default 1MiB)",
    )
    p.add_argument(
        "--io-samples",
        type=positive_int,
        default=1_000_000,
        help="IO model: simulate the first N reads of the epoch (default 1000000)",
    )
    p.add_argument("--format", choices=("table", "markdown", "json"), default="table", help="output format")
    add_storage_options(p)


def run(args: argparse.Namespace) -> int:
    from dataio.dataset import open_dataset
    from dataio.sampling import ShardLayout, ShuffleConfig, shuffle_stats
    from dataio.sampling.report import COLUMNS, render_stats

    dataset = open_dataset(args.dataset, storage_options(args))
    try:
        layout = ShardLayout(dataset.shard_sizes)
        labels = dataset.labels
        params = {"block_size": args.block_size, "window": args.window, "buffer_size": args.buffer_size}
        results = [
            shuffle_stats(
                layout,
                labels,
                ShuffleConfig(mode, args.seed, args.drop_last, params),
                world_size=args.world_size,
                batch_size=args.batch_size,
                epoch=args.epoch,
                shard_nbytes=dataset.shard_nbytes,
                cache_bytes=args.cache_bytes,
                chunk_bytes=args.chunk_bytes,
                io_samples=args.io_samples,
            )
            for mode in (args.mode or _MODES)
        ]
    finally:
        dataset.close()
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in results], indent=1))
        return 0
    first = results[0]
    print(
        f"{args.dataset}: {first.num_samples} samples, {layout.num_shards} shards; "
        f"world size {args.world_size}, batch {first.batch_size}/rank, epoch {args.epoch}"
    )
    print(render_stats(results, markdown=args.format == "markdown"))
    if args.format == "table":
        print()
        for header, meaning in COLUMNS:
            print(f"  {header:<17} {meaning}")
    return 0
