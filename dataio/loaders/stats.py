"""Per-stage counters of the fast pipeline and the one-line verdict of where time goes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PipelineStats", "StageStats"]


@dataclass
class StageStats:
    """Work done by one stage: items, bytes, seconds its threads were busy, and how many threads.

    The thread count may change at run time (the autotuner); busy % is busy time over the thread-seconds the
    stage has had, integrated across those changes.
    """

    name: str
    threads: int = 1
    items: int = 0
    bytes: int = 0
    busy: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread_s: float = field(default=0.0, repr=False)
    _since: float = field(default_factory=time.perf_counter, repr=False)

    def set_threads(self, threads: int) -> None:
        """The stage now runs ``threads`` threads (a no-op when unchanged)."""
        if threads == self.threads:
            return
        with self._lock:
            now = time.perf_counter()
            self._thread_s += (now - self._since) * self.threads
            self._since, self.threads = now, threads

    def add(self, items: int, nbytes: int, seconds: float) -> None:
        with self._lock:
            self.items += items
            self.bytes += nbytes
            self.busy += seconds

    def summary(self, wall: float) -> dict[str, Any]:
        with self._lock:
            items, nbytes, busy, threads = self.items, self.bytes, self.busy, self.threads
            thread_s = self._thread_s + (time.perf_counter() - self._since) * threads
        wall = max(wall, 1e-9)
        return {
            "items": items,
            "items_per_s": items / wall,
            "bytes": nbytes,
            "threads": threads,
            "busy_pct": 100.0 * busy / max(thread_s, 1e-9),
        }


class PipelineStats:
    """Stats of one loader across iterations: stages, queue occupancy samples and consumer wait time."""

    def __init__(self, stages: list[tuple[str, int]]) -> None:
        self.stages = {name: StageStats(name, threads) for name, threads in stages}
        self.start = time.perf_counter()
        self.consumer_wait = 0.0
        self.batches = 0
        self.skipped = 0
        self.queue_samples: dict[str, list[float]] = {}
        self.extra: dict[str, Any] = {}
        self.autotune: Callable[[], dict[str, Any]] | None = None  # the tuner's report, when there is one
        self._lock = threading.Lock()

    def add_skipped(self, n: int) -> None:
        """``n`` more samples left out (``on_error="skip"``); safe from several threads."""
        if n:
            with self._lock:
                self.skipped += n

    def sample_queue(self, name: str, size: int, capacity: int) -> None:
        samples = self.queue_samples.setdefault(name, [])
        if len(samples) < 100_000:
            samples.append(size / max(1, capacity))

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.start
        stages = {name: s.summary(wall) for name, s in self.stages.items()}
        out: dict[str, Any] = {
            "wall_s": wall,
            "batches": self.batches,
            "consumer_wait_s": self.consumer_wait,
            "consumer_wait_pct": 100.0 * self.consumer_wait / max(wall, 1e-9),
            "skipped": self.skipped,
            "stages": stages,
            "queues": {k: sum(v) / len(v) for k, v in self.queue_samples.items() if v},
            **self.extra,
        }
        if self.autotune is not None:
            out["autotune"] = self.autotune()
        out["verdict"] = verdict(out)
        return out


#: An IO-bound loader whose storage client uses at least this share of the process's CPU is client-bound.
CLIENT_BOUND_SHARE = 0.5


def verdict(summary: dict[str, Any]) -> str:
    """``consumer-bound`` when the training loop rarely waits; otherwise the busiest stage's bottleneck, and for
    IO whether the storage client's CPU is the limit (``client-bound``) or the store and the reads in flight."""
    if summary["consumer_wait_pct"] < 5.0:
        return "consumer-bound: batches are ready before the training loop asks (the data path is not the limit)"
    stages = summary["stages"]
    read = stages.get("read", {}).get("busy_pct", 0.0)
    decode = stages.get("decode", {}).get("busy_pct", 0.0)
    if decode >= read:
        return f"decode-bound: decode threads {decode:.0f}% busy (add threads/cores, or decode on the GPU)"
    io = summary.get("io") or {}
    flight = ""
    if "in_flight_mean" in io:
        flight = f", {io['in_flight_mean']:.1f} reads in flight on average (of {io['threads']})"
    share = io.get("client_cpu_share", 0.0)
    if share >= CLIENT_BOUND_SHARE:
        return (
            f"client-bound: the storage client ({io.get('client', '?')}) used {100 * share:.0f}% of this process's "
            f"CPU{flight} (a client with less CPU per request: obstore, pip install 'dataio[s3]'; or a node cache)"
        )
    return f"io-bound: read threads {read:.0f}% busy{flight} (more reads in flight, a node cache, or a faster store)"
