"""The per-process core of the shard cache: opening, pinning and reading cached shards; it owns the plan
tracker (:mod:`~dataio.cache.tracker`), the shared state (:mod:`~dataio.cache.state`: fetches in flight, pins,
errors, counters, and the lock rules) and the prefetcher.

:class:`~dataio.cache.store.CachedStore` is a thin :class:`~dataio.storage.base.Store` facade over one
engine; the prefetch threads and the finalizer reference the engine only, so a dropped store is collected.
A forked child (a DataLoader worker) gets a fresh engine state that reads for the parent's plan.

Shard pins: a shard this process is reading is held open with a shared flock (the kernel drops it if the
process dies). The ``max_open`` most recently read shards stay open (pinned); opening one more closes the
least recently read one that no thread is reading. Eviction (by any process) skips pinned shards. ``close()``
waits for the reads in flight before it closes the pinned descriptors.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence

from dataio.cache import flight
from dataio.cache.fallback import Bypass
from dataio.cache.fds import REGISTRY
from dataio.cache.layout import CacheLayout
from dataio.cache.locks import LockTimeout, open_locked
from dataio.cache.options import CacheOptions
from dataio.cache.plans import next_uses
from dataio.cache.prefetch import Prefetcher
from dataio.cache.safedir import lstat_at, unlink_at
from dataio.cache.space import remove_unsafe
from dataio.cache.spec import ShardSpec
from dataio.cache.state import CacheState, Pin
from dataio.cache.tracker import PlanTracker
from dataio.errors import ChecksumError
from dataio.storage.base import StorageError, Store, UnsafeFileError
from dataio.storage.local import pread_full

__all__ = ["CacheEngine"]

CLOSE_TIMEOUT_S = 60.0  # how long close() waits for reads in flight before leaving their descriptors to them

_ENGINES: weakref.WeakSet[CacheEngine] = weakref.WeakSet()


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
        self.state = CacheState(self.remote.root, self.options.max_open)
        self.bypass = Bypass(self.layout.base)
        self.prefetcher: Prefetcher | None = None

    @property
    def stop(self) -> threading.Event:
        """Set by :meth:`close`: waits and downloads end."""
        return self.state.stop

    def after_fork_in_child(self) -> None:
        """A forked child reads for the parent's plan; inherited descriptors are already closed."""
        self.tracker.after_fork_in_child()
        self._reset_process_state()

    # -- reading -------------------------------------------------------------------------------
    def check(self) -> None:
        self.state.check()

    def acquire(self, path: str) -> Pin:
        """Opens (fetching if needed) and pins shard ``path``; the caller must :meth:`release` it."""
        self.check()
        pin = self.state.pin_open(path)
        if pin is not None:
            return pin
        if self.tracker.touch(self.specs[path].name):
            self.state.bump()
        self.state.make_room_to_open()
        fd, hit = self._open_local(path)
        return self.state.pin_new(path, fd, hit)

    def release(self, pin: Pin) -> None:
        self.state.release(pin)

    def read_tail(self, path: str, offset: int, length: int) -> bytes:
        """A read of a shard's index or footer: from the cached copy if there is one (no touch, no pin kept),
        else from the remote; never downloads the shard."""
        self.check()
        pin = self.state.borrow(path)
        if pin is not None:
            try:
                return pread_exactly(pin.fd, offset, length, self.remote.url(path))
            finally:
                self.release(pin)
        try:
            got = open_locked(self._data(path), False, stop=self.stop, below=self.layout.cache_dir)
        except (UnsafeFileError, NotADirectoryError):  # the next read of the shard removes it and downloads it
            got = None
        if got is None:
            self.state.count(remote_reads=1)
            return self.remote.read_range(path, offset, length)
        try:
            return pread_exactly(got[0], offset, length, self.remote.url(path))
        finally:
            REGISTRY.close(got[0])

    def invalidate(self, path: str) -> str:
        """Drops the cached copy of shard ``path`` (a read found it corrupt): unpinned here and deleted under
        its download lock, so the next read downloads (and sha256-verifies) it again. Threads still reading
        the old copy finish on their open descriptor. Returns the deleted copy's path (for error messages)."""
        self.check()
        spec = self.specs[path]
        final = self.layout.data_path(spec.name)
        bad_inode = self.state.unpin(path)  # the copy we read
        got = self.download_lock(spec.name)
        folders, leaf = self.layout.parent_of(final)
        try:  # another process may have replaced that copy already: a fresh one stays
            with contextlib.suppress(FileNotFoundError, UnsafeFileError), self.layout.folder(*folders) as dfd:
                st = lstat_at(dfd, leaf)
                if st is not None and (bad_inode is None or st.st_ino == bad_inode):
                    unlink_at(dfd, leaf)
        finally:
            REGISTRY.close(got[0])
        return final

    def _data(self, path: str) -> str:
        return self.layout.data_path(self.specs[path].name)

    def _open_local(self, path: str) -> tuple[int, bool]:
        """A pinned descriptor of the verified local copy, fetching it first if needed; ``(fd, was_cached)``.

        Only a regular file reached without a symlink is opened: anything else at the copy's place (a symlink
        planted by another user, or pointing outside the cache; a FIFO; a device) is removed and the shard
        downloaded again.
        """
        spec = self.specs[path]
        final = self.layout.data_path(spec.name)
        hit = True
        refused = False
        start = time.monotonic()
        try:
            while True:
                error = self.state.take_error(path)
                if error is not None:
                    raise error
                try:
                    got = open_locked(final, False, stop=self.stop, below=self.layout.cache_dir)
                except (UnsafeFileError, NotADirectoryError) as exc:
                    if refused:
                        raise UnsafeFileError(
                            f"cached copy {final} of shard {path}: {exc} (removed once, and there again)"
                        ) from exc
                    refused = True
                    self._remove_unsafe(path)
                    got = None
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
                if self.bypass.full():
                    raise self.bypass.paused()
                self.fetch(path, demand=True)
        except LockTimeout:
            raise self.state.cancelled(path) from None
        except OSError as exc:  # a full disk or an unsafe cache folder: the caller reads from the remote
            self.bypass.raise_for(exc)
        finally:
            if not hit:
                self.state.add_waited(time.monotonic() - start)

    def _remove_unsafe(self, path: str) -> None:
        """Removes a symlink or special file at the cached copy's place (under the shard's download lock)."""
        name = self.specs[path].name
        got = self.download_lock(name)
        try:
            removed = remove_unsafe(self.layout, name)
        finally:
            REGISTRY.close(got[0])
        self.state.count(refused=len(removed))

    def download_lock(self, name: str) -> tuple[int, float]:
        """The shard's download lock, held (the caller closes it with ``REGISTRY.close``).

        Raises:
            CacheUnusable: the lock file cannot be made (a full disk, an unsafe ``locks/``).
            LockTimeout: the wait was cancelled (closing).
        """
        lock = self.layout.download_lock(name)
        try:
            got = open_locked(lock, True, create=True, stop=self.stop, below=self.layout.cache_dir)
        except LockTimeout:
            raise
        except OSError as exc:
            self.bypass.raise_for(exc)
        if got is None:  # pragma: no cover - create=True never returns None
            raise OSError(f"cannot lock {lock}")
        return got

    # -- fetching ------------------------------------------------------------------------------
    def fetch(self, path: str, *, demand: bool, ahead: Sequence[ShardSpec] = ()) -> str:
        """Makes sure ``path`` is cached (see :func:`dataio.cache.flight.fetch`)."""
        return flight.fetch(self, path, demand=demand, ahead=ahead)

    # -- plans ---------------------------------------------------------------------------------
    def set_order(self, paths: Iterable[str]) -> None:
        self.check()
        names = []
        for p in paths:
            spec = self.specs.get(p)
            if spec is None:
                raise ValueError(f"set_access_order: {p!r} is not a shard of {self.remote.root}")
            names.append(spec.name)
        self.tracker.publish(names)
        self.state.bump()
        if self.options.prefetch > 0 and self.state.claim_prefetcher():
            self.prefetcher = Prefetcher(self, self.options.prefetch)

    def refresh_position(self) -> None:
        """Adopts the furthest position reported for this process's plan by readers in other processes."""
        if self.tracker.refresh():
            self.state.bump()

    def next_uses(self, names: Iterable[str]) -> dict[str, tuple[int, int]]:
        return next_uses(self.tracker.plans(), names)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stops the prefetch threads and every wait, waits for the reads in flight (up to ``timeout``
        seconds, then their last reader closes what they use), closes the pins, withdraws the plan."""
        if not self.state.close():
            return
        if self.prefetcher is not None:
            self.prefetcher.join()
        self.state.close_pins(timeout)
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
