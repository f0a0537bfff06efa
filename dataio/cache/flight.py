"""Single-flight fetching: each shard is downloaded at most once at a time per process and per node.

In a process, concurrent requests for one shard share one attempt (the engine's state keeps the attempts in
flight: :meth:`~dataio.cache.state.CacheState.single_flight`); across processes, the
attempt holds the shard's download lock (a flock, so a killed downloader releases it) and re-checks after
getting it whether another process finished the shard meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence

from dataio.cache.fds import REGISTRY
from dataio.cache.fetch import Cancelled, download
from dataio.cache.locks import LockTimeout
from dataio.cache.ports import EngineCore
from dataio.cache.room import reserve
from dataio.cache.spec import ShardSpec

__all__ = ["fetch"]


def fetch(e: EngineCore, path: str, *, demand: bool, ahead: Sequence[ShardSpec] = ()) -> str:
    """Makes sure ``path`` is cached, downloading it at most once per node.

    Concurrent calls in this process share one attempt (:meth:`~dataio.cache.state.CacheState.single_flight`);
    other processes wait on its download lock.

    Returns:
        ``"done"``; for a prefetch (``demand=False``) also ``"busy"`` (someone in this process is on it),
        ``"no_room"`` or ``"error"`` (kept and raised by the next read of the shard).
    """
    return e.state.single_flight(path, demand=demand, attempt=lambda: _download(e, path, demand, ahead))


def _download(e: EngineCore, path: str, demand: bool, ahead: Sequence[ShardSpec]) -> str:
    """Under the shard's download lock (waiting for another process that holds it): reserve room, download,
    verify, rename. ``"done"`` or ``"no_room"`` (a prefetch)."""
    spec = e.specs[path]
    lock_fd, waited = e.download_lock(spec.name)
    try:
        if waited:
            e.state.count(lock_waits=1)
        if e.layout.has_shard(spec.name):
            return "done"
        res = reserve(
            e.layout, spec, e.options.limit, e.options.policy, e.next_uses,
            demand=demand, ahead=ahead, stop=e.stop,
        )  # fmt: skip
        e.state.count(
            evictions=len(res.evicted),
            evicted_bytes=sum(size for _, size in res.evicted),
            over_limit=int(res.over_limit),
        )
        if res.status != "reserved":
            return "done" if res.status == "cached" else "no_room"
        download(
            e.remote, spec, res, e.layout,
            chunk_size=e.options.chunk_size, fsync=e.options.fsync, stop=e.stop,
        )  # fmt: skip
        e.state.count(downloads=1, bytes_downloaded=spec.size, prefetched=int(not demand))
        e.bypass.resumed()
        return "done"
    except LockTimeout as exc:
        raise Cancelled(str(exc)) from None
    except OSError as exc:  # a full cache disk: this read (or prefetch) goes without the cache
        e.bypass.raise_for(exc)
    finally:
        REGISTRY.close(lock_fd)
