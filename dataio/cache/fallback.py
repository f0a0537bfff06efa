"""When the cache cannot be used, reads go to the remote store (issue 19 item 12): the cache is an
optimisation, never a dependency.

Two causes: the cache disk is full (``ENOSPC``, or ``EDQUOT`` for a quota), or something another user of the
node planted stands where the cache needs one of its folders (a symlink, a FIFO, a file:
:class:`~dataio.cache.safedir.UnsafeCacheEntry`). Either way the read is served from the remote store, one
warning (a full disk: once per store until caching works again; an unsafe entry: once per path) names the
cache folder and the fix, and ``stats().fallbacks`` counts the reads served so. After a full disk, downloads
into the cache pause for :attr:`Bypass.RETRY_S` seconds (reads of shards already cached still use the cache),
then the next read tries again: caching resumes as soon as there is space.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from typing import NoReturn

from dataio.cache.safedir import UnsafeCacheEntry
from dataio.storage.base import StorageError

__all__ = ["Bypass", "CacheUnusable", "disk_full"]

log = logging.getLogger(__name__)

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the user's quota on it) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL


class CacheUnusable(StorageError):
    """The cache could not serve a read (full disk, or an unsafe entry in its folders); the read goes to the
    remote store. ``cause`` is ``"full"`` or ``"unsafe"``."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class Bypass:
    """One process's record of why its cache is bypassed (thread-safe).

    Args:
        folder: The dataset's folder in the cache directory, for the warnings.
    """

    #: Seconds downloads pause after the cache disk was found full.
    RETRY_S = 2.0

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._full_until = 0.0
        self._warned: set[str] = set()

    def full(self) -> bool:
        """Whether downloads into the cache are paused after a full disk."""
        with self._lock:
            return time.monotonic() < self._full_until

    def unusable(self, exc: BaseException) -> CacheUnusable | None:
        """The :class:`CacheUnusable` for ``exc`` (a full disk or an unsafe cache entry), None for any other
        error. Warns once per cause; a full disk also pauses downloads for :attr:`RETRY_S` seconds."""
        if isinstance(exc, CacheUnusable):
            return exc
        if disk_full(exc):
            with self._lock:
                self._full_until = time.monotonic() + self.RETRY_S
            msg = (
                f"the cache disk is full at {self.folder} ({exc}); reading from the remote store until there is "
                "space again: free space there, lower cache_limit, or give open_dataset another cache_dir"
            )
            return self._warn(CacheUnusable(msg, "full"), "full")
        if isinstance(exc, UnsafeCacheEntry):
            return self._warn(CacheUnusable(f"{exc}; reading from the remote store meanwhile", "unsafe"), str(exc))
        return None

    def raise_for(self, exc: OSError) -> NoReturn:
        """Raises :meth:`unusable` of ``exc`` (from it) if the cache is unusable, else ``exc`` itself."""
        unusable = self.unusable(exc)
        if unusable is None:
            raise exc
        raise unusable from exc

    def paused(self) -> CacheUnusable:
        """The error of a read that finds downloads paused (no new warning)."""
        return CacheUnusable(f"the cache disk is full at {self.folder}; downloads paused", "full")

    def resumed(self) -> None:
        """A download into the cache succeeded: the next full disk warns again."""
        with self._lock:
            if self._warned:
                self._warned.clear()
                self._full_until = 0.0
                log.info("%s: caching resumed", self.folder)

    def _warn(self, exc: CacheUnusable, key: str) -> CacheUnusable:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            log.warning("%s", exc)
        return exc
