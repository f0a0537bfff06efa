"""Native thread starts that fail, for tests/loaders/native_races.py: the address space is limited so that a new
thread's stack no longer fits (a forked child's first run(), ImageKernel(n) part-way, ImageKernel(1) at once)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

from dataio.loaders import native
from tests.loaders.race_support import CHILD_S, batch, wait_child


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _limit_address_space(headroom: int) -> None:
    """Lets the process map only `headroom` more bytes: a new thread's 8 MiB stack no longer fits beyond that."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + headroom, hard))


def _take_every_thread_stack() -> None:
    """Starts idle threads until none can start: they hold every thread stack the C library had cached (a forked
    child's cache holds the parent's threads' stacks), so the next thread needs new memory."""
    hold = threading.Event()
    for _ in range(1024):
        try:
            threading.Thread(target=hold.wait, daemon=True).start()
        except RuntimeError:
            return
    raise RuntimeError("1024 threads started under the address-space limit")


def fork_no_threads(photos: list[bytes], trials: int) -> str:
    """A forked child whose first run() cannot start the child's own threads gets OSError naming that."""
    m = native.require()
    data, boxes, flips, out = batch(photos, 4)
    k = m.ImageKernel(2)
    k.run(data, boxes, flips, out, np.arange(4), True)
    pid = os.fork()
    if pid == 0:  # the child cannot start its own threads: run() says so (not "closed"), and the kernel stays usable
        code = 0
        try:
            _limit_address_space(1 << 20)
            _take_every_thread_stack()
            try:
                k.run(data, boxes, flips, out, np.arange(4), True)
                code = 2
            except OSError as exc:
                code = 0 if "could not start a native thread" in str(exc) else 3
            except BaseException:  # any other error is the failure this checks
                code = 4
        finally:
            os._exit(code)
    code = wait_child(pid, time.monotonic() + CHILD_S)
    k.close()
    if code != 0:
        return f"FAIL: a forked child that cannot start threads: exit code {code} (None: hung)"
    return "a forked child without room for threads got OSError naming it"


def partial_start(photos: list[bytes], trials: int) -> str:
    """ImageKernel(64) with room for a few threads keeps and reports those; ImageKernel(1) with none raises."""
    m = native.require()
    data, boxes, flips, out = batch(photos, 4)
    _limit_address_space(48 << 20)
    partial = m.ImageKernel(64)
    if not 0 < partial.threads < 64:
        return f"FAIL: ImageKernel(64) under a 48 MiB address-space headroom reports {partial.threads} threads"
    if partial.run(data, boxes, flips, out, np.arange(4), True) != [None] * 4:
        return "FAIL: the partly started kernel does not decode"
    started = partial.threads
    partial.close()
    _limit_address_space(1 << 20)
    _take_every_thread_stack()
    try:
        m.ImageKernel(1)
    except OSError as exc:
        if "could not start a native thread" not in str(exc):
            return f"FAIL: ImageKernel(1) without room for a thread raised {exc!r}"
    else:
        return "FAIL: ImageKernel(1) without room for a thread did not raise"
    pid = os.fork()  # the pool of the kernel that failed to start is not left registered for the fork handlers
    if pid == 0:
        os._exit(0)
    if wait_child(pid, time.monotonic() + CHILD_S) != 0:
        return "FAIL: fork after a failed ImageKernel()"
    return f"ImageKernel(64) started and reports {started} threads; ImageKernel(1) refused"
