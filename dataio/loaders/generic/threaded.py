"""``worker_mode="thread"``: torch's DataLoader contracts with ``num_workers`` threads instead of processes.

Threads win when ``__getitem__`` mostly waits (remote reads) or releases the GIL (decoders); processes win
for GIL-bound Python (PIL + torchvision transforms). The iterator keeps the contracts of torch's
multiprocessing iterator, dispatch included:

- each worker has its own task queue; tasks go round-robin to the workers still active, at most
  ``prefetch_factor`` per worker in flight; results come back on one queue and are yielded in sampler order
  (``in_order=True``) or as they arrive;
- a worker fetches with torch's own fetchers (``__getitems__``, auto-collation, ``drop_last``; for an
  ``IterableDataset`` each worker iterates the dataset and a worker that runs dry is retired for the epoch);
- each worker thread works on its own shallow copy of the dataset (``copy.copy``: attributes such as the
  ``start``/``end`` a ``worker_init_fn`` sets for sharding are per worker, as in a worker process, while
  what they refer to, e.g. open readers and caches, is shared); ``get_worker_info()`` answers per thread with
  that copy and torch's seeds (:mod:`dataio.loaders.generic.worker_info`), and ``worker_init_fn(id)`` runs once per
  worker thread;
- an exception of a sample is re-raised in the consumer (the same exception object, its traceback through
  ``__getitem__`` included, plus a note naming the worker) and the epoch goes on with the next batch;
- ``timeout > 0`` bounds each wait for a batch (``RuntimeError`` as torch's); nothing ever joins a worker, so
  a stuck ``__getitem__`` never blocks the consumer;
- ``persistent_workers=True`` keeps the threads, the base seed and the workers' state across epochs
  (``worker_init_fn`` runs once); otherwise the epoch's end stops them;
- ``pin_memory`` pins in the worker thread that made the batch (torch uses one extra pin thread).

Worker threads run :func:`_worker_loop` over explicit state (their queues, a done event, a frozen
:class:`_WorkerSetup`), never the iterator: a dropped iterator is collected and its ``weakref.finalize``
stops its threads (each wakes on its ``None`` sentinel; one busy in ``__getitem__`` stops when that returns).
"""

from __future__ import annotations

import copy
import itertools
import queue
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dataio.loaders.generic import worker_info
from dataio.loaders.torch_compat import BaseDataLoaderIter, DatasetKind, pin_memory

__all__ = ["ThreadedIterator"]

_POLL_S = 1.0  # how often a consumer waiting without a timeout checks that the workers are alive


@dataclass(frozen=True)
class _WorkerSetup:
    """What every worker thread of one iterator needs (no reference to the iterator or the loader)."""

    kind: Any
    dataset: Any
    auto_collation: bool
    collate_fn: Callable[[Any], Any]
    drop_last: bool
    init_fn: Callable[[int], None] | None
    num_workers: int
    base_seed: int
    pin: bool


class _Resume:
    """Sent to a persistent worker at the start of a later epoch; echoed back as its acknowledgement."""


class _Exhausted:
    """A worker's iterable dataset ran dry for this epoch."""

    def __init__(self, worker_id: int) -> None:
        self.worker_id = worker_id


class _Failure:
    """An exception raised by a worker, handed over once (no reference kept after :meth:`take`)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc: BaseException | None = exc

    def take(self) -> BaseException:
        exc, self.exc = self.exc, None
        if exc is None:
            raise RuntimeError("worker failure taken twice")
        return exc


def _note(exc: BaseException, text: str) -> BaseException:
    exc.add_note(text)
    return exc


def _attempt(fetcher: Any, index: Any, setup: _WorkerSetup, worker_id: int) -> Any:
    """One task. Its own frame, so that a failure's traceback holds the fetcher and not the queues."""
    if fetcher is None:
        return _Failure(RuntimeError(f"DataLoader worker thread {worker_id} failed to start (raised earlier)"))
    try:
        data = fetcher.fetch(index)
        return pin_memory(data) if setup.pin else data
    except BaseException as exc:  # shipped to the consumer and raised there
        if isinstance(exc, StopIteration) and setup.kind == DatasetKind.Iterable:
            return _Exhausted(worker_id)
        return _Failure(_note(exc, f"raised in DataLoader worker thread {worker_id}"))


def _start(setup: _WorkerSetup, worker_id: int) -> tuple[Any, Any, _Failure | None]:
    """This worker's dataset copy, its worker info, ``worker_init_fn`` and fetcher: ``(dataset, fetcher,
    failure)``; a failure is raised by the consumer in place of the worker's first batch, as torch does."""
    dataset = setup.dataset
    try:
        dataset = copy.copy(setup.dataset)  # this worker's copy (see the module docstring)
        worker_info.set_thread_worker_info(
            worker_info.thread_worker_info(worker_id, setup.num_workers, setup.base_seed, dataset)
        )
        if setup.init_fn is not None:
            setup.init_fn(worker_id)
        return dataset, _make_fetcher(setup, dataset), None
    except BaseException as exc:
        return dataset, None, _Failure(_note(exc, f"raised while starting DataLoader worker thread {worker_id}"))


def _make_fetcher(setup: _WorkerSetup, dataset: Any) -> Any:
    return DatasetKind.create_fetcher(setup.kind, dataset, setup.auto_collation, setup.collate_fn, setup.drop_last)


def _worker_loop(
    setup: _WorkerSetup, worker_id: int, tasks: queue.SimpleQueue[Any], results: queue.SimpleQueue[Any],
    done: threading.Event,
) -> None:  # fmt: skip
    dataset, fetcher, init_failure = _start(setup, worker_id)
    ended = False  # this worker's iterable ran dry: skip tasks until a resume
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            if isinstance(task, _Resume):
                ended = False
                if init_failure is None:
                    fetcher = _make_fetcher(setup, dataset)
                results.put((task, None))
                continue
            if done.is_set() or ended:
                continue
            idx, index = task
            if init_failure is not None:
                data, init_failure = init_failure, None
            else:
                data = _attempt(fetcher, index, setup, worker_id)
                ended = isinstance(data, _Exhausted)
            results.put((idx, data))
            del data, task, index
    finally:
        worker_info.clear_thread_worker_info()


def _stop(done: threading.Event, task_queues: list[queue.SimpleQueue[Any]]) -> None:
    """Tells every worker to stop (never waits for one: a worker stuck in ``__getitem__`` exits when it returns)."""
    done.set()
    for q in task_queues:
        q.put(None)


class ThreadedIterator(BaseDataLoaderIter):
    """torch's multiprocessing iterator semantics over ``loader.num_workers`` threads (module docstring)."""

    def __init__(self, loader: Any) -> None:
        super().__init__(loader)  # samplers, base seed (the same draw torch makes), pin-memory checks
        worker_info.install()
        self._prefetch_factor = int(loader.prefetch_factor)
        self._in_order = bool(loader.in_order)
        setup = _WorkerSetup(
            kind=self._dataset_kind,
            dataset=self._dataset,
            auto_collation=self._auto_collation,
            collate_fn=self._collate_fn,
            drop_last=self._drop_last,
            init_fn=loader.worker_init_fn,
            num_workers=self._num_workers,
            base_seed=int(self._base_seed),
            pin=bool(self._pin_memory),
        )
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._task_queues: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(self._num_workers)]
        self._done = threading.Event()
        self._threads = [
            threading.Thread(
                target=_worker_loop,
                args=(setup, wid, self._task_queues[wid], self._results, self._done),
                name=f"dataio-worker-{wid}",
                daemon=True,
            )
            for wid in range(self._num_workers)
        ]
        self._finalizer = weakref.finalize(self, _stop, self._done, self._task_queues)
        for t in self._threads:
            t.start()
        self._reset(loader, first_iter=True)

    def _reset(self, loader: Any, first_iter: bool = False) -> None:
        super()._reset(loader, first_iter)
        self._send_idx = 0  # next task to send
        self._rcvd_idx = 0  # next task to yield (in order)
        self._task_info: dict[int, tuple[Any, ...]] = {}  # task -> (worker,) or (worker, data)
        self._tasks_outstanding = 0
        self._workers_status = [True] * self._num_workers  # still has work this epoch
        self._workers_num_tasks = [0] * self._num_workers
        self._worker_cycle = itertools.cycle(range(self._num_workers))
        if not first_iter:  # persistent workers: new fetchers, stale results of an abandoned epoch dropped
            for q in self._task_queues:
                q.put(_Resume())
            acks = 0
            while acks < self._num_workers:
                idx, _ = self._get_data()
                acks += isinstance(idx, _Resume)
        for _ in range(self._prefetch_factor * self._num_workers):
            self._try_put_index()

    def _get_data(self) -> tuple[Any, Any]:
        if self._timeout > 0:
            try:
                return self._results.get(timeout=self._timeout)
            except queue.Empty:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds") from None
        while True:
            try:
                return self._results.get(timeout=_POLL_S)
            except queue.Empty:
                dead = [w for w, t in enumerate(self._threads) if not t.is_alive()]
                if dead:
                    self.close()
                    raise RuntimeError(f"DataLoader worker thread(s) {dead} exited unexpectedly") from None

    def _next_data(self) -> Any:
        while True:
            while self._rcvd_idx < self._send_idx:  # skip tasks of workers that ran dry
                info = self._task_info.get(self._rcvd_idx)
                if info:
                    if len(info) == 2 or self._workers_status[info[0]]:
                        break
                    del self._task_info[self._rcvd_idx]
                self._rcvd_idx += 1
            else:
                if not self._persistent_workers:
                    self.close()
                raise StopIteration
            if len(self._task_info[self._rcvd_idx]) == 2:
                worker, data = self._task_info.pop(self._rcvd_idx)
                self._rcvd_idx += 1
                return self._process_data(data, worker)
            idx, data = self._get_data()
            self._tasks_outstanding -= 1
            if isinstance(data, _Exhausted):
                self._workers_status[data.worker_id] = False
                self._try_put_index()
                continue
            if idx != self._rcvd_idx:
                if not self._in_order:
                    return self._process_data(data, self._task_info.pop(idx)[0])
                self._task_info[idx] += (data,)
            else:
                worker = self._task_info.pop(idx)[0]
                self._rcvd_idx += 1
                return self._process_data(data, worker)

    def _try_put_index(self) -> None:
        max_tasks = self._prefetch_factor * self._num_workers
        try:
            index = self._next_index()
        except StopIteration:
            return
        for _ in range(self._num_workers):  # the next active worker (with room, out of order)
            worker = next(self._worker_cycle)
            if self._workers_status[worker] and (
                self._in_order or self._workers_num_tasks[worker] < max_tasks // sum(self._workers_status)
            ):
                break
        else:
            return
        self._task_queues[worker].put((self._send_idx, index))
        self._task_info[self._send_idx] = (worker,)
        self._workers_num_tasks[worker] += 1
        self._tasks_outstanding += 1
        self._send_idx += 1

    def _process_data(self, data: Any, worker: int) -> Any:
        self._workers_num_tasks[worker] -= 1
        self._try_put_index()
        if not isinstance(data, _Failure):
            return data
        exc = data.take()
        try:
            raise exc
        finally:
            del exc

    def close(self) -> None:
        """Stops the worker threads now (also done when the iterator is dropped). Idempotent."""
        self._finalizer()
