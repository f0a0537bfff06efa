"""``dataio.DataLoader`` is a ``torch.utils.data.DataLoader``: signature, validation, batches.

The behaviour-by-behaviour comparison in both worker modes is the parity suite (``test_parity_*.py``)."""

from __future__ import annotations

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


@pytest.mark.parametrize("workers", [0, 3])
@pytest.mark.parametrize(("batch_size", "drop_last"), [(1, False), (4, False), (4, True), (7, True), (None, False)])
def test_sequential_batches_are_identical(workers: int, batch_size: int | None, drop_last: bool) -> None:
    ds = Squares(30)
    ours = dataio.DataLoader(ds, batch_size=batch_size, drop_last=drop_last, num_workers=workers,
                             worker_mode="thread")  # fmt: skip
    theirs = tud.DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
    assert len(ours) == len(theirs)
    got, want = batches(ours), batches(theirs)
    if batch_size is None:
        assert [g["i"] for g in got] == [w["i"] for w in want]
    else:
        assert_same(got, want)


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
    for mode in ("process", "thread"):
        loader = dataio.DataLoader(Squares(12), batch_size=4, num_workers=2, persistent_workers=True, worker_mode=mode)
        assert_same(batches(loader), batches(loader))
