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
import threading
import time

from dataio.cache.fetch import Cancelled
from dataio.cache.ports import EngineCore
from dataio.cache.spec import ShardSpec

__all__ = ["Prefetcher"]

_RETRY = 0.2  # seconds before looking again when nothing changed in this process


class Prefetcher:
    """``threads`` prefetch threads working for one :class:`~dataio.cache.engine.CacheEngine`; what they share
    (the change counter they wait on, idle marks, the last "no room", when the plan was last refreshed) is the
    engine's
    :class:`~dataio.cache.state.CacheState`."""

    def __init__(self, engine: EngineCore, threads: int) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.engine = engine
        engine.state.prefetch_started(threads)
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
        return self.engine.state.wait_idle(timeout)

    def _run(self, i: int) -> None:
        e = self.engine
        try:
            while not e.stop.is_set():
                gen, path, ahead = self._next()
                if path is None:
                    e.state.idle(i, gen, _RETRY)
                    continue
                if e.fetch(path, demand=False, ahead=ahead) == "no_room":
                    e.state.no_room(gen)  # blocked until something changes (unless it already did meanwhile)
        except Cancelled:
            return
        except BaseException as exc:  # shipped to the caller by the next call on the store
            e.state.set_fatal(exc)

    def _next(self) -> tuple[int, str | None, list[ShardSpec]]:
        """``(gen, path, ahead)``: the next shard to prefetch (or None) and the uncached shards before it."""
        e = self.engine
        now = time.monotonic()
        if e.state.refresh_due(_RETRY):  # pick up progress reported by other processes
            e.refresh_position()
        gen, inflight, failed, (blocked_gen, blocked_at) = e.state.prefetch_view()
        plan = e.tracker.plan
        if plan is None or e.bypass.full() or (blocked_gen == gen and now - blocked_at < _RETRY):
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
            if spec.path in failed or e.layout.has_shard(name):
                continue
            if spec.path in inflight:
                ahead.append(spec)
                continue
            return gen, spec.path, ahead
        return gen, None, []
