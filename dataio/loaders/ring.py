"""The ring of batch buffers between the decode threads and the consumer of the fast path."""

from __future__ import annotations

import threading

import numpy as np
import torch

from dataio.loaders.torch_compat import storage_use_count

__all__ = ["BatchRing", "BufferPool"]


class BufferPool:
    """Float32 batch tensors for the CPU path, recycled once the training loop holds no view of them.

    A batch is handed out as a view of a pooled buffer; while the user (or anything: a numpy array, a DLPack
    export, a slice) still refers to it, its storage has more than the pool's one reference and it is not
    reused. Reuse saves the allocation of every batch: a batch of 64 × 3 × 224 × 224 float32 is 38 MB, above
    glibc's mmap threshold, so a fresh tensor costs ~9,000 page faults and zeroing (measured: 0.35 ms of system
    time per image, a fifth of the loader's CPU on 2 cores).

    Args:
        shape: Shape of one buffer.
        cap: Buffers kept at most (more in flight at once are allocated and dropped as before).
    """

    def __init__(self, shape: tuple[int, ...], cap: int) -> None:
        self.shape, self.cap = shape, cap
        self.buffers: list[torch.Tensor] = []
        self.in_flight: set[int] = set()  # ids of buffers assigned to batches not yet handed out
        self.base: int | None = None
        self.allocated = 0
        self._lock = threading.Lock()
        self._usable = storage_use_count(torch.empty(0)) is not None

    def take(self) -> torch.Tensor:
        """A buffer no one refers to, or a new one."""
        with self._lock:
            if self._usable:
                for buf in self.buffers:
                    if id(buf) not in self.in_flight and storage_use_count(buf) == self.base:
                        self.in_flight.add(id(buf))
                        return buf
            buf = torch.empty(self.shape, dtype=torch.float32)
            self.allocated += 1
            if self._usable and len(self.buffers) < self.cap:
                if self.base is None:
                    self.base = storage_use_count(buf)
                self.buffers.append(buf)
                self.in_flight.add(id(buf))
            return buf

    def handed_out(self, buf: torch.Tensor | None) -> None:
        """``buf``'s batch left the loader (as a view) or was abandoned: reusable once no view remains."""
        if buf is not None:
            with self._lock:
                self.in_flight.discard(id(buf))


class BatchRing:
    """Storage of the batches in flight: ``n`` slots, of which ``depth`` (≤ n, changeable at run time: the
    autotuner's prefetch knob) may be in use; batch ``b`` may start once batch ``b - depth`` has been released.

    CPU: each batch gets a float32 tensor from ``pool`` that decode threads fill with normalised pixels; the
    user receives a view of it, and the pool reuses it once that view is gone. CUDA: reusable pinned uint8
    buffers (allocated on first use of their slot), normalised on the GPU after the copy.
    """

    def __init__(
        self,
        n: int,
        batch: int,
        shape: tuple[int, ...],
        reuse_uint8: bool,
        depth: int | None = None,
        pool: BufferPool | None = None,
    ) -> None:
        self.n, self.batch, self.shape, self.reuse = n, batch, shape, reuse_uint8
        self.pool = pool or BufferPool((batch, *shape), cap=n + 2)
        self.depth = n if depth is None else max(1, min(n, depth))
        self.images: list[torch.Tensor | None] = [None] * n
        self.labels = [torch.empty(batch, dtype=torch.int64) for _ in range(n)]
        self.valid = [np.ones(batch, dtype=bool) for _ in range(n)]
        self.owner = [-1] * n
        self.released = -1  # batches are released in order: every batch <= released has left the ring
        self.cond = threading.Condition()

    def acquire(self, batch: int, stop: threading.Event) -> int | None:
        """Waits until ``batch`` may use its slot; returns the slot (None if stopping)."""
        slot = batch % self.n
        with self.cond:
            while batch - self.depth > self.released and not stop.is_set():  # depth <= n: its slot is free
                self.cond.wait(0.1)
            if stop.is_set():
                return None
            if self.owner[slot] != batch:
                self.owner[slot] = batch
                if not self.reuse:
                    self.images[slot] = self.pool.take()
                elif self.images[slot] is None:
                    self.images[slot] = torch.empty((self.batch, *self.shape), dtype=torch.uint8, pin_memory=True)
            return slot

    def set_depth(self, depth: int) -> None:
        """Changes how many batches may be in flight (1..n); waiting producers re-check at once."""
        with self.cond:
            self.depth = max(1, min(self.n, int(depth)))
            self.cond.notify_all()

    def release(self, batch: int) -> None:
        """Batch ``batch`` (and every one before it) left the ring: its slot may take a later batch."""
        with self.cond:
            self.released = batch
            if not self.reuse:
                self.pool.handed_out(self.images[batch % self.n])
            self.cond.notify_all()

    def abandon(self) -> None:
        """The epoch stopped early: buffers of batches never handed out go back to the pool."""
        if not self.reuse:
            for slot in range(self.n):
                if self.owner[slot] > self.released:
                    self.pool.handed_out(self.images[slot])
