"""The ``dataio`` command line: one sub-command per module in :mod:`dataio.commands`.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; they are
imported only when used, so ``dataio --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from dataio import __version__
from dataio.errors import DataioError

__all__ = ["COMMANDS", "main"]

#: command name -> module implementing it
COMMANDS = {
    "pack": "dataio.commands.pack",
    "info": "dataio.commands.info",
    "verify": "dataio.commands.verify",
    "synth": "dataio.commands.synth",
    "demo": "dataio.commands.demo",
    "shuffle-stats": "dataio.commands.shuffle_stats",
    "cache": "dataio.commands.cache",
    "train": "dataio.commands.train",
    "experiment": "dataio.commands.experiment",
}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataio", description="Remove the IO bottleneck from DL training.")
    parser.add_argument("--version", action="version", version=f"dataio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if command is not None and name != command:
            sub.add_parser(name, help=argparse.SUPPRESS if command else None)
            continue
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dataio`` console script; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in args_list if a in COMMANDS), None)
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    module = importlib.import_module(COMMANDS[args.command])
    try:
        return int(module.run(args) or 0)
    except (DataioError, FileNotFoundError, ValueError, ImportError) as exc:
        print(f"dataio {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dataio {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `dataio info … | head`: stop quietly, like other CLI tools
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
