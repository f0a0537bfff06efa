"""Node-local shard cache: shards fetched ahead of use in the sampler's order, verified, shared by every
process on the node, evicted by the known future (Belady) instead of by the past (LRU).

Floor 2: imports :mod:`dataio.format` and :mod:`dataio.storage`, never the dataset, loaders or CLI.

    policy.py    eviction policies by name (belady, lru) and a pure simulator
    locks.py     flock helpers (locks die with their holder); fds.py: fork-safe lock descriptors
    layout.py    where things live in a cache directory; the names the cache creates
    safedir.py   folders and files below the cache directory, never through a symlink, never opened blocking
    fallback.py  reads served from the remote store when the cache cannot be used (full disk, unsafe folder)
    plans.py     published future orders of live processes (Belady across processes)
    tracker.py   this process's position in its plan
    space.py     usage scan and eviction; room.py: making room for a download (demand / prefetch rules)
    fetch.py     download, verify, rename; flight.py: one download per shard per process and per node
    state.py     CacheState: everything the threads of one process share (fetches in flight, pins, errors,
                 counters), its one lock and the lock rules; nothing else edits it
    engine.py    per-process core: opening, pinning and reading shards; close; options.py: CacheOptions
    prefetch.py  background prefetch threads
    store.py     CachedStore, the Store facade
    admin.py     inspect and clear a cache directory (``dataio cache stats|clear``)

See docs/cache.md.
"""

from dataio.cache.admin import ClearReport, DatasetUsage, clear_cache, inspect_cache
from dataio.cache.fetch import Cancelled
from dataio.cache.policy import NEVER, POLICIES, Candidate, choose_victims, get_policy, simulate, simulate_misses
from dataio.cache.store import CachedStore, CacheStats

__all__ = [
    "NEVER",
    "POLICIES",
    "CacheStats",
    "CachedStore",
    "Cancelled",
    "Candidate",
    "ClearReport",
    "DatasetUsage",
    "choose_victims",
    "clear_cache",
    "get_policy",
    "inspect_cache",
    "simulate",
    "simulate_misses",
]
