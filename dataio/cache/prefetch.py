"""Background prefetch: a few threads download the shards this process will read next, in plan order.

A thread takes the first shard of the plan (from its current position) that is neither cached, nor being
fetched, nor failed, and fetches it as a prefetch: room is made only by evicting shards needed later than
it (Belady), so prefetching never pushes out something needed sooner and never exceeds the limit. When
there is no room the threads wait until the position moves (or retry after a short while, in case another
process freed space). Shards further ahead than the limit could hold are not considered.

A failed prefetch is kept by the engine and raised by the next read of that shard; an unexpected error of a
thread itself is raised by the next call on the store.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import TYPE_CHECKING

from dataio.cache.fetch import Cancelled, ShardSpec

if TYPE_CHECKING:
    from dataio.cache.engine import CacheEngine

__all__ = ["Prefetcher"]

_RETRY = 0.2  # seconds before looking again when nothing changed in this process


class Prefetcher:
    """``threads`` prefetch threads working for one :class:`~dataio.cache.engine.CacheEngine`."""

    def __init__(self, engine: CacheEngine, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.engine = engine
        self._idle_at = [-1] * threads  # the engine gen at which each thread last found nothing to do
        self._blocked: tuple[int, float] = (-1, 0.0)  # (gen, time) of the last "no room"
        self._last_refresh = 0.0
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"dataio-cache-prefetch-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def join(self, timeout: float = 30.0) -> None:
        """Waits for the threads after the engine's stop event is set."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Waits until every thread found nothing to fetch at the current plan position; False on timeout."""
        e = self.engine
        deadline = None if timeout is None else time.monotonic() + timeout
        with e.lock:
            while any(g != e.gen for g in self._idle_at) or e.busy():
                if e.stop.is_set() or e.fatal is not None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                e.changed.wait(0.05 if left is None else min(left, 0.05))
        return True

    def _run(self, i: int) -> None:
        e = self.engine
        try:
            while not e.stop.is_set():
                gen, path, ahead = self._next()
                if path is None:
                    with e.lock:
                        self._idle_at[i] = gen
                        e.changed.notify_all()
                        e.changed.wait_for(lambda g=gen: e.gen != g or e.stop.is_set(), timeout=_RETRY)
                    continue
                if e.fetch(path, demand=False, ahead=ahead) == "no_room":
                    with e.lock:  # blocked until something changes (unless it already did meanwhile)
                        self._blocked = (gen, time.monotonic())
        except Cancelled:
            return
        except BaseException as exc:  # shipped to the caller by the next call on the store
            with e.lock:
                e.fatal = exc
                e.changed.notify_all()

    def _next(self) -> tuple[int, str | None, list[ShardSpec]]:
        """``(gen, path, ahead)``: the next shard to prefetch (or None) and the uncached shards before it."""
        e = self.engine
        now = time.monotonic()
        if now - self._last_refresh >= _RETRY:  # pick up progress reported by other processes
            self._last_refresh = now
            e.refresh_position()
        with e.lock:
            gen = e.gen
            plan = e.tracker.plan
            inflight = set(e.inflight_paths())
            failed = set(e.errors)
            blocked_gen, blocked_at = self._blocked
        if plan is None or (blocked_gen == gen and now - blocked_at < _RETRY):
            return gen, None, []
        budget = e.options.limit
        seen: set[str] = set()
        ahead: list[ShardSpec] = []
        for name in itertools.islice(plan.order, plan.cursor, None):
            if name in seen:
                continue
            seen.add(name)
            spec = e.by_name[name]
            budget -= spec.size
            if budget < 0 and len(seen) > 1:
                break
            if spec.path in failed or os.path.exists(e.layout.data_path(name)):
                continue
            if spec.path in inflight:
                ahead.append(spec)
                continue
            return gen, spec.path, ahead
        return gen, None, []
