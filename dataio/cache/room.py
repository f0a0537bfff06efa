"""Making room for one download in one dataset's cache directory, under ``cache.lock``.

The usage on disk is scanned, victims are ranked by the eviction policy and evicted unless in use, and the
download's temp file is created at its full size (a reservation other downloaders see) before the lock is
released; the download itself runs without it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from dataio.cache.fds import REGISTRY
from dataio.cache.layout import CacheLayout
from dataio.cache.locks import hold, try_lock_fd
from dataio.cache.policy import NEVER, Candidate, get_policy
from dataio.cache.safedir import unlink_at
from dataio.cache.space import Resident, Usage, evict, scan
from dataio.cache.spec import ShardSpec

__all__ = ["NextUses", "Reservation", "reserve"]


@dataclass(frozen=True)
class Reservation:
    """What :func:`reserve` did.

    Attributes:
        status: ``"reserved"`` (``fd``/``tmp`` are the locked temp file to download into), ``"cached"``
            (someone already finished this shard) or ``"no_room"`` (a prefetch that had to wait).
        evicted: ``(name, bytes)`` of each shard evicted for it.
        over_limit: A demand fetch that had to go over the limit.
    """

    status: str
    fd: int = -1
    tmp: str = ""
    evicted: tuple[tuple[str, int], ...] = ()
    over_limit: bool = False

    def __post_init__(self) -> None:
        if self.status not in ("reserved", "cached", "no_room"):
            raise ValueError(f"bad reservation status {self.status!r}")


NextUses = Callable[[Iterable[str]], dict[str, tuple[int, int]]]


def reserve(
    layout: CacheLayout,
    spec: ShardSpec,
    limit: int,
    policy: str,
    next_uses: NextUses,
    *,
    demand: bool,
    ahead: Sequence[ShardSpec] = (),
    stop: threading.Event | None = None,
) -> Reservation:
    """Makes room for ``spec`` under ``cache.lock`` and creates its temp file (unless it is already cached,
    or a prefetch finds no room: see :func:`_room_for_prefetch`).

    ``next_uses(names)`` gives each shard's distances to its next and next-but-one use over every live plan.
    A demand fetch (``demand=True``) is described in :func:`_room_for_demand`, a prefetch in
    :func:`_room_for_prefetch`.
    """
    with hold(layout.global_lock, stop=stop, below=layout.cache_dir):
        usage = scan(layout)
        if any(r.name == spec.name for r in usage.residents):
            return Reservation("cached")
        if demand:
            evicted, over = _room_for_demand(layout, usage, spec, limit, policy, next_uses)
        else:
            evicted, ok = _room_for_prefetch(layout, usage, spec, limit, policy, next_uses, ahead)
            if not ok:
                return Reservation("no_room", evicted=tuple(evicted))
            over = False
        return _create_temp(layout, spec, tuple(evicted), over)


def _room_for_demand(
    layout: CacheLayout, usage: Usage, spec: ShardSpec, limit: int, policy: str, next_uses: NextUses
) -> tuple[list[tuple[str, int]], bool]:
    """A read is waiting: evict in the policy's order (Belady: furthest next use first; never a shard in use)
    until the shard fits. Returns the evicted ``(name, bytes)`` and whether the limit had to be exceeded
    (every other shard in use).

    A shard bigger than the limit evicts only other such shards: it is downloaded, served and goes first.
    """
    free = limit - usage.total
    evicted: list[tuple[str, int]] = []
    if spec.size > limit:
        for r in usage.residents:
            if r.size > limit and evict(layout, r.name):
                evicted.append((r.name, r.size))
        return evicted, True
    target = spec.size
    if free >= target:
        return evicted, False
    uses = next_uses([*(r.name for r in usage.residents), spec.name])
    cands = [
        Candidate(r.name, r.size, NEVER, -1)
        if r.size > limit
        else Candidate(r.name, r.size, uses[r.name][0], r.mtime_ns)
        for r in usage.residents
    ]
    for cand in get_policy(policy)(cands):
        if free >= target:
            break
        if evict(layout, cand.name):
            free += cand.size
            evicted.append((cand.name, cand.size))
    return evicted, free < spec.size


def _room_for_prefetch(
    layout: CacheLayout,
    usage: Usage,
    spec: ShardSpec,
    limit: int,
    policy: str,
    next_uses: NextUses,
    ahead: Sequence[ShardSpec],
) -> tuple[list[tuple[str, int]], bool]:
    """Room for a prefetch, only if it costs no download that Belady would not make anyway.

    The shard must be among the nearest-needed ``limit`` bytes (else Belady would evict it again before its
    use). Free space is used first. Beyond it, a shard is evicted only if it is the one Belady would evict
    when this shard is needed: ranked by their next use *as of that moment* (a shard read before then counts
    with its next-but-one use); if the top of that ranking is read before this shard or is in use, the
    prefetch waits until it has been read (in steady state: the prefetcher replaces the shard the reader
    just left). The room also covers ``ahead``, the uncached shards needed before this one, so prefetching
    stays in order. Under ``lru`` a prefetch only uses free space. Returns the evicted ``(name, bytes)``
    and whether there is room now.
    """
    free = limit - usage.total
    need = spec.size
    if ahead:
        cached = {r.name for r in usage.residents}
        tags = {t[: len(layout.temp_tag(""))] for t in usage.temp_names}
        need += sum(a.size for a in ahead if a.name not in cached and layout.temp_tag(a.name) not in tags)
    evicted: list[tuple[str, int]] = []
    if policy == "lru":
        return evicted, free >= need
    if need > limit:
        return evicted, False
    uses = next_uses([*(r.name for r in usage.residents), spec.name])
    mine = uses[spec.name][0]
    if need + sum(r.size for r in usage.residents if uses[r.name][0] <= mine) > limit:
        return evicted, False  # too far ahead: it would be evicted again before it is read
    if free >= need:
        return evicted, True

    def then(r: Resident) -> int:  # next use as of the moment this shard is needed
        first, second = uses[r.name]
        return NEVER if r.size > limit else second if first <= mine else first

    def rank(r: Resident) -> tuple[int, bool, int, int, str]:  # ties: a shard that can go now first
        return -then(r), uses[r.name][0] <= mine, r.mtime_ns, -r.size, r.name

    for r in sorted(usage.residents, key=rank):
        if free >= need:
            break
        if r.size <= limit and uses[r.name][0] <= mine:
            break  # Belady would evict a shard that is read before this one: after that read
        if not evict(layout, r.name):
            break  # Belady's choice is in use: wait until it is not
        free += r.size
        evicted.append((r.name, r.size))
    return evicted, free >= need


def _create_temp(layout: CacheLayout, spec: ShardSpec, evicted: tuple[tuple[str, int], ...], over: bool) -> Reservation:
    """The locked temp file at full size: a reservation every scan counts from now on."""
    tmp = layout.new_temp(spec.name)
    leaf = os.path.basename(tmp)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with layout.folder("tmp", create=True) as dfd:
        fd = REGISTRY.open_with(lambda: os.open(leaf, flags, 0o644, dir_fd=dfd))
        try:
            if not try_lock_fd(fd, True):  # pragma: no cover - a fresh unique file
                raise OSError(f"cannot lock the new temp file {tmp}")
            os.ftruncate(fd, spec.size)
        except BaseException:
            REGISTRY.close(fd)
            unlink_at(dfd, leaf)
            raise
    return Reservation("reserved", fd, tmp, evicted, over)
