"""Parity of the batches themselves: torch's DataLoader vs dataio's in both worker modes, same inputs."""

from __future__ import annotations

import pytest
import torch
import torch.utils.data as tud

from tests.loaders.parity import (
    MODES,
    LenBatchSampler,
    NoLenBatchSampler,
    NoLenSampler,
    Shards,
    Squares,
    drain,
    gen,
    make_loader,
    pairs_collate,
    same,
)


def both(mode: str, dataset: object, **kw: object) -> tuple[list, list, tud.DataLoader, tud.DataLoader]:
    """One epoch of each loader."""
    ours, theirs = make_loader(mode, dataset, **kw), make_loader("torch", dataset, **kw)
    return drain(iter(ours)), drain(iter(theirs)), ours, theirs


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("batch_size", "drop_last"), [(4, False), (7, True), (None, False)])
def test_sequential_batches(mode: str, batch_size: int | None, drop_last: bool) -> None:
    got, want, ours, theirs = both(mode, Squares(30), batch_size=batch_size, drop_last=drop_last, num_workers=2)
    assert len(ours) == len(theirs)
    assert same(got, want)


@pytest.mark.parametrize("mode", MODES)
def test_shuffled_batches_with_a_generator(mode: str) -> None:
    got, want, _, _ = both(mode, Squares(50), batch_size=8, shuffle=True, num_workers=2, generator=gen(3))
    assert same(got, want)
    # the generator advanced by the same draws: the next epoch is the same too
    ours = make_loader(mode, Squares(50), batch_size=8, shuffle=True, num_workers=2, generator=gen(4))
    theirs = make_loader("torch", Squares(50), batch_size=8, shuffle=True, num_workers=2, generator=gen(4))
    assert same([drain(iter(ours)) for _ in range(2)], [drain(iter(theirs)) for _ in range(2)])


@pytest.mark.parametrize("mode", MODES)
def test_custom_collate(mode: str) -> None:
    got, want, _, _ = both(mode, Squares(17), batch_size=5, num_workers=2, collate_fn=pairs_collate)
    assert got == want == [(5, [0, 1, 2, 3, 4]), (5, [5, 6, 7, 8, 9]), (5, [10, 11, 12, 13, 14]), (2, [15, 16])]


@pytest.mark.parametrize("mode", MODES)
def test_sampler_without_len(mode: str) -> None:
    got, want, ours, theirs = both(mode, Squares(11), batch_size=3, num_workers=2, sampler=NoLenSampler(11))
    assert same(got, want)
    assert [int(i) for b in got for i in b["i"]] == list(range(10, -1, -1))
    for loader in (ours, theirs):
        with pytest.raises(TypeError):
            len(loader)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("batch_sampler", [NoLenBatchSampler, LenBatchSampler])
def test_batch_sampler_with_and_without_len(mode: str, batch_sampler: type) -> None:
    got, want, ours, theirs = both(mode, Squares(23), batch_sampler=batch_sampler(23), num_workers=2)
    assert same(got, want)
    assert [len(b["i"]) for b in got][:5] == [1, 2, 3, 4, 1]
    if batch_sampler is LenBatchSampler:
        assert len(ours) == len(theirs) == len(got)
    else:
        for loader in (ours, theirs):
            with pytest.raises(TypeError):
                len(loader)


@pytest.mark.parametrize("mode", MODES)
def test_iterable_dataset_sharded_by_worker_info(mode: str) -> None:
    ds = Shards([range(0, 10), range(100, 103)])  # worker 1 runs dry first
    got, want, ours, theirs = both(mode, ds, batch_size=4, num_workers=2)
    assert same(got, want)
    assert sorted(int(x) for b in got for x in b) == [*range(10), 100, 101, 102]
    assert len(ours) == len(theirs)


@pytest.mark.parametrize("mode", MODES)
def test_out_of_order_yields_every_batch_once(mode: str) -> None:
    got, want, _, _ = both(mode, Squares(40), batch_size=5, num_workers=2, in_order=False)
    key = sorted(tuple(b["i"].tolist()) for b in got)
    assert key == sorted(tuple(b["i"].tolist()) for b in want) and len(key) == 8


@pytest.mark.parametrize("mode", MODES)
def test_pin_memory(mode: str) -> None:
    kw = {"batch_size": 4, "num_workers": 2, "pin_memory": True}
    if torch.accelerator.is_available():
        got, want, _, _ = both(mode, Squares(10), **kw)
        assert all(b["x"].is_pinned() for b in got)
    else:  # torch warns that it cannot pin and loads the same batches: so does dataio
        with pytest.warns(UserWarning, match="pin_memory"):
            got = drain(iter(make_loader(mode, Squares(10), **kw)))
        with pytest.warns(UserWarning, match="pin_memory"):
            want = drain(iter(make_loader("torch", Squares(10), **kw)))
    assert same(got, want)


@pytest.mark.parametrize("mode", MODES)
def test_two_live_iterators(mode: str) -> None:
    def interleaved(kind: str) -> list:
        loader = make_loader(kind, Squares(20), batch_size=3, shuffle=True, num_workers=2, generator=gen(9))
        a, b = iter(loader), iter(loader)
        out = []
        for _ in range(3):
            out += [next(a), next(b)]
        return out + drain(a) + drain(b)

    assert same(interleaved(mode), interleaved("torch"))


@pytest.mark.parametrize("mode", MODES)
def test_len_and_main_process_loading(mode: str) -> None:
    for kw in ({"batch_size": 4}, {"batch_size": 4, "drop_last": True}, {"batch_size": None}):
        ours, theirs = make_loader(mode, Squares(10), **kw), make_loader("torch", Squares(10), **kw)
        assert len(ours) == len(theirs)
        assert same(drain(iter(ours)), drain(iter(theirs)))  # num_workers=0: torch's own iterator


@pytest.mark.parametrize("mode", MODES)
def test_iterable_dataset_with_persistent_workers(mode: str) -> None:
    def epochs(kind: str) -> list:
        loader = make_loader(kind, Shards([range(0, 7), range(50, 52)]), batch_size=3, num_workers=2,
                             persistent_workers=True)  # fmt: skip
        return [drain(iter(loader)) for _ in range(3)]  # the worker that ran dry works again next epoch

    got = epochs(mode)
    assert same(got, epochs("torch"))
    assert same(got[0], got[2]) and sum(len(b) for b in got[1]) == 9
