"""Nothing outlives its epoch: 20 abandoned epochs (``break``, an exception, KeyboardInterrupt, ``close()``)
leave no thread, no process and no prefetched batch behind, each gone within a second.

Generic path (torch's loader, dataio's process and thread modes) unless a test says "fast path".
"""

from __future__ import annotations

import gc
import multiprocessing
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.utils.data as tud

import dataio
from tests.loaders.parity import KINDS, Squares, make_loader

ABANDONED_EPOCHS = 20


def counts() -> tuple[int, int]:
    return threading.active_count(), len(multiprocessing.active_children())


def settle(baseline: tuple[int, int], within: float = 1.0) -> tuple[int, int]:
    """Waits up to ``within`` seconds for the thread and process counts to fall back to ``baseline`` (or below:
    threads of earlier tests may still be leaving when a baseline is taken); returns ``baseline`` if they did,
    else the counts seen last."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        now = counts()
        if now[0] <= baseline[0] and now[1] <= baseline[1]:
            return baseline
        time.sleep(0.01)
    return counts()


def abandon_by_break(loader: Any) -> None:
    for i, _ in enumerate(loader):
        if i == 1:
            break


def abandon_by_exception(loader: Any) -> None:
    try:
        for _ in loader:
            raise ValueError("the training step failed")
    except ValueError:
        pass


def abandon_by_keyboard_interrupt(loader: Any) -> None:
    try:
        for _ in loader:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass


def abandon_by_close(loader: Any) -> None:
    it = iter(loader)
    next(it)
    it.close()


WAYS: list[Callable[[Any], None]] = [abandon_by_break, abandon_by_exception, abandon_by_keyboard_interrupt]


@pytest.mark.parametrize("kind", KINDS)
def test_twenty_abandoned_epochs_leave_no_thread_or_process(kind: str) -> None:
    loader = make_loader(kind, Squares(64), batch_size=2, num_workers=2)
    baseline = counts()
    ways = [*WAYS, abandon_by_close] if kind != "torch" else WAYS
    for epoch in range(ABANDONED_EPOCHS):
        ways[epoch % len(ways)](loader)
        # worker processes (torch's own, and process mode) are joined by torch; on a loaded 2-core machine that
        # takes longer than a second now and then, so they get two; threads must be gone within one
        within = 1.0 if kind == "thread" else 2.0
        assert settle(baseline, within) == baseline, f"epoch {epoch} ({ways[epoch % len(ways)].__name__}) left workers"


@pytest.mark.parametrize("kind", KINDS)
def test_persistent_workers_end_with_their_loader(kind: str) -> None:
    gc.collect()
    baseline = settle((1, 0), within=2.0)  # threads of earlier tests may still be leaving (main thread only: 1, 0)
    loader = make_loader(kind, Squares(32), batch_size=2, num_workers=2, persistent_workers=True)
    for _ in range(5):
        abandon_by_break(loader)
    assert counts()[0] + counts()[1] > sum(baseline)  # alive between epochs, by design
    del loader
    gc.collect()  # torch's persistent iterator and its loader refer to each other
    assert settle(baseline, within=3.0) == baseline


class Tracked(tud.Dataset):
    """Remembers (weakly) every sample tensor it made, to see that prefetched batches are freed."""

    def __init__(self) -> None:
        self.made: list[weakref.ref[torch.Tensor]] = []

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> torch.Tensor:
        x = torch.full((1000,), float(i))
        self.made.append(weakref.ref(x))
        return x


def test_thread_mode_frees_prefetched_batches() -> None:
    ds = Tracked()
    loader = dataio.DataLoader(ds, batch_size=4, num_workers=2, worker_mode="thread", prefetch_factor=4,
                               collate_fn=lambda b: b)  # fmt: skip
    for _ in range(ABANDONED_EPOCHS):
        abandon_by_break(loader)
    deadline = time.monotonic() + 1.0
    while any(r() is not None for r in ds.made) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ds.made) >= ABANDONED_EPOCHS * 2 * 4
    assert not [r for r in ds.made if r() is not None]


def test_dropped_thread_iterator_is_collected_without_gc() -> None:
    loader = make_loader("thread", Squares(64), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    inner = weakref.ref(it._inner)
    del it
    assert inner() is None  # no reference cycle: reference counting alone frees it (and stops its threads)


@pytest.mark.slow
def test_fast_path_abandoned_epochs(packed: Path) -> None:
    """FAST PATH: counts after 20 abandoned epochs (see also test_lifecycle.py)."""
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=4, num_workers=2, pipeline=dataio.ImagePipeline(train=True, size=32),
                               autotune=False)  # fmt: skip
    # the dataset's reader pool (a ThreadPoolExecutor of up to max_threads, started lazily and kept by the
    # dataset, not by an epoch) may grow while epochs run: its threads are left out of the counts
    def epoch_counts() -> tuple[int, int]:
        threads = sum(not t.name.startswith("dataio-read") for t in threading.enumerate())
        return threads, len(multiprocessing.active_children())

    abandon_by_break(loader)
    deadline = time.monotonic() + 1.0  # the first epoch's own threads are leaving too
    while any(t.name.startswith("dataio-fast") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    baseline = epoch_counts()
    for epoch in range(ABANDONED_EPOCHS):
        WAYS[epoch % len(WAYS)](loader)
        deadline = time.monotonic() + 1.0
        while epoch_counts() != baseline and time.monotonic() < deadline:
            time.sleep(0.01)
        assert epoch_counts() == baseline, f"fast path: epoch {epoch} left {threading.enumerate()}"
