"""Command-line options of the harness (shared by ``python -m dataio.train`` and ``dataio train``)."""

from __future__ import annotations

import argparse

from dataio.train.config import DEFAULT_BUCKET_CANDIDATES, TrainConfig
from dataio.units import positive_int

__all__ = ["HELP", "add_arguments", "config_from_args", "main"]

HELP = "DDP training on a dataio dataset: allreduce strategy, compression, bucket tuning and a step-time split"


def _bucket(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size in MB or 'auto', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _sizes(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated sizes in MB, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Adds the harness options to ``p``."""
    p.add_argument("dataset", nargs="?", default=None, help="dataset path or URL (optional with --synthetic-data)")
    run = p.add_argument_group("run")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, default=None, help="optimizer steps in all")
    length.add_argument("--epochs", type=positive_int, default=None, help="full epochs (default 1)")
    run.add_argument("--batch-size", type=positive_int, default=32, help="images per rank per step (default 32)")
    run.add_argument("--image-size", type=positive_int, default=224, help="training crop side (default 224)")
    run.add_argument("--lr", type=float, default=0.1, help="SGD learning rate (default 0.1, momentum 0.9)")
    run.add_argument("--model", default="resnet", help="'resnet' (built in) or a torchvision model name")
    run.add_argument("--width", type=positive_int, default=32, help="built-in model: first-stage channels")
    run.add_argument("--workers", type=positive_int, default=2, help="loader threads per rank (default 2)")
    run.add_argument(
        "--shuffle-mode",
        default="block",
        choices=("global", "local", "shard", "block", "sequential"),
        help="sampler mode (default block)",
    )
    run.add_argument("--seed", type=int, default=0, help="seed of shuffling, augmentation and initialisation")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: CUDA if available")
    run.add_argument("--warmup-steps", type=int, default=2, help="steps left out of the timing (default 2)")
    run.add_argument("--synthetic-data", action="store_true", help="a fixed batch made on the device: no IO")
    run.add_argument(
        "--compare-synthetic",
        action="store_true",
        help="then time synthetic data too and report the efficiency (real ÷ synthetic images/s)",
    )
    run.add_argument("--classes", type=positive_int, default=1000, help="synthetic data without a dataset")
    run.add_argument("--json", dest="json_path", default=None, help="also write the report as JSON (rank 0)")
    comm = p.add_argument_group("gradient exchange")
    comm.add_argument(
        "--allreduce", default="hierarchical", choices=("flat", "hierarchical"), help="default hierarchical"
    )
    comm.add_argument(
        "--variant",
        default="auto",
        choices=("auto", "scatter", "leader"),
        help="hierarchical: reduce-scatter/all-gather, reduce/broadcast via node leaders, or measured (default)",
    )
    comm.add_argument("--compress", default="none", choices=("none", "fp16", "bf16"), help="transfer dtype")
    comm.add_argument(
        "--ranks-per-node", type=positive_int, default=None, help="emulate nodes of K ranks (default: real nodes)"
    )
    comm.add_argument("--bucket-mb", type=_bucket, default=25.0, help="DDP bucket size in MB, or 'auto' (default 25)")
    comm.add_argument(
        "--bucket-candidates",
        type=_sizes,
        default=DEFAULT_BUCKET_CANDIDATES,
        help="sizes --bucket-mb auto tries (default 1,4,16,64)",
    )
    comm.add_argument("--tune-steps", type=positive_int, default=3, help="timed steps per candidate (default 3)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The validated config of parsed arguments (ValueError on a bad combination)."""
    return TrainConfig(
        dataset=args.dataset,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        lr=args.lr,
        model=args.model,
        width=args.width,
        allreduce=args.allreduce,
        variant=args.variant,
        compress=None if args.compress == "none" else args.compress,
        ranks_per_node=args.ranks_per_node,
        bucket_mb=args.bucket_mb,
        bucket_candidates=args.bucket_candidates,
        tune_steps=args.tune_steps,
        shuffle_mode=args.shuffle_mode,
        workers=args.workers,
        synthetic_data=args.synthetic_data,
        compare_synthetic=args.compare_synthetic,
        classes=args.classes,
        warmup_steps=args.warmup_steps,
        seed=args.seed,
        device=args.device,
        json_path=args.json_path,
    )


def run(args: argparse.Namespace) -> int:
    """Trains with parsed arguments; returns the exit code."""
    from dataio.train.harness import train

    train(config_from_args(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m dataio.train`` / ``torchrun -m dataio.train``."""
    import sys

    from dataio.errors import DataioError

    p = argparse.ArgumentParser(prog="python -m dataio.train", description=HELP)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except (DataioError, ValueError, ImportError, FileNotFoundError) as exc:
        print(f"dataio.train: error: {exc}", file=sys.stderr)
        return 2
