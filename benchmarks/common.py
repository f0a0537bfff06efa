"""Helpers shared by the benchmark scripts (not a test module): synth sets, cache dropping, tables."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WORK = Path(__file__).resolve().parent / "work"


def synth_set(images: int, classes: int, workers: int = 2) -> Path:
    """A cached ``dataio synth`` ImageFolder under benchmarks/work/."""
    from dataio.pack.synth import synth_imagefolder

    out = WORK / f"synth-{images}-{classes}"
    marker = out / ".complete"
    if not marker.exists():
        synth_imagefolder(out, images, classes, seed=0, workers=workers)
        marker.write_text("ok")
    return out


def drop_cache(paths: Iterable[Path]) -> None:
    """Evicts files from the page cache (POSIX_FADV_DONTNEED; works without root) so reads hit the disk."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def median_time(fn: Callable[[], object], repeats: int, before: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)
