"""Worker processes die with the process that started them: no orphans after ``kill -9`` of ``dataio pack``.

A pool worker blocked on its task queue never sees its parent die (it holds a write end of that queue itself),
and one in the middle of a shard keeps reading and uploading. :func:`die_with_parent` runs first in every worker:

* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill the worker the moment its parent dies
  (SIGKILL, SIGTERM, OOM killer alike); the parent PID is checked right after, in case it died before the call;
* everywhere, a watchdog thread checks once a second whether the parent PID changed (the worker was re-parented)
  and ends the worker then.

A staged upload file of a killed worker is removed by the next run (:mod:`dataio.storage.staging`); a local temp
shard by the next ``pack`` into the same output.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
_CHECK_EVERY_S = 1.0
_EXIT_STATUS = 70  # what a worker ends with when its parent is gone
_stop = threading.Event()  # never set: the watchdog (a daemon thread) lives exactly as long as its worker


def _set_pdeathsig() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl in this libc: the watchdog alone then
        pass


def _watch(parent_pid: int) -> None:
    while not _stop.wait(_CHECK_EVERY_S):
        if os.getppid() != parent_pid:
            os._exit(_EXIT_STATUS)


def die_with_parent(parent_pid: int) -> None:
    """Ends this process as soon as ``parent_pid`` (the PID of its parent at start) is no longer its parent."""
    _set_pdeathsig()
    if os.getppid() != parent_pid:
        os._exit(_EXIT_STATUS)
    threading.Thread(target=_watch, args=(parent_pid,), name="dataio-parent-watchdog", daemon=True).start()
