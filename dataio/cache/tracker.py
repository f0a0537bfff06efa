"""Where this process is in its access plan, and the plans every eviction decision looks at.

The process that called ``set_access_order`` owns a plan (:class:`~dataio.cache.plans.PlanOwner`); its
first read of each shard moves the plan's position just past that shard. A copy of the store in another
process (a DataLoader worker, pickled or forked) reads *for* that plan: its first reads move a position of
its own, which it publishes beside the plan; the owner adopts the furthest one (:meth:`PlanTracker.refresh`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence

from dataio.cache.layout import CacheLayout
from dataio.cache.plans import Plan, PlanOwner, load_plans, report_progress

__all__ = ["PlanTracker"]

_PARENT_TTL = 0.1  # seconds a follower trusts its copy of the parent's plan


class PlanTracker:
    """This process's plan (owned, or followed for a parent process) and its position. Thread-safe.

    Args:
        layout: The dataset's cache layout.
        slack: How far ahead in the order a first read may be and still count as following it.
        parent_plan: Id of the plan this process reads for (set in DataLoader workers), or None.
    """

    def __init__(self, layout: CacheLayout, slack: int, parent_plan: str | None = None) -> None:
        self.layout = layout
        self.slack = slack
        self.parent_plan = parent_plan
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self.owner = PlanOwner(self.layout)
        self._followed: Plan | None = None  # our position in the parent's plan
        self._parent_at: tuple[float, Plan | None] = (-1e9, None)
        self._reported = -1e9
        self._cache: dict = {}
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"

    @property
    def plan(self) -> Plan | None:
        """The plan this process owns, at its current position (None before ``set_access_order``)."""
        return self.owner.plan

    @property
    def plan_id(self) -> str | None:
        """The plan a copy of the store in another process should read for."""
        return self.owner.id if self.owner.plan is not None else self.parent_plan

    def publish(self, names: Sequence[str]) -> None:
        """Publishes a new order (replacing the previous one) starting at position 0."""
        with self._lock:
            self.owner.publish(names)

    def _step(self, plan: Plan, name: str) -> tuple[int, int] | None:
        """``(cursor, behind)`` after a first read of ``name``: past it if it is next in the order (within
        ``slack``), else, if it was already passed, a window wide enough to count it as still in use."""
        cursor = plan.advanced(name, plan.cursor, self.slack)
        behind = plan.behind_of(name, plan.cursor)
        if cursor is not None and (behind is None or cursor - 1 - plan.cursor <= behind - 1):
            return cursor, plan.behind  # its next place is nearer than its last one: the reader moved on
        return (plan.cursor, behind) if behind is not None and behind > plan.behind else None

    def touch(self, name: str) -> bool:
        """A first read of shard ``name`` (one not open in this process); True if the owned plan changed."""
        with self._lock:
            plan = self.owner.plan
            if plan is not None:
                step = self._step(plan, name)
                return step is not None and self.owner.move(*step)
        parent = self._parent()
        if parent is None:
            return False
        with self._lock:
            mine = self._followed if self._followed is not None and self._followed.version == parent.version else parent
            mine = mine.at(max(mine.cursor, parent.cursor), max(mine.behind, parent.behind))
            step = self._step(mine, name)
            if step is None:
                return False
            self._followed = mine.at(*step)
            if time.monotonic() - self._reported < PlanOwner.MIN_INTERVAL:
                return False  # a hint: the next report carries it
            self._reported = time.monotonic()
        report_progress(self.layout, parent, step[0], self._tag, step[1])
        return False

    def _parent(self) -> Plan | None:
        """The plan this process reads for, re-read from disk at most every :data:`_PARENT_TTL` seconds."""
        if self.parent_plan is None:
            return None
        now = time.monotonic()
        if now - self._parent_at[0] >= _PARENT_TTL:
            found = next((p for p in load_plans(self.layout, self._cache) if p.id == self.parent_plan), None)
            self._parent_at = (now, found)
        return self._parent_at[1]

    def refresh(self) -> bool:
        """Adopts the furthest position other processes reported for the owned plan; True if it moved."""
        own = self.owner.plan
        if own is None:
            return False
        for p in load_plans(self.layout, self._cache):
            if p.id == own.id and p.version == own.version:
                with self._lock:
                    return self.owner.plan is own and self.owner.move(p.cursor, p.behind, publish=False)
        return False

    def plans(self) -> list[Plan]:
        """Every live plan, the owned one at its latest position."""
        with self._lock:
            self.owner.flush()
            own = self.owner.plan
        found = load_plans(self.layout, self._cache)
        if own is not None:
            found = [p.at(max(p.cursor, own.cursor), max(p.behind, own.behind)) if p.id == own.id else p for p in found]
        return found

    def after_fork_in_child(self) -> None:
        """In a forked child: follow the parent's plan instead of owning a copy of it."""
        plan_id = self.plan_id
        self.owner.forget_after_fork()
        self._reset()
        self.parent_plan = plan_id

    def close(self) -> None:
        """Withdraws the owned plan. Idempotent."""
        with self._lock:
            self.owner.close()
