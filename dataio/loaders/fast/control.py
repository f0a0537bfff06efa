"""The life of one epoch's stage threads: start them, stop them, fail the epoch, shut it down.

:class:`EpochControl` knows threads, the hand-off rings to close and what to do once the last thread has left;
it knows nothing of batches or decoding. No stage thread holds a reference to the iterator (only to the control
and the objects its stage uses), so an iterator dropped mid-epoch is garbage-collected and its finalizer stops
the threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

__all__ = ["EpochControl"]


class _Closable(Protocol):
    def close(self) -> None: ...


class EpochControl:
    """Stop, fail, start a thread, shut down (thread-safe).

    Args:
        rings: The epoch's hand-off rings: stopping closes them, which wakes every thread waiting in one.
        on_idle: Called once, when the epoch has stopped and no stage thread is left (e.g. the batch buffers go
            back to the pool: none is being written any more).
    """

    def __init__(self, rings: Sequence[_Closable], on_idle: Callable[[], None]) -> None:
        self.stop = threading.Event()
        self._rings = tuple(rings)
        self._on_idle = on_idle
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._live = 0
        self._released = False

    @property
    def error(self) -> BaseException | None:
        """The first exception of a stage thread (re-raised by the consumer with its traceback), or None."""
        return self._error

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            return list(self._threads)

    @property
    def live(self) -> int:
        """Stage threads started and not yet finished."""
        with self._lock:
            return self._live

    @property
    def released(self) -> bool:
        """Whether ``on_idle`` has run."""
        with self._lock:
            return self._released

    def fail(self, exc: BaseException) -> None:
        """Records ``exc`` (the first one wins) and stops the epoch."""
        with self._lock:
            if self._error is None:
                self._error = exc
        self.stop.set()
        self._close_rings()

    def start(self, target: Callable[..., None], name: str, *args: Any) -> None:
        """Runs ``target(*args)`` on a daemon thread ``dataio-fast-<name>``; an exception fails the epoch."""
        t = threading.Thread(target=self._run, args=(target, *args), name=f"dataio-fast-{name}", daemon=True)
        with self._lock:
            self._live += 1
            self._threads.append(t)
        t.start()

    def shutdown(self, join: bool) -> None:
        """Stops the epoch (waiting up to 5 s per thread when ``join``); ``on_idle`` runs once none is left.
        Idempotent; safe from a finalizer (``join=False`` never blocks)."""
        self.stop.set()
        self._close_rings()
        if join:
            for t in self.threads:
                if t is not threading.current_thread():
                    t.join(timeout=5)
        with self._lock:
            idle = self._live == 0
        if idle:
            self._release()

    def _run(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:
            self.fail(exc)
        finally:
            with self._lock:
                self._live -= 1
                last = self._live == 0
            if last and self.stop.is_set():
                self._release()

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._on_idle()

    def _close_rings(self) -> None:
        for ring in self._rings:
            ring.close()
