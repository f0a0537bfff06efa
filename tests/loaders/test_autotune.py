"""The fast path's autotuner: the pure hill climber against throughput models, and the live pipeline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio.loaders.autotune import AutotuneConfig, Knob, Tuner
from dataio.storage import LocalStore

FAST = AutotuneConfig(window_s=0.02, min_batches=1, settle_s=0.0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def climb(model: Callable[[dict[str, int]], float], start: dict[str, int], batches: int = 3000) -> Tuner:
    """Runs a tuner against a throughput model: each batch of 32 takes 32 / model(settings) seconds."""
    clock = FakeClock()
    values = dict(start)
    limits = {"decode_threads": (1, 8, False), "prefetch": (2, 8, False), "io_threads": (1, 64, True)}
    knobs = [
        Knob(name, values[name], lo, hi, lambda v, n=name: values.__setitem__(n, v), geo)
        for name, (lo, hi, geo) in limits.items()
    ]
    tuner = Tuner(knobs, AutotuneConfig(window_s=1.0, settle_s=0.1), clock=clock)
    for _ in range(batches):
        clock.now += 32 / model(values)
        tuner.observe(32)
        assert values == tuner.values()  # the pipeline always runs what the tuner reports
        for name, (lo, hi, _) in limits.items():
            assert lo <= values[name] <= hi
    return tuner


def test_climbs_to_the_knee_of_an_io_then_decode_bound_pipeline() -> None:
    # reads give 40/s per request in flight, decoding 300/s per thread, 2 threads per core on 4 cores at most
    def model(v: dict[str, int]) -> float:
        return min(40.0 * v["io_threads"], 300.0 * min(v["decode_threads"], 4))

    tuner = climb(model, {"decode_threads": 1, "prefetch": 2, "io_threads": 1})
    best = 1200.0
    assert tuner.phase == "converged"
    assert model(tuner.values()) >= 0.95 * best
    assert tuner.values()["decode_threads"] <= 5  # no threads added beyond the point where they help
    kept = [d for d in tuner.decisions if d.get("kept")]
    assert {d["knob"] for d in kept} >= {"io_threads", "decode_threads"}
    assert any(d.get("kept") is False for d in tuner.decisions)  # useless steps are reverted
    summary = tuner.summary()
    assert summary["enabled"] and summary["knobs"] == tuner.values() and summary["decisions"] == tuner.decisions


def test_removes_threads_when_fewer_are_faster() -> None:
    def model(v: dict[str, int]) -> float:  # oversubscribed cores: every thread past 2 costs 15%
        return 1000.0 * min(v["decode_threads"], 2) * 0.85 ** max(0, v["decode_threads"] - 2)

    tuner = climb(model, {"decode_threads": 8, "prefetch": 4, "io_threads": 8})
    assert tuner.values()["decode_threads"] == 2
    assert any(d.get("knob") == "decode_threads" and d["to"] < d["from"] and d["kept"] for d in tuner.decisions)


def test_retunes_when_the_rate_changes_after_convergence() -> None:
    slow_store = {"on": False}

    def model(v: dict[str, int]) -> float:
        per_read = 5.0 if slow_store["on"] else 100.0
        return min(per_read * v["io_threads"], 400.0 * v["decode_threads"])

    clock = FakeClock()
    values = {"decode_threads": 1, "io_threads": 4}
    knobs = [
        Knob("decode_threads", 1, 1, 4, lambda v: values.__setitem__("decode_threads", v)),
        Knob("io_threads", 4, 1, 64, lambda v: values.__setitem__("io_threads", v), geometric=True),
    ]
    tuner = Tuner(knobs, AutotuneConfig(window_s=1.0, settle_s=0.0), clock=clock)
    for step in range(6000):
        if step == 2000:
            assert tuner.phase == "converged"
            before = dict(values)
            slow_store["on"] = True
        clock.now += 16 / model(values)
        tuner.observe(16)
    assert any(d.get("event") == "retune" for d in tuner.decisions)
    assert values["io_threads"] > before["io_threads"]


def test_epoch_boundaries_are_left_out_of_the_measured_rate() -> None:
    clock = FakeClock()
    values = {"decode_threads": 1}
    knob = Knob("decode_threads", 1, 1, 4, lambda v: values.__setitem__("decode_threads", v))
    tuner = Tuner([knob], AutotuneConfig(window_s=1.0, settle_s=0.0), clock=clock)
    for batch in range(400):  # 200 samples/s per thread, up to 2 threads; an epoch is 5 batches (0.4 s at best)
        if batch % 5 == 0:
            tuner.pause()
            clock.now += 30.0  # validation between epochs, then the first batch waits for the queues to refill
        clock.now += 16 / (200.0 * min(values["decode_threads"], 2))
        tuner.observe(16)
    rates = [d[k] for d in tuner.decisions if "knob" in d for k in ("rate_before", "rate_after")]
    assert rates and all(190 <= r <= 410 for r in rates), rates  # the 30 s gaps would dilute them to ~3/s
    assert values["decode_threads"] == 2 and tuner.phase == "converged"


def test_a_lucky_window_does_not_keep_a_useless_step() -> None:
    clock = FakeClock()
    values = {"decode_threads": 1}
    knob = Knob("decode_threads", 1, 1, 4, lambda v: values.__setitem__("decode_threads", v))
    tuner = Tuner([knob], AutotuneConfig(window_s=1.0, settle_s=0.0), clock=clock)
    while clock.now < 30.0:  # threads do not matter here; a burst of +30 % hits the first trial's window only
        lucky = 1.3 if 1.0 <= clock.now < 2.1 else 1.0
        clock.now += 10 / (300.0 * lucky)
        tuner.observe(10)
    trial = next(d for d in tuner.decisions if "knob" in d)
    assert trial["kept"] and trial["to"] == 2  # the burst fooled the trial …
    assert any(d.get("event") == "unconfirmed" for d in tuner.decisions)  # … not its second look
    assert values["decode_threads"] == 1 and tuner.phase == "converged"


@pytest.mark.parametrize(
    "kwargs",
    [{"window_s": -1}, {"min_batches": 0}, {"max_prefetch": 0}, {"max_decode_threads": 0}, {"memory_limit": 1.5}],
)
def test_config_is_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        AutotuneConfig(**kwargs)


def test_autotune_argument_is_validated(packed: Path) -> None:
    with pytest.raises(ValueError, match="autotune"):
        dataio.DataLoader(dataio.open_dataset(packed), autotune="yes")


def test_exactly_once_while_the_tuner_moves_every_knob(packed: Path) -> None:
    ds = dataio.open_dataset(packed, threads=2)
    loader = dataio.DataLoader(
        ds, batch_size=3, num_workers=1, shuffle=True, seed=3, autotune=FAST,
        pipeline=dataio.ImagePipeline(train=True, size=32),
    )
    moved: set[str] = set()
    for epoch in range(80):  # until every knob has moved (a few epochs; bounded)
        if moved == {"decode_threads", "prefetch", "io_threads"} and epoch >= 4:
            break
        loader.set_epoch(epoch)
        labels = []
        for images, batch_labels in loader:
            assert images.shape[1:] == (3, 32, 32)
            labels.extend(batch_labels.tolist())
        assert sorted(labels) == sorted(int(x) for x in ds.labels)  # every sample once, whatever the settings
        moved |= {d["knob"] for d in loader.stats()["autotune"]["decisions"] if "knob" in d}
    assert moved == {"decode_threads", "prefetch", "io_threads"}
    auto = loader.stats()["autotune"]
    assert auto["enabled"] and auto["knobs"]["io_threads"] == ds.reader.threads
    assert loader.stats()["stages"]["decode"]["threads"] == auto["knobs"]["decode_threads"]


def test_autotune_off_keeps_the_given_settings(packed: Path) -> None:
    ds = dataio.open_dataset(packed, threads=3)
    loader = dataio.DataLoader(ds, batch_size=4, num_workers=2, prefetch_factor=3, autotune=False,
                               pipeline=dataio.ImagePipeline(train=False, size=32))
    for _ in range(3):
        assert sum(len(labels) for _, labels in loader) == len(ds)
    auto = loader.stats()["autotune"]
    assert auto == {"enabled": False, "knobs": {"decode_threads": 2, "prefetch": 6, "io_threads": 3}}


class SlowStore(LocalStore):
    """A POSIX store answering each read after 4 ms, like a remote object store; counts reads in flight."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lock = threading.Lock()
        self.in_flight = self.peak = 0

    def read_range(self, path: str, offset: int, length: int) -> bytes:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.004)
            return super().read_range(path, offset, length)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_io_bound_pipeline_gets_more_reads_in_flight(packed: Path) -> None:
    ds = dataio.open_dataset(packed, threads=1, coalesce_gap=-1)
    ds.store = store = SlowStore(packed)
    loader = dataio.DataLoader(
        ds, batch_size=4, num_workers=1, shuffle=True, seed=1, pipeline=dataio.ImagePipeline(train=False, size=16),
        autotune=AutotuneConfig(window_s=0.1, min_batches=2, settle_s=0.02),
    )
    for epoch in range(8):
        loader.set_epoch(epoch)
        assert sum(len(labels) for _, labels in loader) == len(ds)
    auto = loader.stats()["autotune"]
    assert auto["knobs"]["io_threads"] > 1, auto["decisions"]
    assert store.peak > 1 and store.peak <= ds.reader.max_threads


def test_reader_set_threads_bounds_reads_in_flight(packed: Path) -> None:
    ds = dataio.open_dataset(packed, threads=2, coalesce_gap=-1)
    ds.store = store = SlowStore(packed)
    order = np.random.default_rng(0).permutation(len(ds))
    assert len(list(ds.read_records(order))) == len(ds)
    assert store.peak <= 2
    ds.reader.set_threads(6)
    store.peak = 0
    assert len(list(ds.read_records(order))) == len(ds)
    assert 2 < store.peak <= 6
    with pytest.raises(ValueError, match="threads"):
        ds.reader.set_threads(ds.reader.max_threads + 1)
