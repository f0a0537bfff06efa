"""DistributedShuffleSampler API: epochs, passes, state validation, rank resolution, shard order."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dataio.sampling import DistributedShuffleSampler
from tests.helpers import assert_state_roundtrip
from tests.sampling.common import ALL_MODES, PARTITIONED_MODES, SHUFFLING_MODES, Job, Sharded, rank_epochs

SHARDED = Sharded([50, 0, 120, 7, 64, 64, 200, 1, 33])  # 539 samples, 9 shards (one empty)


def test_exported_at_top_level():
    import dataio

    assert dataio.DistributedShuffleSampler is DistributedShuffleSampler


@pytest.mark.parametrize("mode", SHUFFLING_MODES)
def test_every_mode_shuffles_and_epochs_differ(mode):
    sampler = DistributedShuffleSampler(SHARDED, mode, world_size=1, rank=0, block_size=4, window=8)
    first = sampler.epoch_indices()
    assert not np.array_equal(first, np.arange(len(SHARDED))), "no shuffle"
    sampler.set_epoch(1)
    assert not np.array_equal(sampler.epoch_indices(), first), "same order in two epochs"
    for world_size in (2, 3):  # every rank's own part is reshuffled too
        for r, stream in enumerate(rank_epochs(SHARDED, mode, world_size, block_size=4, window=8)):
            assert not np.array_equal(stream, np.sort(stream)), (world_size, r)


def test_sequential_is_storage_order_every_epoch():
    sampler = DistributedShuffleSampler(range(10), "sequential", world_size=3, rank=1)
    assert sampler.epoch_indices().tolist() == [1, 4, 7, 0]  # padded with the epoch's head
    sampler.set_epoch(5)
    assert list(sampler) == [1, 4, 7, 0]


def test_global_matches_torch_padding_rule():
    n, world = 10, 4
    order = DistributedShuffleSampler(range(n), "global", world_size=1, rank=0).epoch_indices()
    padded = np.concatenate([order, order[: (-n) % world]])
    for r in range(world):
        assert DistributedShuffleSampler(range(n), world_size=world, rank=r).epoch_indices().tolist() == (
            padded[r::world].tolist()
        )


def test_seeds_differ():
    a = DistributedShuffleSampler(SHARDED, seed=1, world_size=1, rank=0).epoch_indices()
    b = DistributedShuffleSampler(SHARDED, seed=2, world_size=1, rank=0).epoch_indices()
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_empty_dataset_yields_nothing(mode):
    sampler = DistributedShuffleSampler(range(0), mode, world_size=4, rank=3)
    assert len(sampler) == 0 and list(sampler) == [] and sampler.epoch_indices().size == 0
    assert sampler.shard_order().size == 0
    assert_state_roundtrip(lambda: Job(range(0), 2, mode), Job.consume, prefix=3)


@pytest.mark.parametrize("mode", ALL_MODES)
def test_fewer_samples_than_ranks(mode):
    streams = rank_epochs(range(3), mode, 8)
    assert all(s.size == 1 for s in streams)
    assert set(np.concatenate(streams).tolist()) == {0, 1, 2}
    assert all(s.size == 0 for s in rank_epochs(range(3), mode, 8, drop_last=True))


def test_passes_replay_unless_resumed():
    sampler = DistributedShuffleSampler(SHARDED, "block", world_size=2, rank=1)
    full = list(sampler)
    assert sampler.consumed == len(full) * 2, "a finished pass is a finished epoch in the state"
    assert sampler.epoch_indices().tolist() == full, "outside a pass: what the next pass yields"
    assert list(sampler) == full, "a second pass without set_epoch replays the epoch (torch semantics)"
    it = iter(sampler)
    head = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state["consumed"] == 10
    sampler.set_epoch(0)  # same epoch: keeps the position
    assert sampler.consumed == 10
    resumed = DistributedShuffleSampler(SHARDED, "block", world_size=2, rank=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)
    assert head + list(resumed) == full
    sampler.set_epoch(1)
    assert sampler.consumed == 0 and len(list(sampler)) == len(full)


def test_finished_epoch_resumes_empty():
    sampler = DistributedShuffleSampler(SHARDED, world_size=3, rank=0)
    list(sampler)
    resumed = DistributedShuffleSampler(SHARDED, world_size=3, rank=0)
    resumed.load_state_dict(sampler.state_dict())
    assert list(resumed) == []
    assert len(list(resumed)) == len(resumed), "the next pass is a full epoch again"


def test_begin_epoch_and_advance_fast_path():
    sampler = DistributedShuffleSampler(SHARDED, "shard", world_size=4, rank=2)
    indices = sampler.begin_epoch()
    sampler.advance(7)
    state = sampler.state_dict()
    assert state["consumed"] == 28
    other = DistributedShuffleSampler(SHARDED, "shard", world_size=4, rank=2)
    other.load_state_dict(state)
    assert np.array_equal(other.begin_epoch(), indices[7:])
    with pytest.raises(ValueError, match="count"):
        other.advance(len(other) + 1)


def test_advance_of_a_superseded_pass_is_ignored():
    sampler = DistributedShuffleSampler(SHARDED, "global", world_size=2, rank=1)
    sampler.begin_epoch()
    first = sampler.pass_id
    sampler.advance(5, first)
    assert sampler.state_dict()["consumed"] == 10
    sampler.begin_epoch()  # a second iterator replays the epoch: its pass is now the sampler's position
    second = sampler.pass_id
    assert second != first
    sampler.advance(len(sampler), first)  # the first iterator finishing changes nothing
    assert sampler.state_dict()["consumed"] == 0
    sampler.advance(3, second)
    assert sampler.state_dict()["consumed"] == 6


def test_iterator_is_detached_by_set_epoch():
    sampler = DistributedShuffleSampler(SHARDED, world_size=1, rank=0)
    it = iter(sampler)
    next(it)
    sampler.set_epoch(3)
    next(it)
    assert sampler.consumed == 0 and sampler.epoch == 3


def test_state_is_plain_and_complete():
    sampler = DistributedShuffleSampler(
        SHARDED, "block", seed=5, world_size=2, rank=0, block_size=8, window=3
    )
    state = sampler.state_dict()
    assert json.loads(json.dumps(state)) == state
    assert state["mode"] == "block" and state["seed"] == 5 and state["epoch"] == 0 and state["consumed"] == 0
    assert state["mode_params"] == {"block_size": 8, "window": 3} and state["world_size"] == 2


def test_load_adopts_mode_seed_and_params():
    source = DistributedShuffleSampler(SHARDED, "block", seed=9, world_size=2, rank=0, block_size=3, window=2)
    target = DistributedShuffleSampler(SHARDED, world_size=4, rank=3)
    target.load_state_dict(source.state_dict())
    assert (target.mode, target.seed, target.mode_params) == ("block", 9, {"block_size": 3, "window": 2})
    assert target.world_size == 4


@pytest.mark.parametrize("mode", PARTITIONED_MODES)
def test_partitioned_modes_refuse_another_world_size(mode):
    state = DistributedShuffleSampler(SHARDED, mode, world_size=4, rank=0).state_dict()
    with pytest.raises(ValueError, match="partitions the data by world size"):
        DistributedShuffleSampler(SHARDED, mode, world_size=2, rank=0).load_state_dict(state)


def _state(**changes):
    state = DistributedShuffleSampler(SHARDED, "block", world_size=2, rank=0).state_dict()
    state.update(changes)
    return state


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ([1, 2], TypeError, "mapping"),
        (_state(kind="other"), ValueError, "not a sampler state"),
        (_state(version=99), ValueError, "version"),
        ({k: v for k, v in _state().items() if k != "epoch"}, ValueError, "misses"),
        (_state(epoch="1"), TypeError, "epoch"),
        (_state(consumed=True), TypeError, "consumed"),
        (_state(consumed=-2), ValueError, "consumed"),
        (_state(consumed=10_000), ValueError, "exceeds"),
        (_state(mode="bogus"), ValueError, "unknown shuffle mode"),
        (_state(mode_params={"nope": 1}), TypeError, "unknown mode parameter"),
        (_state(num_samples=5), ValueError, "dataset of 5 samples"),
        (_state(layout_digest="0"), ValueError, "shard sizes"),
    ],
)
def test_load_state_dict_rejects_bad_states(state, error, match):
    sampler = DistributedShuffleSampler(SHARDED, "block", world_size=2, rank=0)
    before = sampler.state_dict()
    with pytest.raises(error, match=match):
        sampler.load_state_dict(state)
    assert sampler.state_dict() == before, "a rejected state changed the sampler"


def test_constructor_validation():
    with pytest.raises(ValueError, match="unknown shuffle mode"):
        DistributedShuffleSampler(SHARDED, "random")
    with pytest.raises(ValueError, match="rank"):
        DistributedShuffleSampler(SHARDED, world_size=2, rank=2)
    with pytest.raises(ValueError, match="world_size"):
        DistributedShuffleSampler(SHARDED, world_size=0, rank=0)
    with pytest.raises(ValueError, match="seed"):
        DistributedShuffleSampler(SHARDED, seed=-1)
    with pytest.raises(ValueError, match="window"):
        DistributedShuffleSampler(SHARDED, "block", window=0)
    with pytest.raises(TypeError, match="block_size"):
        DistributedShuffleSampler(SHARDED, "block", block_size=2.5)
    with pytest.raises(TypeError, match="Sized"):
        DistributedShuffleSampler(object())
    with pytest.raises(ValueError, match="non-negative"):
        DistributedShuffleSampler(Sharded([3, -1]))


def test_rank_and_world_size_from_environment(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    sampler = DistributedShuffleSampler(SHARDED)
    assert (sampler.rank, sampler.world_size) == (2, 3)
    assert DistributedShuffleSampler(SHARDED, rank=0).rank == 0
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    sampler = DistributedShuffleSampler(SHARDED)
    assert (sampler.rank, sampler.world_size) == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "x")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        DistributedShuffleSampler(SHARDED)


def test_rank_and_world_size_from_torch_distributed(monkeypatch, tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "9")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        sampler = DistributedShuffleSampler(SHARDED)
        assert (sampler.rank, sampler.world_size) == (0, 1)
    finally:
        dist.destroy_process_group()


def test_deterministic_across_threads():
    def build(rank: int) -> np.ndarray:
        return DistributedShuffleSampler(SHARDED, "shard", world_size=4, rank=rank % 4).epoch_indices()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(build, range(16)))
    for rank in range(16):
        assert np.array_equal(results[rank], build(rank))


def test_shard_schedule_follows_the_reads():
    sampler = DistributedShuffleSampler(SHARDED, "shard", world_size=2, rank=1, buffer_size=4)
    indices = sampler.epoch_indices()
    shard = sampler.layout.shard_of(indices)
    shards, first, last = sampler.shard_schedule()
    expected = list(dict.fromkeys(shard.tolist()))
    assert shards.tolist() == expected == sampler.shard_order(indices).tolist()
    for s, f, la in zip(shards, first, last, strict=True):
        hits = np.flatnonzero(shard == s)
        assert (f, la) == (hits[0], hits[-1])
    with pytest.raises(RuntimeError, match="begin_epoch"):
        sampler.advance(10)
    sampler.begin_epoch()
    sampler.advance(10)
    assert sampler.shard_order().tolist() == list(dict.fromkeys(shard[10:].tolist()))


def test_plain_sized_uses_stand_in_shards():
    sampler = DistributedShuffleSampler(range(100), "shard", world_size=1, rank=0, shard_size=30)
    assert sampler.layout.sizes.tolist() == [30, 30, 30, 10]
    assert set(sampler.shard_order().tolist()) == {0, 1, 2, 3}
    assert "mode='shard'" in repr(sampler)
