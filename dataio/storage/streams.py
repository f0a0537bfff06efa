"""A sequential read-only stream over any store's ranged reads (so every piece is retried by the store)."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["RangeStream"]


class RangeStream(io.RawIOBase):
    """Reads object ``path`` of ``size`` bytes from ``store`` front to back through ``store.read_range``."""

    def __init__(self, store: Any, path: str, size: int) -> None:
        self._store, self._path, self._size, self._pos = store, path, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        data = self._store.read_range(self._path, self._pos, n)
        buffer[:n] = data
        self._pos += n
        return n
