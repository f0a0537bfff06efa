"""Objects that own threads, locks or client sessions, made usable again in a forked child.

``fork()`` copies only the thread that calls it. In the child, a lock that another thread held stays locked
forever, a thread pool keeps its bookkeeping but none of its threads (work submitted to it never runs: torch's
worker processes hung on a dataset that had served a batch), and an async client keeps the parent's event-loop
thread and sockets. An object that owns such state registers with :func:`on_fork_child`; right after a fork,
in the child, its ``_after_fork_in_child()`` runs (``os.register_at_fork``) and replaces that state: fresh
locks, and pools or sessions dropped so that they are recreated lazily on first use. The hook must not touch
the inherited state (its locks may be held by threads that no longer exist) and must not do IO.

Spawn and forkserver workers get a pickled copy instead: each class's ``__getstate__`` leaves such state out
and ``__setstate__`` recreates it.

Imports are locks too: CPython keeps a lock per module being imported, and a child forked while another thread
was importing a module waits forever on that module's lock when it imports the module itself. So nothing dataio
runs on its worker threads may import lazily: modules are imported at import time, and the submodules numpy
imports on first use of a function (``numpy.ma`` on the first ``np.unique``, ``numpy.random``) are imported here.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

import numpy.ma  # see the module docstring: never imported lazily on a worker thread
import numpy.random  # noqa: F401

__all__ = ["ForkAware", "on_fork_child"]


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_OBJECTS: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def on_fork_child(obj: ForkAware) -> None:
    """Calls ``obj._after_fork_in_child()`` in every process forked from this one while ``obj`` lives.

    Registration is weak (it does not keep ``obj`` alive) and idempotent.
    """
    _OBJECTS.add(obj)


def _after_fork_in_child() -> None:
    for obj in list(_OBJECTS):
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
