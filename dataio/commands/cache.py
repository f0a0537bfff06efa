"""``dataio cache stats|clear CACHE_DIR``: inspect or empty a node-local shard cache."""

from __future__ import annotations

import argparse
import json

NAME = "cache"
HELP = "show or clear a node-local shard cache directory (safe while training runs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("stats", "clear"), help="stats: what is cached; clear: remove what is unused")
    p.add_argument("cache_dir", metavar="CACHE_DIR", help="the cache directory given to open_dataset(cache_dir=…)")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from dataio.cache import clear_cache, inspect_cache
    from dataio.cache.admin import left_alone_at_top

    if args.action == "stats":
        usage = inspect_cache(args.cache_dir)
        if args.json:
            print(json.dumps([u.to_dict() for u in usage], indent=1))
            return 0
        print(f"cache {args.cache_dir}: {len(usage)} dataset(s), {_mb(sum(u.bytes for u in usage))}")
        for u in usage:
            print(f"  {u.key}")
            print(f"    root            {u.root}")
            print(f"    limit           {_mb(u.limit)} ({u.policy})")
            print(f"    shards          {u.shards} ({_mb(u.bytes)}), {u.in_use} in use")
            print(f"    downloading     {u.downloading} ({_mb(u.downloading_bytes)}), stale temp files {u.stale_temp}")
            print(f"    locks held      {u.download_locks_held} download, {u.in_use} shard pins")
            print(f"    live plans      {u.plans}")
            _print_left_alone(u.left_alone, "    ")
        _print_left_alone(tuple(left_alone_at_top(args.cache_dir)), "")
        return 0
    report = clear_cache(args.cache_dir)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    print(f"removed {report.removed} shard(s), {_mb(report.removed_bytes)}; {report.other_files} other file(s)")
    if report.kept_in_use:
        print(f"kept {len(report.kept_in_use)} shard(s) in use ({_mb(report.kept_bytes)}):")
        for name in report.kept_in_use:
            print(f"  {name}")
    if report.downloading:
        print(f"left {report.downloading} download(s) in progress")
    _print_left_alone(report.left_alone, "")
    return 0


def _print_left_alone(entries: tuple[str, ...], indent: str) -> None:
    """Entries the cache did not create (foreign names, symlinks, FIFOs): never followed, opened or deleted."""
    if entries:
        print(f"{indent}left alone {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} the cache did not create:")
        for e in entries:
            print(f"{indent}  {e}")
