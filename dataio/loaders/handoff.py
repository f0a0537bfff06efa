"""Hand-off between pipeline threads: a put into a bounded queue that gives up when the pipeline stops."""

from __future__ import annotations

import queue
import threading
from typing import Any

__all__ = ["put_until_stopped"]


def put_until_stopped(q: queue.Queue[Any], item: Any, stop: threading.Event, poll: float = 0.1) -> bool:
    """Puts ``item`` into ``q``, waiting while it is full; False (item dropped) once ``stop`` is set."""
    while not stop.is_set():
        try:
            q.put(item, timeout=poll)
            return True
        except queue.Full:
            continue
    return False
