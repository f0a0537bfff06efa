"""``dataio train DATASET``: the DDP training harness (one process; under torchrun, every rank's process)."""

from __future__ import annotations

import argparse

from dataio.train.args import HELP, add_arguments

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "train"


def run(args: argparse.Namespace) -> int:
    from dataio.train.args import run as train_run

    return train_run(args)
