"""Timestamps that mean the same thing on the CPU and on a GPU.

On the CPU a stamp is ``time.perf_counter()``. On CUDA it is an event recorded on the current stream, so the
difference of two stamps is the GPU time between the work enqueued before each (what a step-time split needs:
the host returns from ``backward()`` long before the GPU is done). :meth:`Clock.seconds` waits for the later event.
"""

from __future__ import annotations

import time
from typing import Any

import torch

__all__ = ["Clock"]


class Clock:
    """Stamps for one device (``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a torch.device)."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def now(self) -> Any:
        """A stamp: a float on the CPU, a recorded ``torch.cuda.Event`` on CUDA."""
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def seconds(self, start: Any, end: Any) -> float:
        """Seconds from ``start`` to ``end`` (waits for ``end`` on CUDA); 0 when either is missing."""
        if start is None or end is None:
            return 0.0
        if not self.cuda:
            return float(end - start)
        end.synchronize()
        return float(start.elapsed_time(end)) / 1000.0

    def sync(self) -> None:
        """Waits for the device (no-op on the CPU)."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
