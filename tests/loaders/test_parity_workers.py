"""Parity of what happens inside and around the workers: worker info, seeds, errors, timeouts, persistence."""

from __future__ import annotations

import random
import time
import traceback

import numpy as np
import pytest
import torch

from tests.loaders.parity import (
    MODES,
    Draws,
    Exploding,
    InitCounted,
    Sleepy,
    Squares,
    WhoLoads,
    count_init,
    drain,
    fail_in_worker_1,
    gen,
    make_loader,
    same,
)


@pytest.mark.parametrize("mode", MODES)
def test_worker_info_inside_workers(mode: str) -> None:
    kw = {"batch_size": 3, "num_workers": 2, "generator": gen(5)}
    got = drain(iter(make_loader(mode, WhoLoads(12), **kw)))
    want = drain(iter(make_loader("torch", WhoLoads(12), **kw)))
    assert same(got, want)
    rows = torch.cat(got)
    assert set(rows[:, 1].tolist()) == {0, 1} and set(rows[:, 2].tolist()) == {2} and rows[:, 4].all()
    assert len(set(rows[:, 3].tolist())) == 2  # seed = base seed + worker id


def test_worker_info_is_none_outside_workers_and_per_thread() -> None:
    import torch.utils.data as tud

    loader = make_loader("thread", WhoLoads(8), batch_size=2, num_workers=2)
    it = iter(loader)
    next(it)
    assert tud.get_worker_info() is None  # the main thread, while worker threads have theirs
    assert torch.utils.data.get_worker_info() is None
    drain(it)


@pytest.mark.parametrize("mode", MODES)
def test_worker_init_fn_runs_once_per_worker(mode: str) -> None:
    kw = {"batch_size": 2, "num_workers": 2, "worker_init_fn": count_init, "generator": gen(6)}
    got = drain(iter(make_loader(mode, InitCounted(8), **kw)))
    assert same(got, drain(iter(make_loader("torch", InitCounted(8), **kw))))
    assert torch.cat(got)[:, 5].tolist() == [1] * 8


@pytest.mark.parametrize("mode", MODES)
def test_per_worker_seeding_is_reproducible(mode: str) -> None:
    kw = {"batch_size": 2, "num_workers": 2, "generator": gen(11)}
    main_state = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state()
    first = drain(iter(make_loader(mode, Draws(), **kw)))
    again = drain(iter(make_loader(mode, Draws(), **kw)))
    theirs = drain(iter(make_loader("torch", Draws(), **kw)))
    assert same(first, again)
    # thread workers draw from private generators seeded as torch seeds each worker process's globals
    assert same(first, theirs)
    # and the training loop's global generators are left alone (torch's loader draws one base seed from the
    # global torch generator when no generator is given; here one is)
    assert random.getstate() == main_state[0]
    assert np.array_equal(np.random.get_state()[1], main_state[1])
    assert torch.equal(torch.get_rng_state(), main_state[2])


@pytest.mark.parametrize("mode", MODES)
def test_errors_mid_epoch_are_raised_and_the_epoch_goes_on(mode: str) -> None:
    kw = {"batch_size": 4, "num_workers": 2}
    got = drain(iter(make_loader(mode, Exploding(30), **kw)))
    want = drain(iter(make_loader("torch", Exploding(30), **kw)))
    assert [b for b in got if isinstance(b, tuple)] == [("error", "KeyError")] * 2
    assert same(got, want)
    assert len(got) == 8  # samples 5 and 13 sit in batches 1 and 3: batch 1 fails, batch 3 fails, 6 are fine


def test_thread_errors_carry_their_traceback() -> None:
    loader = make_loader("thread", Exploding(30), batch_size=4, num_workers=2)
    with pytest.raises(KeyError, match="sample 5 is broken") as err:
        list(loader)
    frames = "".join(traceback.format_tb(err.value.__traceback__))
    assert "__getitem__" in frames and 'raise KeyError(f"sample {i} is broken")' in frames
    assert any("worker thread" in note for note in err.value.__notes__)


@pytest.mark.parametrize("mode", MODES)
def test_timeout_bounds_the_wait(mode: str) -> None:
    loader = make_loader(mode, Sleepy(10, delay=2.0), batch_size=2, num_workers=2, timeout=0.4)
    it = iter(loader)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"timed out after 0.4 seconds"):
        drain_strict(it)
    assert time.monotonic() - start < 1.8  # the wait is bounded; nothing joins the stuck worker


def drain_strict(it: object) -> list:
    return list(it)  # type: ignore[call-overload]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("persistent", [True, False])
def test_persistent_workers(mode: str, persistent: bool) -> None:
    def epochs(kind: str) -> list:
        loader = make_loader(kind, InitCounted(8), batch_size=2, num_workers=2, worker_init_fn=count_init,
                             persistent_workers=persistent, shuffle=True, generator=gen(2))  # fmt: skip
        return [torch.cat(drain(iter(loader))) for _ in range(3)]

    got = epochs(mode)
    assert same(got, epochs("torch"))
    seeds = [set(e[:, 3].tolist()) for e in got]
    if persistent:  # one base seed and one worker_init_fn call per worker for the loader's lifetime
        assert seeds[0] == seeds[1] == seeds[2]
    else:
        assert seeds[0] != seeds[1]
    assert all(e[:, 5].tolist() == [1] * 8 for e in got)


@pytest.mark.parametrize("mode", MODES)
def test_persistent_workers_after_an_abandoned_epoch(mode: str) -> None:
    def run(kind: str) -> list:
        loader = make_loader(kind, WhoLoads(12), batch_size=2, num_workers=2, persistent_workers=True,
                             generator=gen(1))  # fmt: skip
        it = iter(loader)
        first = [next(it), next(it)]
        return first + drain(iter(loader))  # the next epoch starts afresh on the same workers

    assert same(run(mode), run("torch"))


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_worker_init_fn(mode: str) -> None:
    """torch raises the worker_init_fn's error in place of that worker's first batch, then an error for each of
    its later batches (its fetcher was never made); the other worker's batches arrive."""
    kw = {"batch_size": 2, "num_workers": 2, "worker_init_fn": fail_in_worker_1}

    def shape(batches: list) -> list:
        return [b[1] if isinstance(b, tuple) else b["i"].tolist() for b in batches]

    got = shape(drain(iter(make_loader(mode, Squares(12), **kw))))
    want = shape(drain(iter(make_loader("torch", Squares(12), **kw))))
    assert [g if isinstance(g, list) else "error" for g in got] == [w if isinstance(w, list) else "error" for w in want]
    assert got[1] == want[1] == "ValueError"
    assert got[0] == [0, 1] and got[2] == [4, 5]
