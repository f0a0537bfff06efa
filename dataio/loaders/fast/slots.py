"""The fast path's batch slots: the buffers batches are decoded into, and who may write and take them.

- :class:`BufferPool`: float32 batch tensors recycled once the training loop holds no view of them.
- :class:`BatchRing`: ``n`` slots for the batches in flight; batch ``b`` may start once ``b - depth`` has left.
  Decoders get a slot through :meth:`BatchRing.acquire` as a :class:`SlotView`; the consumer (or the CUDA
  transfer thread) takes complete batches with :meth:`BatchRing.take` and gives them back with
  :meth:`BatchRing.release`, in order.
- :class:`SlotView`: one batch in its slot, as a decoder sees it: the only writer of its rows, labels and
  validity, normalising on the way in (CPU) or storing uint8 (CUDA: normalised on the GPU after the copy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dataio.loaders.image.transforms import normalization
from dataio.loaders.torch_compat import storage_use_count

__all__ = ["BatchRing", "BufferPool", "Normalization", "SlotView"]


@dataclass(frozen=True)
class Normalization:
    """``x * scale + shift`` per channel, i.e. ``(x / 255 - mean) / std`` (see :func:`transforms.normalization`)."""

    scale: tuple[float, float, float]
    shift: tuple[float, float, float]

    @classmethod
    def of(cls, mean: Sequence[float], std: Sequence[float]) -> Normalization:
        scale, shift = normalization(mean, std)
        return cls(scale, shift)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scale, shift)`` as float32 ``3 × 1 × 1`` tensors."""
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float32).view(3, 1, 1)  # noqa: E731
        return as_tensor(self.scale), as_tensor(self.shift)


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

    CPU: each batch gets a float32 tensor from ``pool`` that decoders fill with normalised pixels; the user
    receives a view of it, and the pool reuses it once that view is gone. CUDA (``reuse_uint8``): reusable pinned
    uint8 buffers (allocated on first use of their slot), normalised on the GPU after the copy.

    Args:
        n: Slots.
        batch: Rows of a batch.
        shape: Shape of one image (``3 × H × W``).
        reuse_uint8: CUDA: pinned uint8 buffers kept per slot; else float32 buffers from ``pool``.
        norm: The normalisation applied as rows are written (CPU).
        batch_len: Rows of batch ``b`` (the last one may be short).
        depth: Batches in flight at first (default ``n``).
        pool: The loader's buffer pool (default: a private one).
    """

    def __init__(
        self,
        n: int,
        batch: int,
        shape: tuple[int, ...],
        reuse_uint8: bool,
        norm: Normalization,
        batch_len: Callable[[int], int],
        depth: int | None = None,
        pool: BufferPool | None = None,
    ) -> None:
        self.n, self.batch, self.shape, self.reuse = n, batch, shape, reuse_uint8
        self.pool = pool or BufferPool((batch, *shape), cap=n + 2)
        self.depth = n if depth is None else max(1, min(n, depth))
        self.norm = norm
        self.scale, self.shift = norm.tensors()
        self._batch_len = batch_len
        self._images: list[torch.Tensor | None] = [None] * n
        self._labels = [torch.empty(batch, dtype=torch.int64) for _ in range(n)]
        self._valid = [np.ones(batch, dtype=bool) for _ in range(n)]
        self._filled = [0] * n
        self._owner = [-1] * n
        self._released = -1  # batches are released in order: every batch <= released has left the ring
        self._cond = threading.Condition()

    def acquire(self, batch: int, stop: threading.Event) -> SlotView | None:
        """Waits until ``batch`` may use its slot; returns the slot's view (None if stopping)."""
        slot = batch % self.n
        with self._cond:
            while batch - self.depth > self._released and not stop.is_set():  # depth <= n: its slot is free
                self._cond.wait(0.1)
            if stop.is_set():
                return None
            if self._owner[slot] != batch:
                self._owner[slot] = batch
                self._filled[slot] = 0
                if not self.reuse:
                    self._images[slot] = self.pool.take()
                elif self._images[slot] is None:
                    self._images[slot] = torch.empty((self.batch, *self.shape), dtype=torch.uint8, pin_memory=True)
            images = self._images[slot]
        if images is None:  # unreachable: every acquired slot holds a buffer
            raise RuntimeError(f"batch {batch}: its slot has no buffer")
        return SlotView(self, batch, slot, images)

    def filled(self, view: SlotView, rows: int) -> bool:
        """``rows`` more rows of ``view``'s batch are written (or skipped); True once the batch is complete."""
        with self._cond:
            self._filled[view.slot] += rows
            return self._filled[view.slot] == self._batch_len(view.batch)

    def take(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The delivered tensors of complete batch ``batch``: views of its buffer, skipped samples left out."""
        slot, size = batch % self.n, self._batch_len(batch)
        images = self._images[slot]
        if images is None or self._owner[slot] != batch:
            raise RuntimeError(f"batch {batch} is not in the ring")
        # always a view (a new tensor on the buffer's storage, even at full size): the pool sees it is in use
        images, labels = images[:size], self._labels[slot][:size]
        valid = self._valid[slot][:size]
        if not valid.all():
            keep = torch.from_numpy(np.flatnonzero(valid))
            images, labels = images.index_select(0, keep), labels.index_select(0, keep)
        elif not self.reuse:
            labels = labels.clone()
        return images, labels

    def set_depth(self, depth: int) -> None:
        """Changes how many batches may be in flight (1..n); waiting producers re-check at once."""
        with self._cond:
            self.depth = max(1, min(self.n, int(depth)))
            self._cond.notify_all()

    def release(self, batch: int) -> None:
        """Batch ``batch`` (and every one before it) left the ring: its slot may take a later batch."""
        with self._cond:
            self._released = batch
            if not self.reuse:
                self.pool.handed_out(self._images[batch % self.n])
            self._cond.notify_all()

    def abandon(self) -> None:
        """The epoch stopped early: buffers of batches never handed out go back to the pool."""
        if not self.reuse:
            with self._cond:
                for slot in range(self.n):
                    if self._owner[slot] > self._released:
                        self.pool.handed_out(self._images[slot])


class SlotView:
    """One batch in its slot, as a decoder writes it: the only writer of its rows, labels and validity.

    Rows are batch positions (``position % batch_size``). Every row of a batch is written exactly once, as an
    image (:meth:`put_image`, or the native kernel writing into :attr:`out` then :meth:`put_labels`) or as a
    skip (:meth:`skip`).
    """

    def __init__(self, ring: BatchRing, batch: int, slot: int, images: torch.Tensor) -> None:
        self._ring = ring
        self.batch, self.slot = batch, slot
        self._images = images

    @property
    def out(self) -> np.ndarray:
        """The slot's buffer for the native kernel: float32 rows it normalises itself (CPU), or uint8 (CUDA)."""
        return self._images.numpy()

    @property
    def normalization(self) -> Normalization:
        return self._ring.norm

    def put_image(self, row: int, image: np.ndarray, label: int) -> None:
        """Row ``row`` := ``image`` (``H × W × 3`` uint8 over CHW memory), normalised on the CPU path."""
        if not image.flags.writeable:
            image = image.copy()
        chw = torch.from_numpy(image).permute(2, 0, 1)  # the pipeline's images are CHW memory: contiguous
        dst = self._images[row]
        if self._ring.reuse:
            dst.copy_(chw)
        else:  # normalise here, in this (GIL-free) thread; 2.6x faster than one addcmul of the uint8 input
            dst.copy_(chw).mul_(self._ring.scale).add_(self._ring.shift)
        self._ring._labels[self.slot][row] = label
        self._ring._valid[self.slot][row] = True

    def put_labels(self, rows: np.ndarray, labels: Sequence[int]) -> None:
        """Rows ``rows`` were written into :attr:`out` by the kernel: their labels, and they are valid."""
        self._ring._labels[self.slot][torch.from_numpy(rows)] = torch.tensor(list(labels), dtype=torch.int64)
        self._ring._valid[self.slot][rows] = True

    def skip(self, row: int) -> None:
        """Row ``row`` is left out of the batch (``on_error="skip"``)."""
        self._ring._valid[self.slot][row] = False
