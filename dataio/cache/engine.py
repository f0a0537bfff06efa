"""The per-process core of the shard cache: pinned open shards, reads, stats; it owns the plan tracker
(:mod:`~dataio.cache.tracker`), the fetches in flight (:mod:`~dataio.cache.flight`) and the prefetcher.

:class:`~dataio.cache.store.CachedStore` is a thin :class:`~dataio.storage.base.Store` facade over one
engine; the prefetch threads and the finalizer reference the engine only, so a dropped store is collected.
A forked child (a DataLoader worker) gets a fresh engine state that reads for the parent's plan.

Shard pins: a shard this process is reading is held open with a shared flock (the kernel drops it if the
process dies). The ``max_open`` most recently read shards stay open (pinned); opening one more closes the
least recently read one that no thread is reading. Eviction (by any process) skips pinned shards.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from dataio.cache import flight
from dataio.cache.fds import REGISTRY
from dataio.cache.fetch import Cancelled, ShardSpec
from dataio.cache.layout import CacheLayout
from dataio.cache.locks import LockTimeout, open_locked
from dataio.cache.options import CacheOptions
from dataio.cache.plans import next_uses
from dataio.cache.prefetch import Prefetcher
from dataio.cache.tracker import PlanTracker
from dataio.errors import ChecksumError
from dataio.storage.base import StorageError, Store
from dataio.storage.local import pread_full

__all__ = ["CacheEngine"]

_ENGINES: weakref.WeakSet[CacheEngine] = weakref.WeakSet()


@dataclass
class _Open:
    fd: int
    refs: int = 0
    stale: bool = False  # invalidated while threads were reading it: closed when the last one releases it


class CacheEngine:
    """Everything one process does with one dataset's cache (thread-safe)."""

    def __init__(
        self,
        remote: Store,
        layout: CacheLayout,
        specs: Mapping[str, ShardSpec],
        options: CacheOptions,
        parent_plan: str | None = None,
    ) -> None:
        self.remote, self.layout, self.specs, self.options = remote, layout, dict(specs), options
        self.by_name = {s.name: s for s in self.specs.values()}
        self.tracker = PlanTracker(layout, options.slack, parent_plan)
        self._reset_process_state()
        _ENGINES.add(self)

    def _reset_process_state(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stop = threading.Event()
        self.gen = 0  # bumped whenever the prefetcher should look again
        self.counts: Counter[str] = Counter()
        self.waited = 0.0
        self.errors: dict[str, BaseException] = {}
        self.fatal: BaseException | None = None
        self.prefetcher: Prefetcher | None = None
        self._open: OrderedDict[str, _Open] = OrderedDict()
        self._inflight: dict[str, Future[str]] = {}
        self._closed = False

    def after_fork_in_child(self) -> None:
        """A forked child reads for the parent's plan; inherited descriptors are already closed."""
        self.tracker.after_fork_in_child()
        self._reset_process_state()

    # -- reading -------------------------------------------------------------------------------
    def check(self) -> None:
        if self._closed:
            raise Cancelled(f"cache of {self.remote.root} is closed")
        if self.fatal is not None:
            raise self.fatal

    def acquire(self, path: str) -> _Open:
        """Opens (fetching if needed) and pins shard ``path``; the caller must :meth:`release` it."""
        self.check()
        with self.lock:
            entry = self._open.get(path)
            if entry is not None:
                entry.refs += 1
                self._open.move_to_end(path)
                self.counts["reads"] += 1
                return entry
        if self.tracker.touch(self.specs[path].name):
            with self.lock:
                self._bump()
        with self.lock:  # moving on to another shard: unpin the oldest idle ones first, so they may make room
            self._trim_open(keep=self.options.max_open - 1)
        fd, hit = self._open_local(path)
        with self.lock:
            entry = self._open.get(path)
            if entry is None:
                entry = self._open[path] = _Open(fd)
                self.counts["hits" if hit else "misses"] += 1
            else:  # another thread opened it meanwhile
                REGISTRY.close(fd)
            entry.refs += 1
            self.counts["reads"] += 1
            self._trim_open()
            return entry

    def read_tail(self, path: str, offset: int, length: int) -> bytes:
        """A read of a shard's index or footer: from the cached copy if there is one (no touch, no pin kept),
        else from the remote; never downloads the shard."""
        self.check()
        with self.lock:
            entry = self._open.get(path)
            if entry is not None:
                entry.refs += 1
        if entry is not None:
            try:
                return pread_exactly(entry.fd, offset, length, self.remote.url(path))
            finally:
                self.release(entry)
        got = open_locked(self.layout.data_path(self.specs[path].name), False, stop=self.stop)
        if got is None:
            with self.lock:
                self.counts["remote_reads"] += 1
            return self.remote.read_range(path, offset, length)
        try:
            return pread_exactly(got[0], offset, length, self.remote.url(path))
        finally:
            REGISTRY.close(got[0])

    def release(self, entry: _Open) -> None:
        with self.lock:
            entry.refs -= 1
            if entry.stale and entry.refs == 0:
                REGISTRY.close(entry.fd)
            self._trim_open()

    def invalidate(self, path: str) -> str:
        """Drops the cached copy of shard ``path`` (a read found it corrupt): unpinned here and deleted under
        its download lock, so the next read downloads (and sha256-verifies) it again. Threads still reading
        the old copy finish on their open descriptor. Returns the deleted copy's path (for error messages)."""
        self.check()
        spec = self.specs[path]
        final = self.layout.data_path(spec.name)
        bad_inode = None
        with self.lock:
            entry = self._open.pop(path, None)
            if entry is not None:
                bad_inode = os.fstat(entry.fd).st_ino  # the copy we read
                if entry.refs == 0:
                    REGISTRY.close(entry.fd)
                else:
                    entry.stale = True
            self.counts["invalidated"] += 1
        got = open_locked(self.layout.download_lock(spec.name), True, create=True, stop=self.stop)
        if got is None:  # pragma: no cover - create=True never returns None
            raise OSError(f"cannot lock {self.layout.download_lock(spec.name)}")
        try:  # another process may have replaced that copy already: a fresh one stays
            with contextlib.suppress(FileNotFoundError):
                if bad_inode is None or os.stat(final).st_ino == bad_inode:
                    os.unlink(final)
        finally:
            REGISTRY.close(got[0])
        return final

    def _trim_open(self, keep: int | None = None) -> None:
        excess = len(self._open) - (self.options.max_open if keep is None else keep)
        for path in list(self._open):
            if excess <= 0:
                break
            entry = self._open[path]
            if entry.refs == 0:
                del self._open[path]
                REGISTRY.close(entry.fd)  # unpinned: it may be evicted now
                excess -= 1
                self._bump()

    def _open_local(self, path: str) -> tuple[int, bool]:
        """A pinned descriptor of the verified local copy, fetching it first if needed; ``(fd, was_cached)``."""
        spec = self.specs[path]
        final = self.layout.data_path(spec.name)
        hit = True
        start = time.monotonic()
        try:
            while True:
                with self.lock:
                    error = self.errors.pop(path, None)
                if error is not None:
                    raise error
                got = open_locked(final, False, stop=self.stop)
                if got is not None:
                    fd, _ = got
                    size = os.fstat(fd).st_size
                    if size != spec.size:
                        REGISTRY.close(fd)
                        raise ChecksumError(
                            f"cached copy {final} of shard {path} has {size} bytes, the manifest says {spec.size}; "
                            f"run `dataio cache clear {self.layout.cache_dir}`",
                            shard=path,
                        )
                    with contextlib.suppress(OSError):
                        os.utime(fd)  # recency, for LRU and Belady's tie-break
                    return fd, hit
                hit = False
                self.fetch(path, demand=True)
        except LockTimeout:
            raise Cancelled(f"cache of {self.remote.root} closed while waiting for {path}") from None
        finally:
            if not hit:
                with self.lock:
                    self.waited += time.monotonic() - start

    # -- fetching ------------------------------------------------------------------------------
    def fetch(self, path: str, *, demand: bool, ahead: Sequence[ShardSpec] = ()) -> str:
        """Makes sure ``path`` is cached (see :func:`dataio.cache.flight.fetch`)."""
        return flight.fetch(self, path, demand=demand, ahead=ahead)

    def inflight(self) -> dict[str, Future[str]]:
        """Shard path -> the fetch this process has in flight for it (use with :attr:`lock` held)."""
        return self._inflight

    # -- plans ---------------------------------------------------------------------------------
    def set_order(self, paths: Iterable[str]) -> None:
        self.check()
        names = []
        for p in paths:
            spec = self.specs.get(p)
            if spec is None:
                raise ValueError(f"set_access_order: {p!r} is not a shard of {self.remote.root}")
            names.append(spec.name)
        with self.lock:
            self.tracker.publish(names)
            self._bump()
            if self.prefetcher is None and self.options.prefetch > 0:
                self.prefetcher = Prefetcher(self, self.options.prefetch)

    def busy(self) -> bool:
        """Whether a fetch is in flight in this process (call with :attr:`lock` held)."""
        return bool(self._inflight)

    def inflight_paths(self) -> list[str]:
        """Shards being fetched by this process (call with :attr:`lock` held)."""
        return list(self._inflight)

    def refresh_position(self) -> None:
        """Adopts the furthest position reported for this process's plan by readers in other processes."""
        if self.tracker.refresh():
            with self.lock:
                self._bump()

    def next_uses(self, names: Iterable[str]) -> dict[str, tuple[int, int]]:
        return next_uses(self.tracker.plans(), names)

    def _bump(self) -> None:
        """Something changed that the prefetcher should look at (call with :attr:`lock` held)."""
        self.gen += 1
        self.changed.notify_all()

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop.set()
        with self.lock:
            self.changed.notify_all()
        if self.prefetcher is not None:
            self.prefetcher.join()
        with self.lock:
            for entry in self._open.values():
                REGISTRY.close(entry.fd)
            self._open.clear()
        self.tracker.close()
        self.remote.close()


def pread_exactly(fd: int, offset: int, length: int, where: str) -> bytes:
    """``length`` bytes at ``offset`` of a cached copy (whose size was checked when it was opened)."""
    data = pread_full(fd, length, offset)
    if len(data) < length:
        raise StorageError(f"{where} [{offset}, +{length}): cached copy ends early")
    return data


def _after_fork_in_child() -> None:
    for engine in list(_ENGINES):
        engine.after_fork_in_child()


REGISTRY.on_fork_child(_after_fork_in_child)
