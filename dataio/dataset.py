"""``open_dataset()`` → :class:`ShardDataset`: the one place that turns "sample i" into "these bytes of that shard".

Opening reads only the manifest. The first access to a shard loads its index with one ranged read (its
location and checksum are in the manifest); after that every sample costs exactly one ranged read, which
is checked against the sample's CRC-32 before it is decoded.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch.utils.data

from dataio._forksafe import on_fork_child
from dataio.format.manifest import Manifest
from dataio.format.shard import FOOTER_SIZE, ShardIndex, iter_records, parse_index
from dataio.gate import ReadGate
from dataio.healing import checked_record
from dataio.index_file import label_column, parquet_table
from dataio.manifest_file import load_manifest
from dataio.storage import RangeReader, RetryPolicy, Store, open_store
from dataio.units import parse_size

__all__ = ["ShardDataset", "open_dataset"]

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 60.0  # how long close() waits for reads in flight before leaving the closing to the last one

#: Bytes between two wanted ranges of one shard below which a batched read fetches them as one range.
DEFAULT_COALESCE_GAP = 64 * 1024


class ShardDataset(torch.utils.data.Dataset):
    """A packed dataset as a map-style torch ``Dataset``: ``ds[i]`` is a dict of the sample's fields.

    For packed images the fields are ``key`` (str), ``label`` (int) and ``image`` (the encoded bytes exactly
    as stored). Thread-safe, close() included: it waits for the reads in flight on other threads before it
    closes their files, and every read after it raises :class:`~dataio.errors.ClosedError`. Picklable (spawned
    workers reopen the store) and fork-safe: a forked child (a torch DataLoader worker) gets fresh locks, and the
    reader's pool, the store's sessions and the cache's state are recreated there on first use, whatever the
    parent did before the fork.

    Args:
        store: Where the dataset lives.
        manifest: The parsed manifest.
        verify: Check every sample's CRC-32 when it is read (cheap: ~2.5 GB/s per core).
        threads: Reads in flight for :meth:`read_records`/:meth:`get_many` (default: the store's).
        coalesce_gap: Merge reads of one shard that are at most this many bytes apart.
    """

    def __init__(
        self,
        store: Store,
        manifest: Manifest,
        *,
        verify: bool = True,
        threads: int | None = None,
        coalesce_gap: int = DEFAULT_COALESCE_GAP,
    ) -> None:
        self.store = store
        self.manifest = manifest
        self.verify = verify
        self.threads = threads
        self.coalesce_gap = coalesce_gap
        self._reader: RangeReader | None = None
        self.shard_sizes = np.array([s.num_samples for s in manifest.shards], dtype=np.int64)
        self.shard_nbytes = np.array([s.size for s in manifest.shards], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self.shard_sizes)]).astype(np.int64)
        self._indexes: dict[int, ShardIndex] = {}
        self._labels: np.ndarray | None = None
        self._lock = threading.Lock()
        self._gate = ReadGate(f"dataset {store.root}")  # every store access: close() waits for those in flight
        on_fork_child(self)

    def _after_fork_in_child(self) -> None:
        # A thread of the parent may have held the lock at the fork. The reader and the store mend themselves.
        self._lock = threading.Lock()
        self._gate.after_fork_in_child()

    @property
    def classes(self) -> list[str] | None:
        """Class names (label ``i`` is ``classes[i]``) or ``None``."""
        return list(self.manifest.classes) if self.manifest.classes is not None else None

    @property
    def root(self) -> str:
        return self.store.root

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Global sample index → ``(shard number, position in shard)``."""
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"sample index {index} out of range for a dataset of {n} samples")
        shard = int(np.searchsorted(self._starts, i, side="right")) - 1
        return shard, i - int(self._starts[shard])

    def shard_index(self, shard: int) -> ShardIndex:
        """The record index of shard ``shard`` (loaded with one ranged read on first use, then cached)."""
        self._gate.check()
        with self._lock:
            cached = self._indexes.get(shard)
        if cached is not None:
            return cached
        with self._gate.reading():
            buf = self.store.read_range(*self._index_request(shard))
        return self._keep_index(shard, buf)

    def _index_request(self, shard: int) -> tuple[str, int, int]:
        """``(path, offset, length)`` of a shard's index region (known from the manifest)."""
        e = self.manifest.shards[shard]
        return e.path, e.index_offset, e.size - FOOTER_SIZE - e.index_offset

    def _keep_index(self, shard: int, buf: bytes) -> ShardIndex:
        """Parses (checking its CRC) and caches the index of ``shard``; returns the cached one."""
        e = self.manifest.shards[shard]
        index = parse_index(buf, e.num_samples, e.index_offset, e.index_crc32, e.path)
        with self._lock:
            return self._indexes.setdefault(shard, index)

    def record_range(self, index: int) -> tuple[str, int, int]:
        """``(shard path, offset, length)`` of sample ``index``: what one ranged read must fetch."""
        shard, pos = self.locate(index)
        offset, length = self.shard_index(shard).record_range(pos)
        return self.manifest.shards[shard].path, offset, length

    def read_record(self, index: int) -> bytes:
        """The raw, checksum-verified record bytes of sample ``index``."""
        shard, pos = self.locate(index)
        sindex = self.shard_index(shard)
        offset, length = sindex.record_range(pos)
        path = self.manifest.shards[shard].path
        with self._gate.reading():
            data = self.store.read_range(path, offset, length)
        if self.verify:
            data = self._checked(data, path, pos, offset, length, int(sindex.crcs[pos]))
        return data

    def _checked(self, data: bytes, path: str, pos: int, offset: int, length: int, crc: int) -> bytes:
        """``data`` if it passes its CRC; a corrupt copy in the node cache is healed (see :mod:`dataio.healing`)."""
        return checked_record(self.store, self._gate, data, path, pos, offset, length, crc)

    @property
    def reader(self) -> RangeReader:
        """The dataset's :class:`RangeReader` (created on first use; not pickled). Its reads go through the
        dataset's gate: :meth:`close` waits for them.

        Raises:
            ClosedError: the dataset is closed.
        """
        with self._lock:
            self._gate.check()
            if self._reader is None:
                self._reader = RangeReader(
                    self.store, threads=self.threads, coalesce_gap=self.coalesce_gap, guard=self._gate.reading
                )
            return self._reader

    def io_stats(self) -> dict[str, Any] | None:
        """The reader's counters (requests, bytes, retries, reads in flight, client CPU: see
        :meth:`RangeReader.stats`), or ``None`` before the first read through the reader."""
        with self._lock:
            reader = self._reader
        return None if reader is None else reader.stats()

    def cache_stats(self) -> dict[str, Any] | None:
        """This process's node-local cache counters as a plain dict (hits, misses, bytes, evictions, …: see
        :class:`~dataio.cache.store.CacheStats`), or ``None`` without ``cache_dir``."""
        from dataio.cache import CachedStore

        return self.store.stats().to_dict() if isinstance(self.store, CachedStore) else None

    def _load_indexes(self, shards: Iterable[int]) -> None:
        """Loads the indexes of ``shards`` not yet loaded, many reads in flight."""
        with self._lock:
            todo = [int(s) for s in shards if int(s) not in self._indexes]
        if not todo:
            return
        for s, buf in zip(todo, self.reader.read_many([self._index_request(s) for s in todo]), strict=True):
            self._keep_index(s, buf)

    def read_records(self, indices: Iterable[int]) -> Iterator[bytes]:
        """Checksum-verified record bytes of ``indices``, in that order, with many reads in flight.

        Record ranges of one shard that lie close together are fetched with one request (see
        :class:`RangeReader`); shard indexes are loaded first, concurrently.
        """
        self._gate.check()
        idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices, dtype=np.int64)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"sample indices out of range for a dataset of {n} samples")
        idx = np.where(idx < 0, idx + n, idx)
        shards = np.searchsorted(self._starts, idx, side="right") - 1
        positions = idx - self._starts[shards]
        self._load_indexes(np.unique(shards))

        def requests() -> Iterator[tuple[str, int, int]]:
            for s, p in zip(shards.tolist(), positions.tolist(), strict=True):
                off, length = self._indexes[s].record_range(p)
                yield self.manifest.shards[s].path, off, length

        for s, p, data in zip(shards.tolist(), positions.tolist(), self.reader.read_many(requests()), strict=True):
            if self.verify:
                sindex = self._indexes[s]
                off, length = sindex.record_range(p)
                data = self._checked(data, self.manifest.shards[s].path, p, off, length, int(sindex.crcs[p]))
            yield data

    def get_many(self, indices: Iterable[int]) -> Iterator[dict[str, Any]]:
        """Decoded samples of ``indices`` in order (:meth:`read_records` + :meth:`decode`)."""
        for record in self.read_records(indices):
            yield self.decode(record)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """A batch of samples at once (torch's DataLoader fetcher calls this): many reads in flight."""
        return list(self.get_many(indices))

    def prefetch(self, shards: Iterable[int]) -> None:
        """Tells the storage layer the upcoming shard access order (e.g. ``sampler.shard_order()``).

        A cached dataset (``cache_dir=``) fetches those shards ahead in that order and evicts by it; on other
        stores this only loads the shards' indexes.
        """
        self._gate.check()
        order = [int(s) for s in shards]
        set_order = getattr(self.store, "set_access_order", None)
        if set_order is not None:
            with self._gate.reading():
                set_order([self.manifest.shards[s].path for s in order])
        self._load_indexes(dict.fromkeys(order))

    def decode(self, record: bytes | memoryview, *, views: bool = False) -> dict[str, Any]:
        """Record bytes → ``{field: value}`` (``views=True``: bytes fields as zero-copy memoryviews)."""
        return self.manifest.schema.decode(record, views=views)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.decode(self.read_record(index))

    def iter_shard(self, shard: int) -> Iterator[dict[str, Any]]:
        """Streams every sample of one shard sequentially (one sequential read, checksums checked)."""
        entry = self.manifest.shards[shard]
        index = self.shard_index(shard)
        with self._gate.reading():  # the stream has a descriptor of its own: close() does not wait for it
            stream = self.store.open_stream(entry.path)
        with stream:
            yield from iter_records(stream, self.manifest.schema, index, entry.path)

    def index_table(self) -> Any:
        """The Parquet sample index as a ``pyarrow.Table`` (key, label, shard, position, offset, length).

        Raises:
            ChecksumError: the file's sha256 differs from the manifest's ``index_sha256`` (when recorded).
            FormatError: the file is not readable Parquet (e.g. truncated, in a dataset packed before the
                manifest recorded the index's checksum).
        """
        with self._gate.reading():
            data = self.store.read(self.manifest.index_path)
        self.manifest.check_index_bytes(data, self.store.url(self.manifest.index_path))
        return parquet_table(data, self.store.url(self.manifest.index_path))

    @property
    def labels(self) -> np.ndarray:
        """Label of every sample in global order (int64; from the Parquet index, loaded once).

        Raises:
            FormatError: the index has no integer, null-free ``label`` column with one row per sample.
        """
        if self._labels is None:
            self._labels = label_column(self.index_table(), len(self), self.store.url(self.manifest.index_path))
        return self._labels

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stops reader threads, closes open files and connections. Idempotent and thread-safe.

        Reads from then on raise :class:`~dataio.errors.ClosedError`. Reads in flight on other threads (``ds[i]``,
        the reader's pool, the cache) finish first: their files are closed once the last of them has returned,
        never under one. If they take longer than ``timeout`` seconds (a remote read waiting out an outage),
        close() returns and the last of them closes the files.
        """
        if not self._gate.close(self._release, timeout):
            msg = "%r: %d reads still in flight %.0f s after close(); the last one closes the files"
            log.warning(msg, self, self._gate.active, timeout)

    def _release(self) -> None:
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        self.store.close()

    def __enter__(self) -> ShardDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __copy__(self) -> ShardDataset:
        """A copy sharing the store, reader, loaded indexes and lock (all thread-safe): what each worker thread
        of ``DataLoader(worker_mode="thread")`` gets, without a reader pool per worker."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        on_fork_child(new)
        return new

    def __getstate__(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "manifest": self.manifest,
            "verify": self.verify,
            "threads": self.threads,
            "coalesce_gap": self.coalesce_gap,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        store, manifest = state.pop("store"), state.pop("manifest")
        self.__init__(store, manifest, **state)  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ShardDataset({self.root!r}, samples={len(self)}, shards={len(self.shard_sizes)})"


def open_dataset(
    url: str | os.PathLike[str],
    storage_options: dict[str, Any] | None = None,
    *,
    verify: bool = True,
    threads: int | None = None,
    coalesce_gap: int = DEFAULT_COALESCE_GAP,
    retry: RetryPolicy | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_limit: int | str | None = None,
) -> ShardDataset:
    """Opens a packed dataset.

    Args:
        url: Dataset directory (local disk, or a POSIX mount of CPFS/Lustre/NFS: read with ``os.pread``), or a
            URL prefix: ``s3://bucket/prefix`` (obstore when installed, else s3fs), ``oss://…``, ``hdfs://…``,
            ``memory://…`` (fsspec).
        storage_options: Options for URLs (endpoint, credentials, anon, …) in s3fs/fsspec spelling, plus
            ``client`` (``"auto"``, ``"obstore"``, ``"fsspec"``) for ``s3://``; never logged (docs/storage.md).
        verify: Check each sample's CRC-32 on read.
        threads: Reads in flight for batched reads (default: the backend's, 8 for POSIX, 32 for URLs).
        coalesce_gap: Bytes between two wanted ranges of a shard below which they are fetched as one read.
        retry: The retry policy of remote reads (default: :class:`~dataio.storage.RetryPolicy`'s defaults).
        cache_dir: A node-local directory shared by every process on the node: puts the shard cache in front of
            the store (shards fetched ahead in the order given to :meth:`ShardDataset.prefetch`, verified against
            the manifest's sha256, evicted by that future order: Belady; docs/cache.md).
        cache_limit: Bytes the cache may hold for this dataset, an int or a size such as ``"200GB"``
            (:mod:`dataio.units`: GB = 10⁹, GiB = 2³⁰); default no limit. Needs ``cache_dir``.

    Raises:
        FileNotFoundError: no manifest at ``url``.
        ManifestError, VersionError, ChecksumError: a malformed, unsafe, unsupported or damaged manifest.
        ImportError: the backend for the URL's protocol is missing (names the extra to install).
        TypeError, ValueError: an option of the wrong type or value.
    """
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if cache_limit is not None and cache_dir is None:
        raise TypeError("cache_limit needs cache_dir")
    limit = parse_size(cache_limit) if cache_limit is not None else None
    store = open_store(url, storage_options, retry=retry)
    manifest = load_manifest(store)
    if cache_dir is not None:
        from dataio.cache import CachedStore

        store = CachedStore(
            store,
            cache_dir,
            limit if limit is not None else 2**63 - 1,
            {s.path: (s.size, s.sha256) for s in manifest.shards},
        )
    return ShardDataset(store, manifest, verify=bool(verify), threads=threads, coalesce_gap=int(coalesce_gap))
