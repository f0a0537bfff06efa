"""CPU time of the storage clients' own threads in this process (for ``stats()`` and the "client-bound" verdict).

A remote read costs CPU in two places: on the thread that asks (measured around each call with
``time.thread_time``; see :class:`~dataio.storage.reader.RangeReader`) and on the client's own threads: obstore's
tokio workers (``tokio-*``), the AWS CRT's event loops (``AwsEventLoop*``), and s3fs/fsspec's asyncio loop thread
(the Python thread named ``fsspecIO``). :func:`client_threads_cpu` sums the latter from ``/proc/self/task``
(Linux; 0.0 elsewhere).
"""

from __future__ import annotations

import os
import threading

__all__ = ["client_threads_cpu", "process_cpu"]

_NATIVE_PREFIXES = ("tokio-", "AwsEventLoop")
_PYTHON_NAMES = ("fsspecIO",)
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _task_cpu(tid: str) -> tuple[str, float] | None:
    try:
        with open(f"/proc/self/task/{tid}/stat") as f:
            stat = f.read()
    except OSError:
        return None  # the thread ended meanwhile
    name = stat[stat.find("(") + 1 : stat.rfind(")")]
    fields = stat[stat.rfind(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def client_threads_cpu() -> float:
    """CPU seconds the storage clients' own threads in this process have used (threads alive now)."""
    if not os.path.isdir("/proc/self/task"):
        return 0.0
    python_tids = {str(t.native_id) for t in threading.enumerate() if t.name in _PYTHON_NAMES and t.native_id}
    total = 0.0
    for tid in os.listdir("/proc/self/task"):
        found = _task_cpu(tid)
        if found is not None and (found[0].startswith(_NATIVE_PREFIXES) or tid in python_tids):
            total += found[1]
    return total


def process_cpu() -> float:
    """CPU seconds this process has used (all threads, user + system)."""
    times = os.times()
    return times.user + times.system
