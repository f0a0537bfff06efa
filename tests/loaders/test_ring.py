"""Both rings (native lock-free and the Python twin) through the same tests: order, bounds, exactly-once under
contention, timeouts, close, reference counts, bad arguments, Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from dataio.loaders import rings
from dataio.loaders.rings import NATIVE_RINGS, PyRing, RingClosed, make_ring

KINDS = ["spsc", "mpmc"]
Factory = Callable[..., Any]


@pytest.fixture(params=["native", "python"])
def make(request: pytest.FixtureRequest) -> Factory:
    """``make(capacity, kind)`` for one implementation. The native one is skipped when the extension is not
    built, except in CI (``CI=true``), where a missing extension is a failure."""
    if request.param == "native" and request.config.getoption("--no-native"):
        pytest.skip("--no-native: the Python rings only")
    if request.param == "native" and not NATIVE_RINGS:
        if os.environ.get("CI") == "true":
            pytest.fail("dataio._native.Ring is not built (CI=true requires the extension)")
        pytest.skip("dataio._native.Ring is not built")
    native = request.param == "native"
    return lambda capacity, kind="mpmc": make_ring(capacity, kind, native=native)


def run_threads(*targets: Callable[[], object], timeout: float = 20.0) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a ring thread did not finish"


@pytest.mark.parametrize("kind", KINDS)
def test_fifo_single_thread(make: Factory, kind: str) -> None:
    r = make(4, kind)
    for round_ in range(5):  # several laps: positions wrap around the slots
        for i in range(4):
            assert r.put((round_, i))
        assert len(r) == 4
        assert [r.get() for _ in range(4)] == [(round_, i) for i in range(4)]
        assert len(r) == 0


@pytest.mark.parametrize(("kind", "asked", "real"), [("mpmc", 1, 2), ("mpmc", 5, 8), ("mpmc", 8, 8), ("spsc", 1, 1),
                                                     ("spsc", 5, 5)])
def test_capacity_bound(make: Factory, kind: str, asked: int, real: int) -> None:
    r = make(asked, kind)
    assert r.capacity == real and r.kind == kind
    assert all(r.try_put(i) for i in range(real))
    assert not r.try_put("one too many")
    assert not r.put("one too many", timeout=0)
    assert len(r) == real
    assert r.try_get() == (True, 0)
    assert r.try_put("fits again")
    assert [r.get() for _ in range(real)] == [*range(1, real), "fits again"]
    assert r.try_get() == (False, None)


def test_mpmc_exactly_once_and_per_producer_order(make: Factory) -> None:
    producers, consumers, n = 4, 4, 20_000
    r = make(64, "mpmc")
    received: list[list[tuple[int, int]]] = [[] for _ in range(consumers)]

    def produce(p: int) -> Callable[[], None]:
        def run() -> None:
            for i in range(n):
                assert r.put((p, i))

        return run

    def consume(c: int) -> Callable[[], None]:
        def run() -> None:
            out = received[c]
            while True:
                try:
                    out.append(r.get())
                except RingClosed:
                    return

        return run

    prod = [threading.Thread(target=produce(p), daemon=True) for p in range(producers)]
    cons = [threading.Thread(target=consume(c), daemon=True) for c in range(consumers)]
    for t in prod + cons:
        t.start()
    for t in prod:
        t.join(30)
    r.close()
    for t in cons:
        t.join(30)
    assert not any(t.is_alive() for t in prod + cons)
    everything = [x for out in received for x in out]
    assert len(everything) == producers * n
    assert set(everything) == {(p, i) for p in range(producers) for i in range(n)}
    for out in received:  # a consumer takes positions in order, so each producer's items arrive in order
        for p in range(producers):
            mine = [i for q, i in out if q == p]
            assert mine == sorted(mine)


def test_spsc_stress_in_order(make: Factory) -> None:
    n = 50_000
    r = make(16, "spsc")
    got: list[int] = []

    def produce() -> None:
        for i in range(n):
            assert r.put(i)
        r.close()

    def consume() -> None:
        while True:
            try:
                got.append(r.get())
            except RingClosed:
                return

    run_threads(produce, consume)
    assert got == list(range(n))


@pytest.mark.parametrize("kind", KINDS)
def test_timeouts(make: Factory, kind: str) -> None:
    r = make(1, kind)
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        r.get(timeout=0.12)
    assert 0.1 <= time.monotonic() - t < 3
    with pytest.raises(TimeoutError):
        r.get(timeout=0)
    while r.try_put("x"):
        pass
    t = time.monotonic()
    assert r.put("y", timeout=0.12) is False
    assert 0.1 <= time.monotonic() - t < 3
    assert r.get(timeout=5) == "x"  # there is an item: no waiting


@pytest.mark.parametrize("kind", KINDS)
def test_timed_get_receives_a_late_put(make: Factory, kind: str) -> None:
    r = make(2, kind)
    threading.Timer(0.1, lambda: r.put("late")).start()
    assert r.get(timeout=10) == "late"


@pytest.mark.parametrize("kind", KINDS)
def test_close_wakes_blocked_getters_and_putters(make: Factory, kind: str) -> None:
    waiters = 1 if kind == "spsc" else 3
    empty, full = make(2, kind), make(2, kind)
    while full.try_put(0):
        pass
    outcomes: list[str] = []

    def blocked(call: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                call()
                outcomes.append("returned")
            except RingClosed:
                outcomes.append("closed")

        return run

    threads = [threading.Thread(target=blocked(empty.get), daemon=True) for _ in range(waiters)]
    threads += [threading.Thread(target=blocked(lambda: full.put(1)), daemon=True) for _ in range(waiters)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # let them block
    assert outcomes == []
    t0 = time.monotonic()
    empty.close()
    full.close()
    full.close()  # idempotent
    for t in threads:
        t.join(5)
    assert time.monotonic() - t0 < 1.0  # in practice microseconds (native) to milliseconds
    assert outcomes == ["closed"] * (2 * waiters)
    assert empty.closed and full.closed


@pytest.mark.parametrize("kind", KINDS)
def test_get_drains_after_close(make: Factory, kind: str) -> None:
    r = make(4, kind)
    for i in range(3):
        r.put(i)
    assert not r.closed
    r.close()
    with pytest.raises(RingClosed):
        r.put(3)
    with pytest.raises(RingClosed):
        r.try_put(3)
    assert r.get() == 0
    assert r.try_get() == (True, 1)
    assert r.get(timeout=0) == 2
    for call in (r.get, r.try_get, lambda: r.get(timeout=0.01)):
        with pytest.raises(RingClosed):
            call()


def test_ring_closed_is_one_name_for_both(make: Factory) -> None:
    assert issubclass(RingClosed, Exception)
    if NATIVE_RINGS:
        assert RingClosed is rings._native.RingClosed
    r = make(1)
    r.close()
    with pytest.raises(rings.RingClosed):
        r.put(0)


@pytest.mark.parametrize("kind", KINDS)
def test_no_reference_leaks(make: Factory, kind: str) -> None:
    r = make(2, kind)
    obj = object()
    base = sys.getrefcount(obj)
    assert r.put(obj)
    assert sys.getrefcount(obj) == base + 1  # the ring's reference
    assert r.try_put(obj)
    assert not r.put(obj, timeout=0.01)  # full: not stored, no reference kept
    assert not r.try_put(obj)
    assert sys.getrefcount(obj) == base + 2
    got = r.get()
    assert got is obj
    del got
    ok, got = r.try_get()
    assert ok and got is obj
    del got, ok
    assert sys.getrefcount(obj) == base
    r.close()
    with pytest.raises(RingClosed):
        r.put(obj)
    assert sys.getrefcount(obj) == base


class Token:
    """A weakly referenceable item."""


@pytest.mark.parametrize("kind", KINDS)
def test_dropping_a_ring_frees_its_items(make: Factory, kind: str) -> None:
    r = make(4, kind)
    for _ in range(3):  # move head and tail off slot 0 so that the leftovers wrap around
        r.put(Token())
        r.get()
    tokens = [Token() for _ in range(r.capacity)]
    refs = [weakref.ref(t) for t in tokens]
    for t in tokens:
        assert r.try_put(t)
    del tokens, t
    assert all(ref() is not None for ref in refs)
    del r  # no cycle: the ring's items go with it, no gc pass needed
    assert all(ref() is None for ref in refs)


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((0,), ValueError, "capacity"),
        (((1 << 24) + 1,), ValueError, "capacity"),
        ((-3,), ValueError, "capacity"),
        (("8",), TypeError, None),
        ((2.0,), TypeError, None),
        ((8, "spmc"), ValueError, "kind"),
        ((8, 3), TypeError, "kind"),
    ],
)
def test_bad_ring_arguments(make: Factory, args: tuple[Any, ...], error: type[Exception], words: str | None) -> None:
    with pytest.raises(error, match=words):
        make(*args)


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan"), "1", [1]])
def test_bad_timeouts(make: Factory, timeout: Any) -> None:
    r = make(2)
    r.put(1)
    error = TypeError if isinstance(timeout, (str, list)) else ValueError
    with pytest.raises(error, match="timeout"):
        r.get(timeout=timeout)
    with pytest.raises(error, match="timeout"):
        r.put(2, timeout=timeout)
    assert len(r) == 1  # nothing happened


def test_numpy_scalars_are_numbers(make: Factory) -> None:
    np = pytest.importorskip("numpy")
    r = make(np.int64(3), "spsc")
    assert r.capacity == 3
    with pytest.raises(TimeoutError):
        r.get(timeout=np.float32(0.01))
    with pytest.raises(TimeoutError):
        r.get(timeout=np.int8(0))


def test_huge_timeout_means_forever(make: Factory) -> None:
    r = make(2)
    threading.Timer(0.1, lambda: r.put("x")).start()
    assert r.get(timeout=float("inf")) == "x"
    assert r.put("y", timeout=1e300)


class Interrupted(Exception):
    pass


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("kind", KINDS)
def test_blocking_calls_run_signal_handlers(make: Factory, kind: str) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread")

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    r = make(1, kind)
    old = signal.signal(signal.SIGALRM, handler)
    try:
        for call in (r.get, lambda: r.put(0) and r.put(0) and r.put(0)):
            t = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.15)
            with pytest.raises(Interrupted):
                call()
            assert time.monotonic() - t < 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # the ring still works, on both sides
    while r.try_get()[0]:
        pass
    assert r.try_put(1) and r.get() == 1


@pytest.mark.parametrize("side", ["get", "put"])
def test_spsc_refuses_a_second_concurrent_thread(make: Factory, side: str) -> None:
    r = make(2, "spsc")
    if side == "put":
        while r.try_put("filler"):
            pass
    outcome: list[object] = []
    waiting = threading.Thread(target=lambda: outcome.append(r.get() if side == "get" else r.put("late")),
                               daemon=True)
    waiting.start()
    time.sleep(0.2)  # the first thread now waits inside get / put
    with pytest.raises(RuntimeError, match="mpmc"):
        r.get(timeout=0) if side == "get" else r.put("second", timeout=0)
    # the other side unblocks the waiting thread
    assert r.put("for the first") if side == "get" else r.get() == "filler"
    waiting.join(5)
    assert outcome == (["for the first"] if side == "get" else [True])
    while r.try_get()[0]:  # the refused call left the ring and its side as they were
        pass
    assert r.put("again") and r.get() == "again"


def test_make_ring_selects_the_implementation() -> None:
    assert isinstance(make_ring(3, native=False), PyRing)
    if NATIVE_RINGS:
        assert type(make_ring(3)).__module__ == "dataio._native"
    else:
        assert isinstance(make_ring(3), PyRing)
        with pytest.raises(RuntimeError, match="not built"):
            make_ring(3, native=True)
