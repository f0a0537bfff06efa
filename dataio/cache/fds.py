"""Descriptors that carry flocks, tracked so that a forked child closes its inherited copies.

A flock belongs to the open file description, which ``fork()`` shares with the child: a DataLoader worker
forked while the parent holds a download lock or a shard pin would keep that lock held after the parent
released it (a stale lock for as long as the worker lives). Every descriptor the cache locks is opened and
closed through :data:`REGISTRY`; ``fork()`` waits while one is being opened or closed, and the child closes
all of them at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

__all__ = ["REGISTRY", "FdRegistry"]


class FdRegistry:
    """The set of flock-carrying descriptors of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: set[int] = set()
        self._child_hooks: list[Callable[[], None]] = []

    def open(self, path: str, flags: int, mode: int = 0o666) -> int:
        """``os.open`` + registration, atomically with respect to ``fork()``."""
        with self._lock:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)
            self._fds.add(fd)
            return fd

    def open_with(self, opener: Callable[[], int]) -> int:
        """Registers the descriptor ``opener()`` returns, atomically with respect to ``fork()``."""
        with self._lock:
            fd = opener()
            self._fds.add(fd)
            return fd

    def close(self, fd: int) -> None:
        """Unregisters and closes ``fd`` (releasing its locks)."""
        with self._lock:
            self._fds.discard(fd)
            os.close(fd)

    def on_fork_child(self, hook: Callable[[], None]) -> None:
        """Runs ``hook`` in a forked child after the inherited descriptors are closed."""
        with self._lock:
            self._child_hooks.append(hook)

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        self._lock = threading.Lock()
        fds, self._fds = self._fds, set()
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        for hook in list(self._child_hooks):
            hook()


REGISTRY = FdRegistry()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=REGISTRY._before_fork,
        after_in_parent=REGISTRY._after_fork_parent,
        after_in_child=REGISTRY._after_fork_child,
    )
