"""Real remote stores for the cache tests (LocalStore subclasses, no mocks) and child-process entry points.

Kept out of the test modules so that spawned children import only this and dataio.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from dataio.cache import CachedStore
from dataio.format.manifest import Manifest
from dataio.storage import LocalStore


class CountingStore(LocalStore):
    """A LocalStore that records the bytes read per path and the order in which paths were first read."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.bytes_read: Counter[str] = Counter()
        self.first_reads: list[str] = []
        self._count_lock = threading.Lock()

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with self._count_lock:
            if path not in self.bytes_read:
                self.first_reads.append(path)
            self.bytes_read[path] += length
        return super().read_range(path, offset, length)


class HangingStore(LocalStore):
    """Serves ``hang_path`` up to its first chunk, then sets ``stuck`` and blocks forever (until killed)."""

    def __init__(self, root: str, hang_path: str, stuck: Any) -> None:
        super().__init__(root)
        self.hang_path = hang_path
        self.stuck = stuck

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        if path == self.hang_path and offset > 0:
            self.stuck.set()
            threading.Event().wait()
        return super().read_range(path, offset, length)


def shard_table(root: str | Path) -> dict[str, tuple[int, str]]:
    """``{shard path: (size, sha256)}`` from the dataset's manifest, as open_dataset passes it."""
    manifest = Manifest.loads((Path(root) / "manifest.json").read_bytes())
    return {s.path: (s.size, s.sha256) for s in manifest.shards}


def verify_cache_dir(cache_dir: str | Path, shards: dict[str, tuple[int, str]]) -> dict[str, int]:
    """Checks every file under each dataset's data/ against the manifest; returns counts of what was found."""
    by_name = {f"{p}.{sha[:16]}": (size, sha) for p, (size, sha) in shards.items()}
    found = {"shards": 0, "temp": 0}
    for data in Path(cache_dir).glob("*/data"):
        for f in data.rglob("*"):
            if f.is_file():
                size, sha = by_name[f.relative_to(data).as_posix()]
                blob = f.read_bytes()
                if len(blob) != size or hashlib.sha256(blob).hexdigest() != sha:
                    raise AssertionError(f"torn or wrong cached shard {f}")
                found["shards"] += 1
    found["temp"] = sum(1 for t in Path(cache_dir).glob("*/tmp/*") if t.is_file())
    return found


def hang_mid_download(root: str, cache_dir: str, hang_path: str, stuck: Any) -> None:
    """Child: starts downloading ``hang_path`` and blocks after its first chunk (holding its download lock)."""
    shards = shard_table(root)
    store = CachedStore(HangingStore(root, hang_path, stuck), cache_dir, 10**9, shards, prefetch=0, chunk_size=4096)
    store.read_range(hang_path, 0, 16)


def read_everything(root: str, cache_dir: str, start: Any, out: Any) -> None:
    """Child: waits for ``start``, reads every shard through the cache, reports stats and a digest."""
    shards = shard_table(root)
    store = CachedStore(LocalStore(root), cache_dir, 10**9, shards, prefetch=0)
    start.wait(30)
    digests = {p: hashlib.sha256(store.read(p)).hexdigest() for p in sorted(shards)}
    ok = all(digests[p] == shards[p][1] for p in shards)
    out.put(json.dumps({"ok": ok, "stats": store.stats().to_dict()}))
    store.close()


def rerun_check(root: str, cache_dir: str, out: Any) -> None:
    """Child (a rerun): everything is cached and verified; reading it downloads nothing."""
    shards = shard_table(root)
    store = CachedStore(LocalStore(root), cache_dir, 10**9, shards, prefetch=0)
    ok = all(hashlib.sha256(store.read(p)).hexdigest() == shards[p][1] for p in shards)
    out.put(json.dumps({"ok": ok, "stats": store.stats().to_dict(), "found": verify_cache_dir(cache_dir, shards)}))
    store.close()


def forked_child_waits(ready: Any, release: Any) -> None:
    """Forked child: holds only what it inherited, until released."""
    ready.set()
    release.wait(30)


def publish_plan_and_wait(root: str, cache_dir: str, ready: Any) -> None:
    """Child: publishes an access order, then waits to be killed."""
    shards = shard_table(root)
    store = CachedStore(LocalStore(root), cache_dir, 10**9, shards, prefetch=0)
    store.set_access_order(sorted(shards)[:2])
    ready.set()
    threading.Event().wait()
