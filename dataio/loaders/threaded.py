"""The map-style iterator of :class:`dataio.DataLoader` with ``num_workers`` threads instead of processes.

Each worker thread fetches whole batches (``dataset.__getitems__`` when the dataset has it, else
``dataset[i]`` for each index) and collates them; at most ``prefetch_factor × num_workers`` batches are in
flight (bounded memory). Batches come out in sampler order (``in_order=True``) or as they complete. A worker's
exception is raised in the consumer as the same exception object, original traceback included, and every
thread stops; nothing waits forever (``timeout`` is honoured like torch's).
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data._utils.pin_memory import pin_memory as _pin

__all__ = ["ThreadedMapIterator"]

_STOP = object()


def _note(exc: BaseException, text: str) -> None:
    if hasattr(exc, "add_note"):
        exc.add_note(text)


def _shutdown(stop: threading.Event, tasks: queue.Queue, threads: list[threading.Thread]) -> None:
    stop.set()
    for _ in threads:
        tasks.put(_STOP)
    for t in threads:
        if t is not threading.current_thread():
            t.join(timeout=5)


class ThreadedMapIterator(Iterator[Any]):
    """Iterates a map-style dataset through ``loader.num_workers`` threads (see module docstring)."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._dataset = loader.dataset
        self._auto = loader._auto_collation
        self._collate: Callable[[Any], Any] = loader.collate_fn
        self._timeout = float(loader.timeout or 0)
        self._in_order = bool(loader.in_order)
        self._pin = bool(loader.pin_memory) and _accelerator_available()
        self._workers = int(loader.num_workers)
        self._depth = max(1, int(loader.prefetch_factor or 2) * self._workers)
        self._tasks: queue.Queue[Any] = queue.Queue()
        self._results: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, args=(wid,), name=f"dataio-loader-{wid}", daemon=True)
            for wid in range(self._workers)
        ]
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._tasks, self._threads)
        for t in self._threads:
            t.start()
        self._batches = enumerate(iter(loader._index_sampler))
        # Same draw, same place as torch's iterators: the samplers then see the generator in the same state, so
        # shuffled batches are identical to torch's for the same generator.
        self.base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=loader.generator).item())
        self._sent = self._next_out = 0
        self._pending: dict[int, tuple[bool, Any]] = {}
        self._exhausted = False
        self._length = len(loader)
        for _ in range(self._depth):
            self._send()

    def _fetch(self, index: Any) -> Any:
        if not self._auto:
            return self._collate(self._dataset[index])
        getitems = getattr(self._dataset, "__getitems__", None)
        samples = getitems(index) if getitems else [self._dataset[i] for i in index]
        return self._collate(samples)

    def _work(self, wid: int) -> None:
        init = self._loader.worker_init_fn
        if init is not None:
            try:
                init(wid)
            except BaseException as exc:
                _note(exc, f"raised by worker_init_fn in dataio DataLoader worker thread {wid}")
                self._results.put((-1, False, exc))
                return
        while not self._stop.is_set():
            task = self._tasks.get()
            if task is _STOP:
                return
            seq, index = task
            try:
                self._results.put((seq, True, self._fetch(index)))
            except BaseException as exc:  # shipped to the consumer, re-raised there with its traceback
                _note(exc, f"raised in dataio DataLoader worker thread {wid} while loading batch {seq}")
                self._results.put((seq, False, exc))

    def _send(self) -> None:
        if self._exhausted:
            return
        item = next(self._batches, None)
        if item is None:
            self._exhausted = True
            return
        self._tasks.put(item)
        self._sent += 1

    def _get(self) -> tuple[int, bool, Any]:
        while True:
            try:
                return self._results.get(timeout=self._timeout if self._timeout > 0 else 1.0)
            except queue.Empty:
                if self._timeout > 0:
                    self.close()
                    raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None
                if not any(t.is_alive() for t in self._threads):
                    self.close()
                    raise RuntimeError("DataLoader worker threads exited unexpectedly") from None

    def __next__(self) -> Any:
        if self._next_out >= self._sent and self._exhausted:
            self.close()
            raise StopIteration
        if self._in_order:
            while self._next_out not in self._pending:
                seq, ok, value = self._get()
                self._pending[seq] = (ok, value)
                if seq < 0:
                    break
            key = -1 if -1 in self._pending else self._next_out
            ok, value = self._pending.pop(key)
        else:
            _, ok, value = self._get()
        if not ok:
            self.close()
            raise value
        self._next_out += 1
        self._send()
        return _pin(value) if self._pin else value

    def __iter__(self) -> ThreadedMapIterator:
        return self

    def __len__(self) -> int:
        return self._length

    def close(self) -> None:
        """Stops the worker threads. Idempotent."""
        self._finalizer()


def _accelerator_available() -> bool:
    return bool(torch.cuda.is_available())
