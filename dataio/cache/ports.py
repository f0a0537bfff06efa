"""What the single-flight download (:mod:`.flight`) and the prefetch threads (:mod:`.prefetch`) need of the cache
engine, as a Protocol: they take any object with these members (the :class:`~dataio.cache.engine.CacheEngine`),
so they need not import the engine that imports them."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from dataio.cache.fallback import Bypass
from dataio.cache.layout import CacheLayout
from dataio.cache.options import CacheOptions
from dataio.cache.spec import ShardSpec
from dataio.cache.state import CacheState
from dataio.cache.tracker import PlanTracker
from dataio.storage.base import Store

__all__ = ["EngineCore"]


class EngineCore(Protocol):
    """The members of one engine that its download and prefetch helpers use (see the engine for each)."""

    remote: Store
    layout: CacheLayout
    options: CacheOptions
    specs: Mapping[str, ShardSpec]
    by_name: Mapping[str, ShardSpec]
    tracker: PlanTracker
    state: CacheState
    bypass: Bypass

    @property
    def stop(self) -> threading.Event: ...

    def download_lock(self, name: str) -> tuple[int, float]: ...

    def next_uses(self, names: Iterable[str]) -> dict[str, tuple[int, int]]: ...

    def fetch(self, path: str, *, demand: bool, ahead: Sequence[ShardSpec] = ()) -> str: ...

    def refresh_position(self) -> None: ...
