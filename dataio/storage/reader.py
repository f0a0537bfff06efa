"""RangeReader: many ranged reads in flight, near ranges coalesced, results in request order.

Remote stores answer each request after tens of milliseconds; one request at a time, a GPU server starves.
The reader pulls requests lazily from an iterable (the sampler's order), keeps a window of upcoming requests
(the read-ahead), merges requests whose ranges in the same object are at most ``coalesce_gap`` apart into
one fetch, runs up to ``threads`` fetches at once, and hands each result back as soon as it — and every
request before it — has arrived. Memory stays bounded by the window.

Stores whose client runs requests concurrently itself (``store.batch_reads > 1``: obstore) get the fetches of
one object in groups, one call per group: the requests in flight stay ``threads``, the Python threads and calls
needed for them shrink by up to ``batch_reads``×.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from dataio._forksafe import on_fork_child
from dataio.errors import ClosedError
from dataio.storage.base import Store
from dataio.storage.client_cpu import client_threads_cpu, process_cpu

__all__ = ["RangeReader", "Request", "coalesce"]

Request = tuple[str, int, int]  # (path, offset, length)


@dataclass(frozen=True)
class _Fetch:
    """One read covering one or more requests: ``parts`` are (request number, offset in the fetch, length)."""

    path: str
    offset: int
    length: int
    parts: tuple[tuple[int, int, int], ...]


def coalesce(requests: list[tuple[int, Request]], gap: int, max_bytes: int) -> list[_Fetch]:
    """Groups numbered requests into fetches: same path, sorted by offset, holes of at most ``gap`` bytes,
    at most ``max_bytes`` per fetch (a larger single request is a fetch of its own). Pure function."""
    fetches: list[_Fetch] = []
    ordered = sorted(requests, key=lambda r: (r[1][0], r[1][1]))
    group: list[tuple[int, Request]] = []
    end = 0
    for num, req in ordered:
        path, off, length = req
        if (
            group
            and path == group[0][1][0]
            and off - end <= gap
            and max(end, off + length) - group[0][1][1] <= max_bytes
        ):
            group.append((num, req))
            end = max(end, off + length)
            continue
        if group:
            fetches.append(_make_fetch(group, end))
        group, end = [(num, req)], off + length
    if group:
        fetches.append(_make_fetch(group, end))
    return fetches


def _make_fetch(group: list[tuple[int, Request]], end: int) -> _Fetch:
    start = group[0][1][1]
    parts = tuple((num, off - start, length) for num, (_, off, length) in group)
    return _Fetch(group[0][1][0], start, end - start, parts)


class RangeReader:
    """Concurrent, coalescing, order-preserving reads of byte ranges from one :class:`Store`.

    Args:
        store: Where the objects live; its ``read_range`` must be thread-safe (all dataio stores are) and
            does its own retries.
        threads: Fetches in flight (default: the store's ``default_threads``: 8 for POSIX, 32 for URLs).
        coalesce_gap: Merge two requests of one object whose ranges are at most this many bytes apart
            (0 = only adjacent or overlapping ranges; negative = never merge).
        max_fetch: Largest coalesced fetch in bytes.
        window: Requests looked at ahead of the consumer (default ``4 × threads``).
        max_threads: Upper bound for :meth:`set_threads` (default ``4 × threads``, at most 256); pool threads
            are started on demand, so a high bound costs nothing until it is used.
        guard: Entered around every read of the store (``ShardDataset`` passes its
            :meth:`~dataio.gate.ReadGate.reading`, so that closing the dataset waits for the reads in flight and
            refuses later ones); its error is raised by a read the reader's ``close()`` cancelled.
    """

    def __init__(
        self,
        store: Store,
        *,
        threads: int | None = None,
        coalesce_gap: int = 64 * 1024,
        max_fetch: int = 8 * 1024 * 1024,
        window: int | None = None,
        max_threads: int | None = None,
        guard: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.store = store
        self._guard = guard
        self.threads = int(threads or store.default_threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.max_threads = int(max_threads or max(self.threads, min(256, 4 * self.threads)))
        if self.max_threads < self.threads:
            raise ValueError(f"max_threads ({max_threads}) must be >= threads ({self.threads})")
        self.coalesce_gap = coalesce_gap
        self.max_fetch = max_fetch
        self._fixed_window = window is not None
        self.window = int(window or 4 * self.threads)
        self._start_process_state()
        on_fork_child(self)

    def _start_process_state(self) -> None:
        """The pool, locks and counters of this process (see :meth:`_after_fork_in_child`)."""
        self._pool = ThreadPoolExecutor(self.max_threads, thread_name_prefix="dataio-read")
        self._slots = threading.Condition()
        self._active = 0  # fetches running now (at most self.threads)
        self._finalizer = weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
        self._lock = threading.Lock()
        self._stats = {"requests": 0, "fetches": 0, "bytes": 0}
        self._caller_cpu = 0.0  # CPU seconds of the threads that called the store (inside the calls)
        self._flight_area = 0.0  # integral of requests in flight over time
        self._flight_busy = 0.0  # seconds with at least one request in flight
        self._flight_since = time.perf_counter()
        self._cpu_base = (process_cpu(), client_threads_cpu())

    def _after_fork_in_child(self) -> None:
        """In a forked child: the inherited pool has no threads and its locks may be held forever; leave it
        untouched (never shut down) and start afresh. A closed reader stays closed."""
        closed = not self._finalizer.alive
        self._finalizer.detach()
        self._start_process_state()
        if closed:
            self.close()

    def read(self, path: str, offset: int, length: int) -> bytes:
        """Reads one range (on the calling thread)."""
        with self._guard():
            data = self.store.read_range(path, offset, length)
        self._count(1, 1, len(data))
        return data

    def _count(self, requests: int, fetches: int, nbytes: int) -> None:
        with self._lock:
            self._stats["requests"] += requests
            self._stats["fetches"] += fetches
            self._stats["bytes"] += nbytes

    def set_threads(self, threads: int) -> None:
        """Changes the number of fetches in flight, effective at once (the autotuner's IO knob).

        Raises:
            ValueError: ``threads`` outside ``1..max_threads``.
        """
        threads = int(threads)
        if not 1 <= threads <= self.max_threads:
            raise ValueError(f"threads must be in 1..{self.max_threads}, got {threads}")
        with self._slots:
            self.threads = threads
            if not self._fixed_window:
                self.window = 4 * threads
            self._slots.notify_all()

    def _in_flight(self, delta: int) -> None:
        """Changes the requests in flight by ``delta``; caller holds ``self._slots``."""
        now = time.perf_counter()
        if self._active:
            self._flight_area += self._active * (now - self._flight_since)
            self._flight_busy += now - self._flight_since
        self._flight_since = now
        self._active += delta

    def _fetch_group(self, fetches: list[_Fetch]) -> dict[int, bytes]:
        """Runs fetches of one object: one store call (``read_ranges`` when there are several)."""
        n = len(fetches)
        with self._slots:  # pool threads beyond the current limit wait here
            while self._active and self._active + min(n, self.threads) > self.threads:
                self._slots.wait()
            self._in_flight(n)
        cpu = time.thread_time()
        try:
            with self._guard():
                if n == 1:
                    datas = [self.store.read_range(fetches[0].path, fetches[0].offset, fetches[0].length)]
                else:
                    datas = self.store.read_ranges(fetches[0].path, [(f.offset, f.length) for f in fetches])
        finally:
            cpu = time.thread_time() - cpu
            with self._slots:
                self._in_flight(-n)
                self._caller_cpu += cpu
                self._slots.notify(n)  # as many waiters as slots freed (not all: hundreds may wait)
        out: dict[int, bytes] = {}
        for fetch, data in zip(fetches, datas, strict=True):
            self._count(len(fetch.parts), 1, len(data))
            if len(fetch.parts) == 1:
                out[fetch.parts[0][0]] = data
                continue
            view = memoryview(data)
            out.update((num, bytes(view[start : start + length])) for num, start, length in fetch.parts)
        return out

    def _groups(self, fetches: list[_Fetch]) -> list[list[_Fetch]]:
        """Fetches as store calls: one each, or for batching stores up to ``batch_reads`` of one object."""
        size = min(int(getattr(self.store, "batch_reads", 1)), self.threads)
        if size <= 1:
            return [[f] for f in fetches]
        by_path: dict[str, list[_Fetch]] = {}
        for f in fetches:
            by_path.setdefault(f.path, []).append(f)
        return [group[i : i + size] for group in by_path.values() for i in range(0, len(group), size)]

    def read_many(self, requests: Iterable[Request]) -> Iterator[bytes]:
        """Yields the bytes of every request, in request order, with up to ``threads`` fetches in flight.

        Requests are consumed lazily, at most ``window`` ahead of what has been yielded. An error of one
        fetch is raised (with its original traceback) when the first request it covers is due.
        """
        it = iter(enumerate(requests))
        pending: dict[int, Future[dict[int, bytes]]] = {}  # request number -> future of its fetch
        ready: dict[int, bytes] = {}
        order: deque[int] = deque()
        exhausted = False
        try:
            while True:
                if not exhausted and len(order) <= self.window // 2:  # refill in batches: coalescing sees many
                    batch = list(itertools.islice(it, self.window - len(order)))
                    exhausted = len(batch) < self.window - len(order)
                    if batch:
                        order.extend(num for num, _ in batch)
                        for group in self._groups(coalesce(batch, self.coalesce_gap, self.max_fetch)):
                            future = self._submit(group)
                            for fetch in group:
                                for num, _, _ in fetch.parts:
                                    pending[num] = future
                if not order:
                    return
                head = order.popleft()
                if head not in ready:
                    try:
                        ready.update(pending[head].result())
                    except CancelledError:  # by close()
                        raise self._closed_error() from None
                pending.pop(head, None)
                yield ready.pop(head)
        finally:
            for future in set(pending.values()):
                future.cancel()

    def _submit(self, group: list[_Fetch]) -> Future[dict[int, bytes]]:
        try:
            return self._pool.submit(self._fetch_group, group)
        except RuntimeError:  # "cannot schedule new futures after shutdown"
            if self._finalizer.alive:
                raise
            raise self._closed_error() from None

    def _closed_error(self) -> ClosedError:
        """The guard's own error (it names what was closed), else one naming the store."""
        try:
            with self._guard():
                pass
        except ClosedError as exc:
            return exc
        return ClosedError(f"reader of {self.store.root} is closed: no reads after close()")

    def stats(self) -> dict[str, Any]:
        """Requests served, fetches issued (after coalescing), bytes fetched, retries (of the store); reads in
        flight now and on average while reading (``in_flight_mean``, out of ``threads``); the client serving
        (``client``) and the CPU seconds spent in store calls on the reading threads (``client_call_cpu_s``),
        on the client's own threads (``client_threads_cpu_s``, process-wide) and by the whole process, all since the
        reader was made, and the client's share of the process's CPU (``client_cpu_share``)."""
        with self._lock:
            out: dict[str, Any] = dict(self._stats)
        with self._slots:
            self._in_flight(0)
            out["in_flight"] = self._active
            out["in_flight_mean"] = self._flight_area / self._flight_busy if self._flight_busy else 0.0
            out["client_call_cpu_s"] = self._caller_cpu
        out["retries"] = int(getattr(self.store, "retries", 0))
        out["threads"] = self.threads
        out["client"] = getattr(self.store, "client", type(self.store).__name__)
        out["client_threads_cpu_s"] = client_threads_cpu() - self._cpu_base[1]
        out["process_cpu_s"] = process_cpu() - self._cpu_base[0]
        client = out["client_call_cpu_s"] + out["client_threads_cpu_s"]
        out["client_cpu_share"] = min(1.0, client / out["process_cpu_s"]) if out["process_cpu_s"] > 0 else 0.0
        return out

    def close(self) -> None:
        """Stops the threads (pending fetches are cancelled). Idempotent."""
        self._finalizer()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
