"""``dataio.DataLoader`` behaves like ``torch.utils.data.DataLoader`` on ordinary datasets."""

from __future__ import annotations

import threading
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.utils.data as tud

import dataio


class Squares(tud.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {"x": torch.tensor([i, i * i]), "i": i, "f": i / 2, "name": f"s{i}", "pair": [i, -i]}


class Exploding(Squares):
    def __getitem__(self, i: int) -> dict:
        if i == 13:
            raise KeyError(f"sample {i} is broken")
        return super().__getitem__(i)


class Stream(tud.IterableDataset):
    def __iter__(self):
        return iter(range(10))


def batches(loader) -> list:
    return list(loader)


def same(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return type(x) is type(y) and len(x) == len(y) and all(same(a, b) for a, b in zip(x, y, strict=True))
    return x == y


def assert_same(a: list, b: list) -> None:
    assert same(a, b)


def test_is_a_torch_dataloader_with_the_same_signature() -> None:
    import inspect

    ours = inspect.signature(dataio.DataLoader.__init__).parameters
    theirs = inspect.signature(tud.DataLoader.__init__).parameters
    for name, p in theirs.items():
        assert name in ours and ours[name].default == p.default and ours[name].kind == p.kind, name
    assert isinstance(dataio.DataLoader(Squares(3)), tud.DataLoader)


@pytest.mark.parametrize("workers", [0, 1, 3])
@pytest.mark.parametrize(("batch_size", "drop_last"), [(1, False), (4, False), (4, True), (7, True), (None, False)])
def test_sequential_batches_are_identical(workers: int, batch_size: int | None, drop_last: bool) -> None:
    ds = Squares(30)
    ours = dataio.DataLoader(ds, batch_size=batch_size, drop_last=drop_last, num_workers=workers)
    theirs = tud.DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    got, want = batches(ours), batches(theirs)
    if batch_size is None:
        assert [g["i"] for g in got] == [w["i"] for w in want]
    else:
        assert_same(got, want)


@pytest.mark.parametrize("workers", [0, 2])
def test_shuffled_batches_match_with_the_same_generator(workers: int) -> None:
    ds = Squares(50)
    ours = dataio.DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers,
                             generator=torch.Generator().manual_seed(3))
    theirs = tud.DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
    assert_same(batches(ours), batches(theirs))
    ids = sorted(int(i) for b in dataio.DataLoader(ds, batch_size=8, shuffle=True, num_workers=2) for i in b["i"])
    assert ids == list(range(50))


def test_out_of_order_yields_every_batch_once() -> None:
    ds = Squares(40)
    got = batches(dataio.DataLoader(ds, batch_size=5, num_workers=3, in_order=False))
    assert sorted(int(i) for b in got for i in b["i"]) == list(range(40))


def test_dataset_exception_reaches_the_caller_with_its_traceback() -> None:
    for workers in (0, 2):
        loader = dataio.DataLoader(Exploding(40), batch_size=4, num_workers=workers)
        with pytest.raises(KeyError, match="sample 13 is broken") as err:
            list(loader)
        frames = "".join(traceback.format_tb(err.value.__traceback__))
        assert "__getitem__" in frames and 'raise KeyError(f"sample {i} is broken")' in frames
    deadline = time.monotonic() + 5
    while any(t.name.startswith("dataio-loader") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name.startswith("dataio-loader") for t in threading.enumerate())


def test_timeout_raises_instead_of_hanging() -> None:
    release = threading.Event()

    class Stuck(Squares):
        def __getitem__(self, i: int) -> dict:
            if i == 5:
                release.wait(10)
            return super().__getitem__(i)

    loader = dataio.DataLoader(Stuck(10), batch_size=2, num_workers=2, timeout=0.3)
    with pytest.raises(RuntimeError, match=r"timed out after 0.3 seconds"):
        list(loader)
    release.set()


def test_worker_init_fn_runs_once_per_worker_thread() -> None:
    seen = []
    list(dataio.DataLoader(Squares(20), batch_size=2, num_workers=3, worker_init_fn=seen.append))
    assert sorted(seen) == [0, 1, 2]


def test_validation_errors_match_torch() -> None:
    for kwargs in ({"num_workers": -1}, {"timeout": -1}, {"prefetch_factor": 2}, {"persistent_workers": True},
                   {"sampler": [0, 1], "shuffle": True}, {"batch_sampler": [[0]], "batch_size": 2}):
        with pytest.raises(ValueError) as ours:
            dataio.DataLoader(Squares(3), **kwargs)
        with pytest.raises(ValueError) as theirs:
            tud.DataLoader(Squares(3), **kwargs)
        assert str(ours.value) == str(theirs.value)


def test_iterable_dataset_and_persistent_workers() -> None:
    assert [int(x) for b in dataio.DataLoader(Stream(), batch_size=3) for x in b] == list(range(10))
    loader = dataio.DataLoader(Squares(12), batch_size=4, num_workers=2, persistent_workers=True)
    assert_same(batches(loader), batches(loader))


def test_shard_dataset_through_the_generic_path(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    ours = batches(dataio.DataLoader(ds, batch_size=5, num_workers=2))
    theirs = batches(tud.DataLoader(ds, batch_size=5))
    assert [b["key"] for b in ours] == [b["key"] for b in theirs]
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(ours, theirs, strict=True))
    assert [b["image"] for b in ours] == [b["image"] for b in theirs]
