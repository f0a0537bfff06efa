"""``dataio experiment shuffle``: what each shuffle mode costs in accuracy and in IO, with real DDP on real data."""

from __future__ import annotations

import argparse

from dataio.commands._common import positive_int

NAME = "experiment"
HELP = "experiments: 'shuffle' trains with every shuffle mode and world size (DDP, gloo) and reports accuracy and IO"


def _csv(kind: type) -> object:
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a comma-separated list of {kind.__name__}: {text!r}") from None

    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    s = sub.add_parser("shuffle", help="global vs local (and shard, block, sequential) shuffle: accuracy and IO")
    s.add_argument("--out", default="shuffle-experiment", help="working directory: data, runs, caches, results.json")
    s.add_argument("--report", default=None, help="markdown report path (default OUT/report.md); PNGs beside it")
    s.add_argument("--quick", action="store_true", help="a tiny grid (2 modes, K 1 and 2, 2 epochs) for a smoke test")
    s.add_argument("--datasets", type=_csv(str), default=None, help="digits,mnist5k (default digits)")
    s.add_argument("--orders", type=_csv(str), default=None, help="pack orders: sorted,shuffled (default both)")
    s.add_argument("--modes", type=_csv(str), default=None, help="global,local,shard,block,sequential (default all)")
    s.add_argument("--world-sizes", type=_csv(int), default=None, help="DDP ranks per run (default 1,2,4,8)")
    s.add_argument("--seeds", type=_csv(int), default=None, help="seeds (default 0,1,2)")
    s.add_argument("--cache-seeds", type=_csv(int), default=None, help="seeds whose runs read through the cache")
    s.add_argument("--epochs", type=positive_int, default=None, help="epochs per run (default 6)")
    s.add_argument("--global-batch", type=positive_int, default=None, help="samples per step over all ranks")
    s.add_argument("--model", choices=("cnn", "linear"), default=None, help="classifier (default cnn)")
    s.add_argument("--lr", type=float, default=None, help="SGD learning rate (default 0.05)")
    s.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    s.add_argument("--weight-decay", type=float, default=None, help="SGD weight decay λ (default 0)")
    s.add_argument("--shard-size", type=positive_int, default=None, help="pack shard size in bytes")
    s.add_argument("--max-per-class", type=positive_int, default=None, help="use at most N images per class")
    s.add_argument("--cache-fraction", type=float, default=None, help="cache limit / dataset bytes (default 0.3)")
    s.add_argument("--report-only", action="store_true",
                   help="run nothing: write the report from the runs of this grid finished so far in OUT")  # fmt: skip
    s.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dataio.experiments.config import ShuffleExperimentConfig
    from dataio.experiments.report import write_report
    from dataio.experiments.runner import collect_results, run_shuffle_experiment

    out = Path(args.out)
    report = Path(args.report) if args.report else out / "report.md"
    overrides = {
        "datasets": args.datasets, "orders": args.orders, "modes": args.modes, "world_sizes": args.world_sizes,
        "seeds": args.seeds, "cache_seeds": args.cache_seeds, "epochs": args.epochs,
        "global_batch": args.global_batch, "lr": args.lr, "shard_size": args.shard_size,
        "cache_fraction": args.cache_fraction, "max_per_class": args.max_per_class, "model": args.model,
        "momentum": args.momentum, "weight_decay": args.weight_decay,
    }  # fmt: skip
    overrides = {k: v for k, v in overrides.items() if v is not None}
    config = ShuffleExperimentConfig.quick(**overrides) if args.quick else ShuffleExperimentConfig(**overrides)
    if args.report_only:
        results = collect_results(config, out)
        if not results["runs"]:
            raise FileNotFoundError(f"{out}: no finished run of this grid; run it without --report-only first")
    else:
        results = run_shuffle_experiment(config, out, progress=not args.no_progress)
    write_report(results, report)
    print(f"report: {report}")
    return 0
