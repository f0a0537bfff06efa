"""Helpers of the native race scenarios (tests/loaders/native_races.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from dataio.loaders import native

CHILD_S = 5.0  # a forked child must have decoded within this


def photos_in(folder: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted(Path(folder).rglob("*.JPEG"))]


def batch(photos: list[bytes], n: int, side: int = 24) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    """n images (whole-image boxes: a full decode each), flips, an (n, 3, side, side) out."""
    data = [photos[i % len(photos)] for i in range(n)]
    sizes = native.jpeg_headers(data)[:, :2].astype(np.float64)
    boxes = np.zeros((n, 4), np.float64)
    boxes[:, 2:] = sizes
    return data, boxes, np.zeros(n, np.uint8), np.zeros((n, 3, side, side), np.uint8)


def wait_child(pid: int, deadline: float) -> int | None:
    """The child's exit code, or None (after killing it) when it did not finish by the deadline."""
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.005)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None
