"""ReadGate: a count of the reads in flight, so that ``close()`` never closes a file under a read.

Every read of an object that owns file descriptors or sessions (a :class:`~dataio.dataset.ShardDataset`) runs
inside ``with gate.reading():``. ``gate.close(release)`` refuses new reads from then on (they raise
:class:`~dataio.errors.ClosedError` naming the object), waits until the reads in flight have left, and only then
calls ``release`` (which closes the descriptors). Without it a ``pread`` on another thread could meet a closed
descriptor (EBADF) or, worse, one whose number another file has taken meanwhile (the wrong file's bytes).

If the reads in flight do not finish within the timeout (a remote read waiting out an outage), ``close()``
returns False and ``release`` runs when the last of them leaves: the descriptors are still never closed under a
read, and never leaked.

Lock rule: one condition, held only to count; ``release`` runs without it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dataio.errors import ClosedError

__all__ = ["ReadGate"]


class ReadGate:
    """Counts reads in flight; see the module docstring.

    Args:
        name: What the gate guards, for the error of a read after close (e.g. ``"dataset /data/in1k"``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._closing = False
        self._released = False
        self._pending: Callable[[], None] | None = None  # release, when close() timed out

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (reads are refused from then on)."""
        return self._closing

    @property
    def active(self) -> int:
        """Reads in flight now."""
        with self._cond:
            return self._active

    def check(self) -> None:
        """Raises :class:`ClosedError` if the gate is closed."""
        if self._closing:
            raise self._error()

    def _error(self) -> ClosedError:
        return ClosedError(f"{self.name} is closed: no reads after close(); open it again to read")

    def reading(self) -> ReadGate:
        """``with gate.reading():`` around one read; raises :class:`ClosedError` after ``close()``.

        The gate is its own context manager (no generator per read: this is on every sample's path)."""
        return self

    def __enter__(self) -> None:
        with self._cond:
            if self._closing:
                raise self._error()
            self._active += 1

    def __exit__(self, *exc: object) -> None:
        release = None
        with self._cond:
            self._active -= 1
            if self._active == 0:
                self._cond.notify_all()
                release, self._pending = self._pending, None
                self._released = self._released or release is not None
        if release is not None:
            release()

    def close(self, release: Callable[[], None], timeout: float) -> bool:
        """Refuses new reads, waits up to ``timeout`` seconds for those in flight, then calls ``release``.

        Idempotent: ``release`` runs once over all calls. Returns True if it has run (now or by an earlier
        call), False if reads are still in flight after ``timeout``: the last of them runs it.
        """
        with self._cond:
            self._closing = True
            if self._released:
                return True
            if not self._cond.wait_for(lambda: self._active == 0, timeout):
                self._pending = release
                return False
            self._released = True
            self._pending = None
        release()
        return True

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent's reads in flight do not exist here; a fresh condition."""
        self._cond = threading.Condition(threading.Lock())
        self._active = 0
        self._pending = None
        if self._closing:
            self._released = True
