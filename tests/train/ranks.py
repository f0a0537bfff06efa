"""Runs test code on real gloo process groups: ``world_size`` spawned processes on 127.0.0.1.

Starting ranks costs seconds (every process imports torch, and DDP imports torch._dynamo), so a test module
runs all its distributed checks in one spawn with :func:`run_checks` and each test asserts on its own check's
outcome.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import traceback
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = timedelta(seconds=90)  # a hang fails the test instead of blocking CI

Check = Callable[[int, int], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _init(rank: int, world_size: int, port: int, backend: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, rank=rank, world_size=world_size, timeout=TIMEOUT)


def _entry(rank: int, checks: Sequence[Check], world_size: int, port: int, out: str, backend: str) -> None:
    _init(rank, world_size, port, backend)
    errors: dict[str, str] = {}
    try:
        for check in checks:
            try:
                check(rank, world_size)
            except Exception:
                errors[check.__name__] = traceback.format_exc()
            dist.barrier()
    finally:
        Path(out, f"rank{rank}.json").write_text(json.dumps(errors))
        dist.destroy_process_group()


def run_checks(checks: Sequence[Check], world_size: int, backend: str = "gloo") -> dict[str, str]:
    """Runs every ``check(rank, world_size)`` in order on every rank of one process group.

    Returns:
        ``{check name: failure text}`` naming the failing ranks and their tracebacks ("" for a check that passed
        everywhere).
    """
    with tempfile.TemporaryDirectory(prefix="dataio-ranks-") as out:
        mp.spawn(_entry, args=(checks, world_size, free_port(), out, backend), nprocs=world_size, join=True)
        per_rank = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world_size)]
    return {
        check.__name__: "".join(
            f"rank {r}: {errs[check.__name__]}" for r, errs in enumerate(per_rank) if check.__name__ in errs
        )
        for check in checks
    }


def assert_passed(results: dict[str, str], check: Check) -> None:
    """Fails with the ranks' tracebacks if ``check`` failed anywhere."""
    failure = results[check.__name__]
    assert not failure, f"{check.__name__} failed:\n{failure}"


def _single(
    rank: int, fn: Callable[..., None], world_size: int, port: int, args: tuple[Any, ...], backend: str
) -> None:
    _init(rank, world_size, port, backend)
    try:
        fn(rank, world_size, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., None], world_size: int, *args: Any, backend: str = "gloo") -> None:
    """Runs ``fn(rank, world_size, *args)`` on every rank; an exception on any rank fails the caller."""
    mp.spawn(_single, args=(fn, world_size, free_port(), args, backend), nprocs=world_size, join=True)


def start_ranks(fn: Callable[..., None], world_size: int, *args: Any, backend: str = "gloo") -> mp.ProcessContext:
    """Starts ``fn(rank, world_size, *args)`` on every rank and returns at once: the caller acts while the ranks
    run (``args`` may hold ``mp.get_context("spawn")`` events) and then calls ``join()`` on the context, which
    raises if any rank failed."""
    return mp.spawn(_single, args=(fn, world_size, free_port(), args, backend), nprocs=world_size, join=False)
