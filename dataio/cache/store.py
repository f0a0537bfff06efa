"""CachedStore: a remote :class:`~dataio.storage.base.Store` read through a node-local shard cache.

Shard paths (those listed in the manifest) are served from a verified local copy with ``os.pread``; every
other path (``manifest.json``, ``index.parquet``, …) goes to the remote store. Tell the store the upcoming
shard order with :meth:`CachedStore.set_access_order` (``ShardDataset.prefetch(sampler.shard_order())``):
it prefetches in that order in the background and evicts what is needed furthest in the future.

Guarantees, for every process and rank sharing ``cache_dir`` on a node:

* each shard is downloaded once at a time per node (a per-shard flock), and only a copy whose size and
  sha256 match the manifest is ever visible (temp file + ``os.replace``);
* a cached copy that a read later finds corrupt (a record failing its CRC: the node's disk) is dropped by
  that read and downloaded again, once (:meth:`CachedStore.invalidate`, called by ``ShardDataset``); if the
  fresh copy fails too, the error names the cached file and the remote shard;
* a killed process leaves no lock behind (flocks die with it); its temp files are deleted by the next
  process that makes room, its published order is ignored and deleted;
* a shard in use is never evicted: a process pins (shared flock) the ``max_open`` shards it read last, and
  a shard its order says is still being read (see :class:`~dataio.cache.plans.Plan`) ranks last;
* the limit (bytes of cached shards + downloads in progress, per dataset) is enforced by the process that
  is about to download: it evicts first, then downloads. Prefetching never exceeds it and never evicts a
  shard Belady would keep (:func:`dataio.cache.room.reserve`). A read goes over it only if every other
  shard is pinned, or if the shard alone is bigger than the limit: it is still downloaded and served, and
  goes first afterwards (both counted in ``stats().over_limit``);
* only a regular file reached without a symlink is opened as a cached copy: a symlink, FIFO or device in its
  place is removed and the shard downloaded again (``stats().refused``); no folder below ``cache_dir`` is
  ever followed through a symlink, and only names the cache creates are deleted (:mod:`dataio.cache.safedir`);
* the cache is an optimisation: a read it cannot serve (its disk full, an unsafe entry where it needs a folder)
  is served from the remote store with one warning naming the folder and the fix (``stats().fallbacks``);
  caching resumes when there is space (:mod:`dataio.cache.fallback`);
* :meth:`CachedStore.close` waits for the reads in flight before it closes their descriptors; later reads raise
  :class:`~dataio.cache.fetch.Cancelled` (a :class:`~dataio.errors.ClosedError`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from dataio.cache.engine import CacheEngine, pread_exactly
from dataio.cache.fallback import CacheUnusable, disk_full
from dataio.cache.fds import REGISTRY
from dataio.cache.layout import DATASET_META, CacheLayout, dataset_key, strip_credentials
from dataio.cache.locks import open_locked
from dataio.cache.options import CacheOptions
from dataio.cache.safedir import read_json_at, write_json_at
from dataio.cache.spec import ShardSpec
from dataio.cache.state import Pin
from dataio.format.manifest import check_relative_path
from dataio.format.shard import FOOTER_SIZE
from dataio.storage.base import StorageError, Store

__all__ = ["CacheStats", "CachedStore"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheStats:
    """Counters of one :class:`CachedStore` in this process (not of the whole node).

    Attributes:
        reads: Ranged reads of shards served from the cache.
        hits: Shard opens that found the shard cached.
        misses: Shard opens that had to wait for a download (own or another process's).
        downloads: Shards this process downloaded (demand + prefetch).
        bytes_downloaded: Bytes this process downloaded.
        prefetched: Downloads done ahead of use by the prefetch threads.
        evictions: Shards this process evicted to make room.
        evicted_bytes: Their bytes.
        waited_seconds: Time readers spent blocked on a shard that was not cached yet.
        lock_waits: Downloads that first waited for another process or thread's download lock.
        over_limit: Downloads that had to exceed the limit (all other shards in use, or a shard > limit).
        errors: Failed prefetches (each raised by the next read of its shard).
        remote_reads: Reads of a shard's index or footer passed to the remote (that shard was not cached).
        invalidated: Cached copies dropped because a read found them corrupt (then downloaded again).
        refused: Entries at a cached copy's place that were not regular files (symlinks, FIFOs, devices):
            never opened, removed, the shard downloaded again.
        fallbacks: Reads served from the remote store because the cache could not be used (its disk full, or
            an unsafe entry planted where it needs a folder; see :mod:`dataio.cache.fallback`).
    """

    reads: int = 0
    hits: int = 0
    misses: int = 0
    downloads: int = 0
    bytes_downloaded: int = 0
    prefetched: int = 0
    evictions: int = 0
    evicted_bytes: int = 0
    waited_seconds: float = 0.0
    lock_waits: int = 0
    over_limit: int = 0
    errors: int = 0
    remote_reads: int = 0
    invalidated: int = 0
    refused: int = 0
    fallbacks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PinnedReader(io.BufferedReader):
    """A buffered reader on a pinned cached shard; closing it drops the pin."""

    def __init__(self, fd: int) -> None:
        super().__init__(io.FileIO(fd, "rb", closefd=False), buffer_size=1 << 20)
        self._pin = fd

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
        finally:
            REGISTRY.close(self._pin)


class CachedStore(Store):
    """Reads the shards of ``remote`` through a node-local cache directory shared by all processes.

    Args:
        remote: The store holding the dataset (any :class:`~dataio.storage.base.Store`).
        cache_dir: Node-local directory (created if missing); shared by every process and dataset.
        limit_bytes: Bytes this dataset may occupy in ``cache_dir`` (cached shards + downloads in progress).
        shards: ``{shard path: (size, sha256)}`` from the manifest; only these paths are cached. Reading a
            shard's index or footer (a range reaching the footer) never downloads it (see :meth:`read_range`).
        policy: ``"belady"`` (evict what is needed furthest in the future, by every live process's published
            order; default) or ``"lru"`` (for comparison; recency = last time a process opened the shard).
        prefetch: Prefetch threads, i.e. downloads in flight ahead of the reader (0: none).
        max_open: Shards a process keeps open (pinned against eviction) after reading from them. Pinned
            shards can push a small limit over: keep ``limit_bytes`` well above (processes × max_open + 2)
            shards.
        chunk_size: Bytes per remote read while downloading.
        fsync: Flush each download to disk before it is renamed into place (survives a power loss).
        slack: How far ahead in the order a first read may be and still count as following it.
    """

    def __init__(
        self,
        remote: Store,
        cache_dir: str | os.PathLike[str],
        limit_bytes: int,
        shards: Mapping[str, tuple[int, str]],
        *,
        policy: str = "belady",
        prefetch: int = 2,
        max_open: int = 2,
        chunk_size: int = 8 << 20,
        fsync: bool = True,
        slack: int = 16,
        _parent_plan: str | None = None,
    ) -> None:
        options = CacheOptions(limit_bytes, policy, prefetch, max_open, chunk_size, fsync, slack)
        layout = CacheLayout(os.fspath(cache_dir), dataset_key(remote.root))
        specs = {}
        for path, (size, sha256) in shards.items():
            check_relative_path(path, "shard path")
            specs[path] = ShardSpec(path, layout.shard_name(path, sha256), size, sha256)
        meta = {"root": strip_credentials(remote.root), "limit": limit_bytes, "policy": policy,
                "shards": len(specs), "bytes": sum(s.size for s in specs.values())}  # fmt: skip
        _create(layout, meta)
        self.remote = remote
        self.layout = layout
        self.shared_between_processes = remote.shared_between_processes
        self._shards = {p: (s.size, s.sha256) for p, s in specs.items()}
        self._engine = CacheEngine(remote, layout, specs, options, _parent_plan)
        self._finalizer = weakref.finalize(self, self._engine.close)

    @property
    def options(self) -> CacheOptions:
        return self._engine.options

    # -- Store interface -----------------------------------------------------------------------
    @property
    def root(self) -> str:
        return self.remote.root

    def url(self, path: str) -> str:
        return self.remote.url(path)

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        """Reads a range; for a shard, from its cached copy (downloaded first if needed).

        A read of a shard's tail (its record index or footer: a range ending at or after the footer, not
        starting at 0) never downloads the shard and does not count as reading it: it is served from the
        cached copy if there is one, else from the remote. ``ShardDataset.prefetch`` loads the index of every
        shard of the order up front, which must not fetch every shard at once.
        """
        spec = self._engine.specs.get(path)
        if spec is None:
            return self.remote.read_range(path, offset, length)
        if offset < 0 or length < 0 or offset + length > spec.size:
            raise StorageError(f"{self.url(path)} [{offset}, +{length}): outside the shard's {spec.size} bytes")
        if offset > 0 and offset + length >= spec.size - FOOTER_SIZE:
            return self._engine.read_tail(path, offset, length)
        entry = self._acquire(path)
        if entry is None:
            return self.remote.read_range(path, offset, length)
        try:
            return pread_exactly(entry.fd, offset, length, self.url(path))
        finally:
            self._engine.release(entry)

    def read(self, path: str) -> bytes:
        spec = self._engine.specs.get(path)
        if spec is None:
            return self.remote.read(path)
        entry = self._acquire(path)
        if entry is None:
            return self.remote.read(path)
        try:
            return pread_exactly(entry.fd, 0, spec.size, self.url(path))
        finally:
            self._engine.release(entry)

    def size(self, path: str) -> int:
        spec = self._engine.specs.get(path)
        return self.remote.size(path) if spec is None else spec.size

    def exists(self, path: str) -> bool:
        return path in self._engine.specs or self.remote.exists(path)

    def delete(self, path: str) -> None:
        self._refuse_shard(path)
        self.remote.delete(path)

    def list(self, prefix: str) -> list[str]:
        return self.remote.list(prefix)

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[BinaryIO]:
        self._refuse_shard(path)
        with self.remote.open_atomic(path) as f:
            yield f

    def open_stream(self, path: str) -> BinaryIO:
        """A shard streams from its cached copy (pinned until the stream is closed); other paths from remote."""
        if path not in self._engine.specs:
            return self.remote.open_stream(path)
        entry = self._acquire(path)  # cached and pinned: cannot be evicted while we open it again
        if entry is None:
            return self.remote.open_stream(path)
        try:
            got = open_locked(self.layout.data_path(self._engine.specs[path].name), False, below=self.layout.cache_dir)
        finally:
            self._engine.release(entry)
        if got is None:  # pragma: no cover - pinned above
            raise StorageError(f"{self.url(path)}: cached copy vanished")
        return _PinnedReader(got[0])  # type: ignore[return-value]

    def _acquire(self, path: str) -> Pin | None:
        """The pinned cached copy of shard ``path``, or None if the cache cannot be used for it now (a full
        disk, an unsafe cache folder: :mod:`dataio.cache.fallback`): the caller reads from the remote."""
        try:
            return self._engine.acquire(path)
        except CacheUnusable:
            self._engine.state.count(fallbacks=1)
            return None

    def _refuse_shard(self, path: str) -> None:
        if path in self._engine.specs:
            raise StorageError(f"{self.url(path)}: shards are read-only through the cache")

    # -- cache interface -----------------------------------------------------------------------
    def set_access_order(self, paths: Sequence[str]) -> None:
        """The shards this process will read next, in order (repeats allowed, e.g. several epochs).

        Publishes the order for eviction decisions of every process on the node and starts the prefetch
        threads. Reads advance the position; a new call replaces the order (e.g. each epoch).

        Raises:
            ValueError: a path that is not a shard of the manifest.
        """
        self._engine.set_order(paths)

    def invalidate(self, path: str) -> str:
        """Drops the cached copy of shard ``path`` after a read found it corrupt; the next read downloads it
        again (sha256-verified). Returns the cached file's path, for the error message if that fails too."""
        if path not in self._engine.specs:
            raise StorageError(f"{self.url(path)} is not a shard of this dataset's cache")
        return self._engine.invalidate(path)

    def wait_prefetched(self, timeout: float | None = None) -> bool:
        """Waits until the prefetch threads have nothing left to do at the current position (everything
        that fits is cached, or there is no room); False on timeout or without an access order."""
        self._engine.check()
        prefetcher = self._engine.prefetcher
        return prefetcher is not None and prefetcher.wait_idle(timeout)

    def stats(self) -> CacheStats:
        """This process's counters (see :class:`CacheStats`)."""
        counts, waited = self._engine.state.counters()
        return CacheStats(**counts, waited_seconds=round(waited, 6))

    def close(self) -> None:
        """Stops the prefetch threads, drops this process's pins and plan, closes the remote. Idempotent."""
        self._finalizer()

    # -- pickling (DataLoader workers) ---------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        e = self._engine
        plan = e.tracker.plan_id
        o = e.options
        return {
            "remote": self.remote, "cache_dir": self.layout.cache_dir, "limit": o.limit, "shards": self._shards,
            "kw": {"policy": o.policy, "prefetch": o.prefetch, "max_open": o.max_open, "chunk_size": o.chunk_size,
                   "fsync": o.fsync, "slack": o.slack, "_parent_plan": plan},
        }  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["remote"], state["cache_dir"], state["limit"], state["shards"], **state["kw"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"CachedStore({self.remote.root!r}, cache={self.layout.base!r}, limit={self.options.limit})"


def _create(layout: CacheLayout, meta: dict[str, Any]) -> None:
    """The dataset's folders (none through a symlink: an unsafe one raises ``UnsafeCacheEntry``) and its
    informational ``dataset.json``; a full disk only warns (reads then go to the remote store)."""
    try:
        layout.create()
        with layout.folder() as dfd:
            if read_json_at(dfd, DATASET_META) != meta:
                write_json_at(dfd, DATASET_META, meta)
    except OSError as exc:
        if not disk_full(exc):
            raise
        log.warning(
            "%s: the cache disk is full (%s): free space there, lower cache_limit, or give open_dataset another "
            "cache_dir; reads go to the remote store while it is full", layout.base, exc.strerror,
        )  # fmt: skip
