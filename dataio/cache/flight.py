"""Single-flight fetching: each shard is downloaded at most once at a time per process and per node.

In a process, concurrent requests for one shard share one attempt (a future); across processes, the
attempt holds the shard's download lock (a flock, so a killed downloader releases it) and re-checks after
getting it whether another process finished the shard meanwhile.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

from dataio.cache.fds import REGISTRY
from dataio.cache.fetch import Cancelled, ShardSpec, download
from dataio.cache.locks import LockTimeout, open_locked
from dataio.cache.room import reserve

if TYPE_CHECKING:
    from dataio.cache.engine import CacheEngine

__all__ = ["fetch"]


def fetch(e: CacheEngine, path: str, *, demand: bool, ahead: Sequence[ShardSpec] = ()) -> str:
    """Makes sure ``path`` is cached, downloading it at most once per node.

    Concurrent calls in this process share one attempt; other processes wait on its download lock.

    Returns:
        ``"done"``; for a prefetch (``demand=False``) also ``"busy"`` (someone in this process is on it),
        ``"no_room"`` or ``"error"`` (kept and raised by the next read of the shard).
    """
    while True:
        with e.lock:
            fut = e.inflight().get(path)
            mine = fut is None
            if mine:
                fut = e.inflight()[path] = Future()
        if mine:
            break
        if not demand:
            return "busy"
        while not fut.done():  # type: ignore[union-attr]
            if e.stop.wait(0.01):
                raise Cancelled(f"cache of {e.remote.root} closed while waiting for {path}")
        if fut.exception() is not None:  # type: ignore[union-attr]
            with e.lock:
                e.errors.pop(path, None)  # delivered here; a later read tries again
        if fut.result() == "done":  # type: ignore[union-attr]
            return "done"
    try:
        ok = _download(e, path, demand, ahead)
    except Cancelled as exc:
        _finish(e, path, fut, exc=exc)
        raise
    except BaseException as exc:
        if not demand:  # a prefetch failed: the next read of this shard raises the error
            with e.lock:
                e.errors[path] = exc
                e.counts["errors"] += 1
        _finish(e, path, fut, exc=exc)
        if demand:
            raise
        return "error"
    _finish(e, path, fut, ok=ok)
    return ok


def _finish(e: CacheEngine, path: str, fut: Future[str], ok: str = "", exc: BaseException | None = None) -> None:
    """Ends this process's attempt: the next caller starts a new one; waiters get the result or error."""
    with e.lock:
        e.inflight().pop(path, None)
        if ok != "no_room":  # something changed: the prefetcher may look again
            e.gen += 1
        e.changed.notify_all()
    if exc is None:
        fut.set_result(ok)
    else:
        fut.set_exception(exc)


def _download(e: CacheEngine, path: str, demand: bool, ahead: Sequence[ShardSpec]) -> str:
    """Under the shard's download lock (waiting for another process that holds it): reserve room, download,
    verify, rename. ``"done"`` or ``"no_room"`` (a prefetch)."""
    spec = e.specs[path]
    got = open_locked(e.layout.download_lock(spec.name), True, create=True, stop=e.stop)
    if got is None:  # pragma: no cover - create=True never returns None
        raise OSError(f"cannot lock {e.layout.download_lock(spec.name)}")
    lock_fd, waited = got
    try:
        if waited:
            with e.lock:
                e.counts["lock_waits"] += 1
        if os.path.exists(e.layout.data_path(spec.name)):
            return "done"
        res = reserve(
            e.layout, spec, e.options.limit, e.options.policy, e.next_uses,
            demand=demand, ahead=ahead, stop=e.stop,
        )  # fmt: skip
        with e.lock:
            e.counts["evictions"] += len(res.evicted)
            e.counts["evicted_bytes"] += sum(size for _, size in res.evicted)
            e.counts["over_limit"] += res.over_limit
        if res.status != "reserved":
            return "done" if res.status == "cached" else "no_room"
        download(
            e.remote, spec, res, e.layout,
            chunk_size=e.options.chunk_size, fsync=e.options.fsync, stop=e.stop,
        )  # fmt: skip
        with e.lock:
            e.counts["downloads"] += 1
            e.counts["bytes_downloaded"] += spec.size
            e.counts["prefetched"] += not demand
        return "done"
    except LockTimeout as exc:
        raise Cancelled(str(exc)) from None
    finally:
        REGISTRY.close(lock_fd)
