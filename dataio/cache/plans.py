"""Published access plans: Belady's "next use" across every live process sharing a cache directory.

Each process that knows its upcoming shard order (``CachedStore.set_access_order``) publishes it as
``plans/<id>.json`` (the order and how far it has got, rewritten atomically) and holds an exclusive flock on
``plans/<id>.alive`` for as long as it lives. A plan whose ``.alive`` lock is free belongs to a dead process:
it is ignored and deleted by whoever notices. Processes that read on behalf of a plan without owning it
(DataLoader workers holding a pickled or forked copy of the store) report their progress in
``plans/<id>.<pid>-<tag>.pos``; a plan's position is the furthest any of them has got.

A shard's next use is the smallest distance, over all live plans, from the plan's position to the shard's
next place in the plan's order (in shard accesses; processes are assumed to progress at similar rates).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dataio.cache.fallback import disk_full
from dataio.cache.fds import REGISTRY
from dataio.cache.layout import CacheLayout, owned
from dataio.cache.locks import is_locked_at, open_locked
from dataio.cache.policy import NEVER
from dataio.cache.safedir import UnsafeCacheEntry, lstat_at, read_json_at, unlink_at, write_json_at

__all__ = ["Plan", "PlanOwner", "load_plans", "next_uses", "report_progress"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """A process's future shard accesses.

    Attributes:
        id: Plan id (unique per store instance).
        version: Bumped each time the owner sets a new order.
        order: Cached shard names in access order (repeats allowed, e.g. several epochs).
        cursor: Entries of ``order`` already reached (the next access is ``order[cursor]``).
        behind: How far behind the cursor shards are still being read (learnt from the reads): the order
            lists first uses, and a shard stays in use for a while after its first use (a shuffle buffer
            mixes neighbouring shards; a block window spans many). Entries in ``[cursor - behind, cursor)``
            count as in use now (next use 0); the last entry reached always does.
    """

    id: str
    version: int
    order: tuple[str, ...]
    cursor: int = 0
    behind: int = 0
    positions: dict[str, list[int]] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.cursor <= len(self.order):
            raise ValueError(f"plan {self.id}: cursor {self.cursor} outside [0, {len(self.order)}]")
        if self.behind < 0:
            raise ValueError(f"plan {self.id}: behind must be >= 0, got {self.behind}")
        if self.positions is None:
            positions: dict[str, list[int]] = {}
            for i, name in enumerate(self.order):
                positions.setdefault(name, []).append(i)
            object.__setattr__(self, "positions", positions)

    def at(self, cursor: int, behind: int | None = None) -> Plan:
        """The same plan at another position (shares the occurrence index)."""
        cursor = min(max(cursor, 0), len(self.order))
        return Plan(
            self.id, self.version, self.order, cursor, self.behind if behind is None else behind, self.positions
        )

    def next_index(self, name: str, cursor: int | None = None) -> int | None:
        """Index of the first occurrence of ``name`` at or after ``cursor`` (default: the plan's), or None."""
        occ = self.positions.get(name)  # type: ignore[union-attr]
        if not occ:
            return None
        c = self.cursor if cursor is None else cursor
        k = bisect.bisect_left(occ, c)
        return occ[k] if k < len(occ) else None

    def distances(self, name: str) -> tuple[int, int]:
        """Accesses until the next and the next-but-one use of ``name`` (:data:`~dataio.cache.policy.NEVER`
        if none); a shard within :attr:`behind` of the cursor is in use now (distance 0)."""
        occ = self.positions.get(name)  # type: ignore[union-attr]
        if not occ:
            return NEVER, NEVER
        c = self.cursor
        k = bisect.bisect_left(occ, c)
        ahead = [occ[j] - c for j in (k, k + 1) if j < len(occ)] + [NEVER, NEVER]
        if k > 0 and occ[k - 1] >= c - max(self.behind, 1):  # the last shard reached is being read
            return 0, ahead[0]
        return ahead[0], ahead[1]

    def distance(self, name: str) -> int:
        """Accesses until ``name`` is next used (0: in use now), :data:`~dataio.cache.policy.NEVER` if never."""
        return self.distances(name)[0]

    def behind_of(self, name: str, cursor: int) -> int | None:
        """How far behind ``cursor`` the last occurrence of ``name`` before it is (None if there is none)."""
        occ = self.positions.get(name)  # type: ignore[union-attr]
        k = bisect.bisect_left(occ, cursor) if occ else 0
        return cursor - occ[k - 1] if k > 0 else None

    def advanced(self, name: str, cursor: int, slack: int) -> int | None:
        """The cursor after a first read of ``name`` at ``cursor``: just past its next occurrence if that is at
        most ``slack`` entries ahead (readers may run slightly out of order); None if the read is off-plan."""
        idx = self.next_index(name, cursor)
        if idx is None or idx - cursor > slack:
            return None
        return idx + 1

    def to_json(self) -> dict[str, object]:
        names = sorted(set(self.order))
        number = {n: i for i, n in enumerate(names)}
        return {
            "id": self.id,
            "version": self.version,
            "names": names,
            "order": [number[n] for n in self.order],
            "cursor": self.cursor,
            "pid": os.getpid(),
        }

    @classmethod
    def from_json(cls, doc: object) -> Plan | None:
        """Parses a plan document; None if it is malformed (a plan is only a hint)."""
        try:
            names = doc["names"]  # type: ignore[index]
            order = tuple(names[i] for i in doc["order"])  # type: ignore[index]
            return cls(str(doc["id"]), int(doc["version"]), order, int(doc["cursor"]))  # type: ignore[index]
        except (KeyError, TypeError, ValueError, IndexError):
            return None


class PlanOwner:
    """This process's published plan: the ``.alive`` lock, the order file and position updates.

    A plan is a hint: if it cannot be written (the cache disk is full, :func:`~dataio.cache.fallback.disk_full`)
    it is kept in memory, a warning names the folder, and it is written by a later :meth:`flush`.

    Not thread-safe: the store calls it under its own lock.
    """

    #: Position updates are written at most this often (seconds); :meth:`flush` writes the latest one.
    MIN_INTERVAL = 0.02

    def __init__(self, layout: CacheLayout, plan_id: str | None = None) -> None:
        self.layout = layout
        self.id = plan_id or uuid.uuid4().hex[:16]
        self._alive_fd: int | None = None
        self.plan: Plan | None = None
        self._written = (0, 0)  # (cursor, behind) last published
        self._last_write = 0.0
        self._unpublished = False  # the order could not be written (disk full): written by the next flush
        self._warned = False

    @property
    def json_path(self) -> str:
        return os.path.join(self.layout.plans_dir, f"{self.id}.json")

    def publish(self, order: Sequence[str], cursor: int = 0) -> Plan:
        """Publishes a new order (bumping the version) and returns it."""
        version = 1 if self.plan is None else self.plan.version + 1
        self.plan = Plan(self.id, version, tuple(order), cursor)
        self._written = (cursor, 0)
        self._unpublished = True
        self._write_order()
        return self.plan

    def _write_order(self) -> None:
        try:
            if self._alive_fd is None:
                alive = os.path.join(self.layout.plans_dir, f"{self.id}.alive")
                got = open_locked(alive, True, create=True, below=self.layout.cache_dir)
                if got is None:  # pragma: no cover - create=True never returns None
                    raise OSError(f"cannot lock the plan {self.id}")
                self._alive_fd = got[0]
            with self.layout.folder("plans", create=True) as dfd:
                write_json_at(dfd, f"{self.id}.json", self.plan.to_json())  # type: ignore[union-attr]
        except OSError as exc:
            if isinstance(exc, UnsafeCacheEntry):
                why = f"{exc}"
            elif disk_full(exc):
                why = (
                    f"{self.layout.plans_dir}: the cache disk is full ({exc.strerror}): free space there, lower "
                    "cache_limit or use another cache_dir"
                )
            else:
                raise
            if not self._warned:
                self._warned = True
                log.warning("%s; this process's access order is not published (a hint for eviction) meanwhile", why)
            return
        self._unpublished = self._warned = False

    def move(self, cursor: int, behind: int = 0, *, publish: bool = True) -> bool:
        """Moves the current order's position forward and widens its in-use window (True if either
        changed); published now, or by the next :meth:`flush` if the last update was written less than
        :attr:`MIN_INTERVAL` ago. ``publish=False``: a position read from the plan's own progress files."""
        if self.plan is None or (cursor <= self.plan.cursor and behind <= self.plan.behind):
            return False
        self.plan = self.plan.at(max(cursor, self.plan.cursor), max(behind, self.plan.behind))
        if not publish:
            self._written = (self.plan.cursor, self.plan.behind)
        elif time.monotonic() - self._last_write >= self.MIN_INTERVAL:
            self.flush()
        return True

    def flush(self) -> None:
        """Publishes the position if it changed since it was last written (and the order, if it could not be
        written before)."""
        if self.plan is None:
            return
        if self._unpublished:
            if time.monotonic() - self._last_write < self.MIN_INTERVAL:
                return
            self._last_write = time.monotonic()
            self._write_order()
            return
        if self._alive_fd is None or (self.plan.cursor, self.plan.behind) == self._written:
            return
        report_progress(self.layout, self.plan, self.plan.cursor, "owner", self.plan.behind)
        self._written = (self.plan.cursor, self.plan.behind)
        self._last_write = time.monotonic()

    def close(self) -> None:
        """Withdraws the plan (idempotent)."""
        if self._alive_fd is None:
            return
        with contextlib.suppress(FileNotFoundError, UnsafeCacheEntry), self.layout.folder("plans") as dfd:
            _remove_plan(dfd, self.id)
        REGISTRY.close(self._alive_fd)
        self._alive_fd = None

    def forget_after_fork(self) -> None:
        """In a forked child (inherited descriptors are closed by the registry): leave the parent's plan alone."""
        self._alive_fd = None
        self.plan = None


def _remove_plan(dfd: int, plan_id: str) -> None:
    """Deletes the files of a plan (names the cache creates only; its ``.alive`` last)."""
    names = [n for n in os.listdir(dfd) if n.startswith(plan_id + ".") and owned("plans", n)]
    for n in sorted(names, key=lambda n: n == f"{plan_id}.alive"):
        unlink_at(dfd, n)


def report_progress(layout: CacheLayout, plan: Plan, cursor: int, tag: str, behind: int = 0) -> None:
    """Publishes how far a reader of ``plan`` has got (atomically): its position and in-use window. A hint:
    skipped when the cache disk is full or the plans folder is unusable."""
    try:
        with layout.folder("plans", create=True) as dfd:
            write_json_at(dfd, f"{plan.id}.{tag}.pos", {"version": plan.version, "cursor": cursor, "behind": behind})
    except UnsafeCacheEntry:
        return
    except OSError as exc:
        if not disk_full(exc):
            raise


_Cache = dict[str, tuple[tuple[int, int], Plan | None]]


def load_plans(layout: CacheLayout, cache: _Cache | None = None) -> list[Plan]:
    """Every live plan with its furthest reported position; plans of dead processes are deleted.

    Only names the cache creates are read; only regular files are opened (never blocking, never through a
    symlink): a FIFO or symlink planted in ``plans/`` is skipped. A missing or unusable ``plans/`` has no plans.

    Args:
        layout: The dataset's cache layout.
        cache: Optional dict reused between calls: parsed plans keyed by path, re-read when they change.
    """
    cache = {} if cache is None else cache
    try:
        with layout.folder("plans") as dfd:
            return _load(dfd, cache)
    except (FileNotFoundError, UnsafeCacheEntry):
        return []


def _load(dfd: int, cache: _Cache) -> list[Plan]:
    names = [n for n in os.listdir(dfd) if owned("plans", n)]
    positions: dict[str, list[tuple[int, int, int]]] = {}
    for n in names:
        if n.endswith(".pos"):
            doc = read_json_at(dfd, n)
            with contextlib.suppress(AttributeError, KeyError, TypeError, ValueError):
                entry = (int(doc["version"]), int(doc["cursor"]), int(doc.get("behind", 0)))
                positions.setdefault(n.split(".", 1)[0], []).append(entry)
    plans = []
    for n in names:
        if not n.endswith(".json"):
            continue
        plan_id = n[: -len(".json")]
        alive = lstat_at(dfd, f"{plan_id}.alive")
        if alive is not None and not stat.S_ISREG(alive.st_mode):
            continue  # not ours: left alone
        if alive is None or not is_locked_at(dfd, f"{plan_id}.alive"):
            _remove_plan(dfd, plan_id)  # dead owner (or a half-withdrawn plan)
            cache.pop(plan_id, None)
            continue
        plan = _parse_cached(dfd, n, plan_id, cache)
        if plan is None:
            continue
        reported = [(c, b) for v, c, b in positions.get(plan_id, []) if v == plan.version]
        if reported:
            plan = plan.at(max(plan.cursor, *(c for c, _ in reported)), max(plan.behind, *(b for _, b in reported)))
        plans.append(plan)
    return plans


def _parse_cached(dfd: int, name: str, plan_id: str, cache: _Cache) -> Plan | None:
    st = lstat_at(dfd, name)
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    stamp = (st.st_ino, st.st_mtime_ns)
    hit = cache.get(plan_id)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    plan = Plan.from_json(read_json_at(dfd, name))
    cache[plan_id] = (stamp, plan)
    return plan


def next_uses(plans: Iterable[Plan], names: Iterable[str]) -> dict[str, tuple[int, int]]:
    """For each name, the distances to its next and next-but-one use over all plans together
    (:data:`~dataio.cache.policy.NEVER` where there is none)."""
    plans = list(plans)
    out = {}
    for name in names:
        found = sorted(d for p in plans for d in p.distances(name))
        out[name] = (found[0], found[1]) if len(found) >= 2 else (NEVER, NEVER)
    return out
