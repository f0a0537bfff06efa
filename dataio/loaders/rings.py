"""Bounded hand-off rings between pipeline threads: the native lock-free ``Ring`` or its Python twin.

``make_ring(capacity, kind)`` returns ``dataio._native.Ring`` when the extension is built (``NATIVE_RINGS``),
else a :class:`PyRing` with the same API and exceptions:

- ``put(item, timeout=None) -> bool``: False when ``timeout`` seconds passed while full;
- ``get(timeout=None)``: the oldest item; ``TimeoutError`` when ``timeout`` passed while empty;
- ``try_put(item) -> bool``, ``try_get() -> (bool, item)``: never wait;
- ``close()``: idempotent; wakes every waiter. Puts raise :data:`RingClosed` from then on, gets return what is
  left and then raise :data:`RingClosed`;
- ``closed``, ``capacity`` (mpmc: rounded up to a power of two ≥ 2; spsc: as asked), ``kind``, ``len()``
  (approximate while other threads use the ring).

``kind="spsc"`` allows one putting and one getting thread at a time: a put (get) that starts while another
thread's put (get) is still waiting raises RuntimeError in both implementations; ``"mpmc"`` allows any number.
Timeouts are seconds (None: wait forever).
"""

from __future__ import annotations

import math
import operator
import threading
import time
from collections import deque
from typing import Any

try:
    from dataio import _native
except ImportError:  # not built: pure-Python paths
    _native = None

__all__ = ["MAX_CAPACITY", "NATIVE_RINGS", "PyRing", "RingClosed", "make_ring"]

NATIVE_RINGS: bool = _native is not None and hasattr(_native, "Ring")
MAX_CAPACITY = 1 << 24
_FOREVER = 3.2e8  # seconds; longer timeouts (and inf) mean "no timeout", as in the native ring

if NATIVE_RINGS:
    RingClosed: type[Exception] = _native.RingClosed
else:

    class RingClosed(Exception):  # type: ignore[no-redef]
        """A put on a closed ring, or a get on a closed ring that has been drained."""


def make_ring(capacity: int, kind: str = "mpmc", native: bool | None = None) -> Any:
    """A bounded ring: the native one when built (``native=None``), or as chosen (``native=True`` raises
    RuntimeError when the extension is missing; ``native=False`` always gives a :class:`PyRing`)."""
    if native is None:
        native = NATIVE_RINGS
    if native:
        if not NATIVE_RINGS:
            raise RuntimeError("native rings requested but dataio._native (with Ring) is not built")
        return _native.Ring(capacity, kind)
    return PyRing(capacity, kind)


def _check_capacity(capacity: Any, kind: object) -> tuple[int, str]:
    capacity = operator.index(capacity)  # ints, numpy integers (TypeError otherwise, as in the native ring)
    if not 1 <= capacity <= MAX_CAPACITY:
        raise ValueError(f"Ring capacity must be between 1 and {MAX_CAPACITY}, got {capacity}")
    if not isinstance(kind, str):
        raise TypeError(f"Ring kind must be a str ('spsc' or 'mpmc'), got {type(kind).__name__}")
    if kind not in ("spsc", "mpmc"):
        raise ValueError(f"Ring kind must be 'spsc' or 'mpmc', got {kind!r}")
    if kind == "spsc":
        return capacity, kind
    return max(2, 1 << (capacity - 1).bit_length()), kind


def _deadline(timeout: object) -> float | None:
    """Monotonic deadline for ``timeout`` seconds (None: none)."""
    if timeout is None:
        return None
    t = type(timeout)
    if t is not float and t is not int:  # like the native ring (PyFloat_AsDouble): __float__, else __index__
        if hasattr(t, "__float__"):
            timeout = float(timeout)  # type: ignore[arg-type]
        elif hasattr(t, "__index__"):
            timeout = float(operator.index(timeout))
        else:
            raise TypeError(f"timeout must be a number of seconds or None, got {t.__name__}")
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
    if timeout > _FOREVER:
        return None
    return time.monotonic() + timeout


class PyRing:
    """The Python ring: a deque and two conditions on one lock (queue.Queue's design) plus a closed flag.

    queue.Queue itself has no close: waking its blocked callers would need its private attributes, so this
    class keeps the same few lines of state itself. Same API, capacities and exceptions as the native ring.
    """

    def __init__(self, capacity: int, kind: str = "mpmc") -> None:
        self._capacity, self._kind = _check_capacity(capacity, kind)
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._spsc = self._kind == "spsc"
        self._busy = {"put": False, "get": False}  # spsc: a put / get is running (waiting) now

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<PyRing kind={self._kind!r} capacity={self._capacity} len={len(self)} closed={self._closed}>"

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Puts ``item``, waiting while full: True when stored, False when ``timeout`` passed first."""
        deadline = _deadline(timeout)
        with self._not_full:
            self._claim("put")
            try:
                while True:
                    if self._closed:
                        raise RingClosed("put on a closed Ring")
                    if len(self._items) < self._capacity:
                        self._items.append(item)
                        self._not_empty.notify()
                        return True
                    if not self._wait(self._not_full, deadline):
                        return False
            finally:
                self._busy["put"] = False

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item, waiting while empty; TimeoutError when ``timeout`` passed first."""
        deadline = _deadline(timeout)
        with self._not_empty:
            self._claim("get")
            try:
                while True:
                    if self._items:
                        item = self._items.popleft()
                        self._not_full.notify()
                        return item
                    if self._closed:
                        raise RingClosed("get on a closed and drained Ring")
                    if not self._wait(self._not_empty, deadline):
                        raise TimeoutError("Ring.get timed out (the ring stayed empty)")
            finally:
                self._busy["get"] = False

    def try_put(self, item: Any) -> bool:
        """Puts ``item`` if there is room now."""
        return self.put(item, timeout=0)

    def try_get(self) -> tuple[bool, Any]:
        """(True, item) when an item was there, else (False, None)."""
        try:
            return True, self.get(timeout=0)
        except TimeoutError:
            return False, None

    def close(self) -> None:
        """Closes the ring (idempotent) and wakes every waiter."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def _claim(self, side: str) -> None:
        """spsc: marks ``side`` ("put" / "get") busy for this call (lock held); a second thread is refused.
        (mpmc: never busy, the flag is only ever cleared.)"""
        if self._spsc:
            if self._busy[side]:
                role = "producer" if side == "put" else "consumer"
                raise RuntimeError(f"spsc Ring: two threads {side} at the same time (one {role} at a time; "
                                   "use kind='mpmc')")
            self._busy[side] = True

    @staticmethod
    def _wait(cond: threading.Condition, deadline: float | None) -> bool:
        """Waits on ``cond`` (lock held) until notified or ``deadline``; False once the deadline has passed."""
        if deadline is None:
            cond.wait()
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        cond.wait(left)
        return True
