"""Iterator lifecycle of the fast and DALI paths: abandoned epochs stop their threads, next() after close() ends the
iteration, and two live iterators of one loader do not share (or corrupt) one tuner. Run with the native kernel and,
under ``--no-native``, with the Python decode threads."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

import dataio
from dataio.loaders import native
from dataio.loaders.dali.pipeline import dali_available


def _native_threads() -> int:
    """Every thread of this process, Python's and native ones (the kernel's, DALI's, torch's)."""
    return len(os.listdir("/proc/self/task"))


def _settle(baseline: int, count=threading.active_count, within: float = 2.0) -> int:
    """Waits until ``count()`` is back at ``baseline`` (or ``within`` seconds passed); returns the last count."""
    deadline = time.monotonic() + within
    while True:
        gc.collect()
        now = count()
        if now <= baseline or time.monotonic() > deadline:
            return now
        time.sleep(0.02)


def _loader(packed: Path, **kw) -> dataio.DataLoader:
    ds = dataio.open_dataset(packed)
    kw.setdefault("pipeline", dataio.ImagePipeline(train=True, size=32))
    return dataio.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, seed=3, **kw)


@pytest.mark.parametrize("how", ["break", "exception", "close"])
def test_no_thread_outlives_20_abandoned_epochs(packed: Path, how: str) -> None:
    loader = _loader(packed)
    next(iter(loader))  # the loader's own threads (native kernel, reader pool) exist from here on
    baseline, native_baseline = _settle(threading.active_count()), _native_threads()
    for epoch in range(20):
        loader.set_epoch(epoch)
        if how == "break":
            for _ in loader:
                break
        elif how == "exception":
            with pytest.raises(KeyError):
                for _ in loader:
                    raise KeyError("the training step failed")
        else:
            it = iter(loader)
            next(it)
            it.close()
            with pytest.raises(StopIteration):
                next(it)  # after close(): the end, at once (no waiting, no spinning)
            del it
    # the dataset's reader pool (bounded, shared by every epoch) may have grown to its size; nothing else may
    pool = loader.dataset.reader.max_threads
    assert _settle(0, _epoch_threads) == 0, [t.name for t in threading.enumerate()]
    assert threading.active_count() <= baseline + pool
    assert _settle(native_baseline + pool, _native_threads) <= native_baseline + pool


def _epoch_threads() -> int:
    return sum(t.name.startswith("dataio-fast-") for t in threading.enumerate())


def test_an_abandoned_iterator_is_garbage_collected_and_frees_its_buffers(packed: Path) -> None:
    import weakref

    loader = _loader(packed, autotune=False)
    it = iter(loader)
    next(it)
    ref = weakref.ref(it)
    state = it.control
    del it
    gc.collect()
    assert ref() is None  # no stage thread keeps the iterator alive
    deadline = time.monotonic() + 2
    while not state.released and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.stop.is_set() and state.released and state.live == 0


def test_next_after_the_end_keeps_raising_stop_iteration(packed: Path) -> None:
    loader = _loader(packed)
    it = iter(loader)
    assert sum(len(labels) for _, labels in it) == len(loader.dataset)
    for _ in range(3):
        with pytest.raises(StopIteration):
            next(it)


def test_two_live_iterators_each_get_the_epoch_and_their_own_tuning(packed: Path) -> None:
    loader = _loader(packed)
    a, b = iter(loader), iter(loader)
    assert a.tuning is not b.tuning
    assert a.tuning.tuner is not None and b.tuning.tuner is None  # only the first one tunes
    got_a = [labels for _, labels in a]
    got_b = [labels for _, labels in b]
    assert sum(map(len, got_a)) == sum(map(len, got_b)) == len(loader.dataset)
    c = iter(loader)  # both ended: the loader's tuning is free again
    assert c.tuning is a.tuning
    c.close()


@pytest.mark.skipif(not native.AVAILABLE, reason="dataio._native is not built")
def test_a_second_live_iterator_leaves_the_kernels_threads_to_the_first(packed: Path) -> None:
    loader = _loader(packed, pipeline=dataio.ImagePipeline(train=True, size=32, native=True))
    a = iter(loader)
    next(a)
    a.tuning.decode_threads = 3  # as the tuner of the first iterator might set it
    a.decoder.set_threads(3)
    b = iter(loader)  # a private fixed copy of the settings (3 threads)...
    b.tuning.decode_threads = 1  # ...whatever it holds, it must not move the shared kernel
    for _ in b:
        pass
    assert loader.runtime.image_kernel(1).threads == 3
    a.close()


@pytest.mark.skipif(not dali_available(), reason="needs nvidia-dali")
def test_abandoned_dali_epochs_leave_no_python_thread(packed: Path) -> None:
    loader = _loader(packed, pipeline=dataio.ImagePipeline(train=True, size=32, backend="dali"))
    next(iter(loader))
    baseline = _settle(threading.active_count())
    for epoch in range(5):
        loader.set_epoch(epoch)
        for _ in loader:
            break
    pool = loader.dataset.reader.max_threads
    assert _settle(baseline, within=3) <= baseline + pool, [t.name for t in threading.enumerate()]
    assert not any(t.name.startswith("dataio-dali") for t in threading.enumerate())
