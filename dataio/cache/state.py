"""CacheState: everything one process's cache engine shares between its threads, behind one lock.

The reader threads, the prefetch threads and the store facade used to edit the engine's fields from three
modules (``flight.py``, ``prefetch.py``, ``store.py``). All of it lives here now, and only this class's methods
touch it:

* the fetches in flight (single flight: one attempt per shard at a time in this process, see :meth:`single_flight`);
* the pinned open shards (descriptors with a shared flock, reference-counted, most recently read last);
* failed prefetches (raised by the next read of their shard) and a fatal error of a prefetch thread;
* the change counter ``gen`` the prefetch threads wait on, their idle marks, the last "no room" and the last
  re-read of the plan's position;
* the counters behind ``CachedStore.stats()``;
* the stop event and the closed flag.

Lock rules:

1. One lock (``_lock``, with the condition ``_changed`` on it) guards every field above. It is taken only by
   the methods of this class, each briefly; callers never hold it.
2. It is never held across anything that may block: downloads, flock waits, opening files, remote calls,
   waits on a fetch's future. The one call made under it is ``REGISTRY.close`` of a pinned descriptor (which
   takes the fd registry's lock: the order is state lock, then registry lock, never the reverse).
3. A fetch's future is completed after the lock is released, and its waiters are woken by it.
4. Every wait has a timeout or watches the stop event, so ``close()`` ends every thread.

A forked child (a DataLoader worker) gets a new :class:`CacheState`: the parent's threads, futures and locks
do not exist there, and inherited descriptors are already closed (:mod:`dataio.cache.fds`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from dataio.cache.fds import REGISTRY
from dataio.cache.fetch import Cancelled

__all__ = ["CacheState", "Pin"]

_WAIT_POLL = 0.01  # seconds between checks of the stop event while waiting for another thread's fetch


@dataclass
class Pin:
    """A shard held open (with a shared flock) by this process; ``refs`` threads are reading it now."""

    path: str
    fd: int
    refs: int = 0
    stale: bool = False  # no longer pinned (invalidated, or closed): closed when the last reader releases it


class CacheState:
    """The shared state of one process's cache engine (thread-safe; see the module docstring).

    Args:
        name: The cached dataset (its remote root), for errors.
        max_open: Shards kept open (pinned) after reading from them.
    """

    def __init__(self, name: str, max_open: int) -> None:
        self.name = name
        self.max_open = max_open
        self.stop = threading.Event()  # set by close(): waits and downloads end
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._gen = 0  # bumped whenever the prefetch threads should look again
        self._counts: Counter[str] = Counter()
        self._waited = 0.0
        self._errors: dict[str, BaseException] = {}
        self._fatal: BaseException | None = None
        self._closed = False
        self._inflight: dict[str, Future[str]] = {}
        self._waiting: Counter[str] = Counter()  # demand calls waiting for another thread's attempt, per shard
        self._pins: OrderedDict[str, Pin] = OrderedDict()
        self._idle_at: list[int] = []  # per prefetch thread: the gen at which it last found nothing to do
        self._blocked: tuple[int, float] = (-1, 0.0)  # (gen, time) of the last prefetch that found no room
        self._prefetching = False  # the prefetch threads were started
        self._refreshed_at = -1e9  # when a prefetch thread last re-read the plan's position from disk

    # -- lifecycle and errors ------------------------------------------------------------------
    def check(self) -> None:
        """Raises :class:`Cancelled` after :meth:`close`, or a prefetch thread's fatal error."""
        if self._closed:
            raise Cancelled(f"cache of {self.name} is closed")
        if self._fatal is not None:
            raise self._fatal

    def cancelled(self, what: str) -> Cancelled:
        return Cancelled(f"cache of {self.name} closed while waiting for {what}")

    def set_fatal(self, exc: BaseException) -> None:
        """An unexpected error of a prefetch thread: raised by every later call on the store."""
        with self._lock:
            self._fatal = exc
            self._changed.notify_all()

    def take_error(self, path: str) -> BaseException | None:
        """The failed prefetch of ``path``, if any (delivered once: a later read tries again)."""
        with self._lock:
            return self._errors.pop(path, None)

    def close(self) -> bool:
        """Refuses new work, stops every wait; False if it was already closed."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
            self.stop.set()
            self._changed.notify_all()
            return True

    # -- counters ------------------------------------------------------------------------------
    def count(self, **deltas: int) -> None:
        with self._lock:
            self._counts.update(deltas)

    def add_waited(self, seconds: float) -> None:
        with self._lock:
            self._waited += seconds

    def counters(self) -> tuple[dict[str, int], float]:
        """``(counts, seconds readers waited)``, a consistent snapshot."""
        with self._lock:
            return dict(self._counts), self._waited

    def bump(self) -> None:
        """Something changed that the prefetch threads should look at."""
        with self._lock:
            self._bump()

    def _bump(self) -> None:
        self._gen += 1
        self._changed.notify_all()

    # -- single flight -------------------------------------------------------------------------
    def single_flight(self, path: str, *, demand: bool, attempt: Callable[[], str]) -> str:
        """Runs ``attempt()`` for shard ``path`` unless this process already has one in flight.

        A concurrent demand call waits for the attempt in flight and shares its outcome: ``"done"``, or its
        error (every waiter gets it; the next call starts a new attempt). After any other outcome (a prefetch
        that found no room) a waiting demand call starts an attempt of its own. A prefetch
        (``demand=False``) never waits: ``"busy"`` if an attempt is in flight; its own failure is kept and
        raised by the next read of the shard (``"error"``).
        """
        while True:
            with self._lock:
                fut = self._inflight.get(path)
                mine = fut is None
                if mine:
                    fut = self._inflight[path] = Future()
            if mine:
                break
            if not demand:
                return "busy"
            self._wait_for(path, fut)
            if fut.exception() is not None:
                self.take_error(path)  # delivered here; a later read tries again
            if fut.result() == "done":  # raises the attempt's error
                return "done"
        try:
            outcome = attempt()
        except Cancelled as exc:
            self._finish(path, fut, exc=exc)
            raise
        except BaseException as exc:
            if not demand:
                with self._lock:
                    self._errors[path] = exc
                    self._counts["errors"] += 1
            self._finish(path, fut, exc=exc)
            if demand:
                raise
            return "error"
        self._finish(path, fut, outcome=outcome)
        return outcome

    def _wait_for(self, path: str, fut: Future[str]) -> None:
        with self._lock:
            self._waiting[path] += 1
        try:
            while not fut.done():
                if self.stop.wait(_WAIT_POLL):
                    raise self.cancelled(path)
        finally:
            with self._lock:
                self._waiting[path] -= 1

    def waiting(self, path: str) -> int:
        """Reads waiting now for the attempt in flight on shard ``path`` (for tests and debugging)."""
        with self._lock:
            return self._waiting[path]

    def _finish(self, path: str, fut: Future[str], outcome: str = "", exc: BaseException | None = None) -> None:
        """Ends this process's attempt: the next caller starts a new one; waiters get the outcome or error."""
        with self._lock:
            self._inflight.pop(path, None)
            if outcome != "no_room":  # something changed: the prefetch threads may look again
                self._gen += 1
            self._changed.notify_all()
        if exc is None:
            fut.set_result(outcome)
        else:
            fut.set_exception(exc)

    def inflight_paths(self) -> list[str]:
        """Shards this process is fetching now."""
        with self._lock:
            return list(self._inflight)

    # -- pins ----------------------------------------------------------------------------------
    def pin_open(self, path: str) -> Pin | None:
        """Pins shard ``path`` again if it is open in this process (a read); None if it is not."""
        with self._lock:
            pin = self._pins.get(path)
            if pin is not None:
                pin.refs += 1
                self._pins.move_to_end(path)
                self._counts["reads"] += 1
            return pin

    def borrow(self, path: str) -> Pin | None:
        """Like :meth:`pin_open`, for a read of the shard's tail: not counted, recency unchanged."""
        with self._lock:
            pin = self._pins.get(path)
            if pin is not None:
                pin.refs += 1
            return pin

    def pin_new(self, path: str, fd: int, hit: bool) -> Pin:
        """Pins the freshly opened ``fd`` of ``path`` (closed instead if another thread pinned it meanwhile)."""
        with self._lock:
            pin = self._pins.get(path)
            if self._closed:  # closed while it was being opened: not pinned, its one reader closes it
                pin = Pin(path, fd, stale=True)
            elif pin is None:
                pin = self._pins[path] = Pin(path, fd)
                self._counts["hits" if hit else "misses"] += 1
            else:
                REGISTRY.close(fd)
            pin.refs += 1
            self._counts["reads"] += 1
            self._trim(self.max_open)
            return pin

    def release(self, pin: Pin) -> None:
        """Ends one read of ``pin``."""
        with self._lock:
            pin.refs -= 1
            if pin.refs == 0:
                self._changed.notify_all()  # close() may be waiting for the last reader
                if pin.stale:
                    REGISTRY.close(pin.fd)
            self._trim(self.max_open)

    def make_room_to_open(self) -> None:
        """Moving on to another shard: unpins the oldest idle ones first, so that they may make room."""
        with self._lock:
            self._trim(self.max_open - 1)

    def unpin(self, path: str) -> int | None:
        """Drops the pin of ``path`` (its copy is bad); threads still reading it finish on its descriptor,
        which the last of them closes. Returns the inode of the copy it had open, or None."""
        with self._lock:
            pin = self._pins.pop(path, None)
            self._counts["invalidated"] += 1
            if pin is None:
                return None
            inode = os.fstat(pin.fd).st_ino
            pin.stale = True
            if pin.refs == 0:
                REGISTRY.close(pin.fd)
            return inode

    def _trim(self, keep: int) -> None:
        excess = len(self._pins) - keep
        for path in list(self._pins):
            if excess <= 0:
                break
            pin = self._pins[path]
            if pin.refs == 0:
                del self._pins[path]
                REGISTRY.close(pin.fd)  # unpinned: it may be evicted now
                excess -= 1
                self._bump()

    def close_pins(self, timeout: float) -> bool:
        """After :meth:`close`: waits up to ``timeout`` seconds for the reads in flight, then closes every
        pinned descriptor; one still being read is closed by its last reader. True if none was left to them."""
        with self._lock:
            idle = self._changed.wait_for(lambda: all(p.refs == 0 for p in self._pins.values()), timeout)
            for pin in self._pins.values():
                pin.stale = True
                if pin.refs == 0:
                    REGISTRY.close(pin.fd)
            self._pins.clear()
            return idle

    # -- prefetch threads ----------------------------------------------------------------------
    def claim_prefetcher(self) -> bool:
        """True for the one caller that is to start the prefetch threads (never after close)."""
        with self._lock:
            if self._prefetching or self._closed:
                return False
            self._prefetching = True
            return True

    def prefetch_started(self, threads: int) -> None:
        """``threads`` prefetch threads start now (none of them idle yet)."""
        with self._lock:
            self._idle_at = [-1] * threads

    def prefetch_view(self) -> tuple[int, set[str], set[str], tuple[int, float]]:
        """``(gen, shards in flight, failed shards, last no-room (gen, time))`` for a prefetch thread's choice."""
        with self._lock:
            return self._gen, set(self._inflight), set(self._errors), self._blocked

    def refresh_due(self, interval: float) -> bool:
        """True (for one prefetch thread) when the plan's position was last re-read over ``interval`` s ago."""
        now = time.monotonic()
        with self._lock:
            if now - self._refreshed_at < interval:
                return False
            self._refreshed_at = now
            return True

    def no_room(self, gen: int) -> None:
        """A prefetch found no room at ``gen``: the threads wait until something changes (or a short while)."""
        with self._lock:
            self._blocked = (gen, time.monotonic())

    def idle(self, thread: int, gen: int, timeout: float) -> None:
        """Prefetch thread ``thread`` found nothing to do at ``gen``: waits until it changes (or ``timeout``)."""
        with self._lock:
            self._idle_at[thread] = gen
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._gen != gen or self.stop.is_set(), timeout=timeout)

    def wait_idle(self, timeout: float | None) -> bool:
        """Waits until every prefetch thread found nothing to do at the current ``gen`` and no fetch is in
        flight; False on timeout, on close or after a fatal error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._idle_at or any(g != self._gen for g in self._idle_at) or self._inflight:
                if self.stop.is_set() or self._fatal is not None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(0.05 if left is None else min(left, 0.05))
        return True
