"""Hypothesis properties of every mode: exactly-once, equal lengths, determinism, elasticity."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataio.sampling import DistributedShuffleSampler
from dataio.sampling.layout import ShardLayout
from dataio.sampling.modes import local_partition
from dataio.sampling.quality import batch_diversity
from tests.helpers import assert_state_roundtrip
from tests.sampling.common import (
    ALL_MODES,
    ELASTIC_MODES,
    Job,
    datasets,
    interleave,
    mode_kwargs,
    rank_epochs,
)

PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
modes = st.sampled_from(ALL_MODES)
world_sizes = st.integers(1, 9)


@PROPS
@given(datasets, modes, world_sizes, st.booleans(), mode_kwargs, st.integers(0, 3))
def test_exactly_once_and_equal_lengths(dataset, mode, world_size, drop_last, kw, epoch):
    n = len(dataset)
    samplers = [
        DistributedShuffleSampler(dataset, mode, world_size=world_size, rank=r, drop_last=drop_last, **kw)
        for r in range(world_size)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    streams = [s.epoch_indices() for s in samplers]
    per_rank = n // world_size if drop_last else -(-n // world_size)
    assert all(
        s.dtype == np.int64 and s.size == per_rank == len(sm) for s, sm in zip(streams, samplers, strict=True)
    )
    everything = np.concatenate(streams)
    counts = np.bincount(everything, minlength=n) if n else np.zeros(0, dtype=np.int64)
    assert counts.size == n, "an index outside the dataset"
    if drop_last:
        assert counts.max(initial=0) <= 1, "a sample repeats with drop_last"
        assert counts.sum() == n - n % world_size
    else:
        assert counts.min(initial=1) >= 1, "a sample is missing"
        assert counts.sum() - n == per_rank * world_size - n, "more repeats than padding"


@PROPS
@given(datasets, modes, world_sizes, st.booleans(), mode_kwargs, st.integers(0, 5), st.integers(0, 2**40))
def test_deterministic_from_seed_and_epoch(dataset, mode, world_size, drop_last, kw, epoch, seed):
    def run() -> list[np.ndarray]:
        out = []
        for r in range(world_size):
            s = DistributedShuffleSampler(
                dataset, mode, seed=seed, world_size=world_size, rank=r, drop_last=drop_last, **kw
            )
            s.set_epoch(epoch)
            out.append(s.epoch_indices())
        return out

    first, second = run(), run()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@PROPS
@given(datasets, st.sampled_from(ELASTIC_MODES), world_sizes, st.booleans(), mode_kwargs, st.integers(0, 3))
def test_elastic_global_order_does_not_depend_on_world_size(dataset, mode, world_size, drop_last, kw, epoch):
    n = len(dataset)
    reference = DistributedShuffleSampler(dataset, mode, world_size=1, rank=0, **kw)
    reference.set_epoch(epoch)
    order = reference.epoch_indices()
    assert np.array_equal(np.sort(order), np.arange(n))
    samplers = [
        DistributedShuffleSampler(dataset, mode, world_size=world_size, rank=r, drop_last=drop_last, **kw)
        for r in range(world_size)
    ]
    for s in samplers:
        s.set_epoch(epoch)
    merged = interleave([s.epoch_indices() for s in samplers])
    real = min(n, merged.size)
    assert np.array_equal(merged[:real], order[:real])
    assert np.array_equal(merged[real:], np.resize(order, merged.size - real))  # padding: head of the epoch


@PROPS
@given(
    datasets,
    st.sampled_from(ELASTIC_MODES),
    world_sizes,
    world_sizes,
    st.booleans(),
    mode_kwargs,
    st.integers(0, 400),
    st.integers(0, 3),
)
def test_elastic_resume_on_any_world_size(dataset, mode, w1, w2, drop_last, kw, steps, epoch):
    n = len(dataset)
    order = DistributedShuffleSampler(dataset, mode, world_size=1, rank=0, **kw)
    order.set_epoch(epoch)
    order = order.epoch_indices()
    per_rank = n // w1 if drop_last else -(-n // w1)
    steps = min(steps, per_rank)
    consumed = steps * w1
    jobs: dict[str, Job] = {}

    def make(world_size: int, key: str) -> Job:
        job = Job(dataset, world_size, mode, drop_last=drop_last, **kw)
        for s in job.ranks:
            s.set_epoch(epoch)
        jobs[key] = job
        return job

    def compare(resumed: list[int], original: list[int]) -> None:
        real = max(n - consumed, 0)
        if drop_last:
            assert len(resumed) == (real // w2) * w2 and len(original) == (real // w1) * w1
            assert resumed == order[consumed : consumed + len(resumed)].tolist()
        else:
            assert resumed[:real] == original[:real] == order[consumed:].tolist()
            assert len(resumed) == -(-real // w2) * w2

    state = assert_state_roundtrip(
        lambda: make(w1, "a"),
        Job.consume,
        prefix=steps,
        make_resumed=lambda: make(w2, "b"),
        compare=compare,
    )
    assert state["consumed"] == consumed and state["epoch"] == epoch
    real = max(n - consumed, 0)
    left = real // w2 if drop_last else -(-real // w2)
    assert jobs["b"].state_dict()["consumed"] == consumed + left * w2, "the resumed job did not finish"


@PROPS
@given(datasets, modes, world_sizes, st.booleans(), mode_kwargs, st.integers(0, 400))
def test_resume_same_world_size(dataset, mode, world_size, drop_last, kw, steps):
    assert_state_roundtrip(
        lambda: Job(dataset, world_size, mode, drop_last=drop_last, seed=7, **kw),
        Job.consume,
        prefix=steps,
    )


@PROPS
@given(datasets, world_sizes, mode_kwargs)
def test_local_partition_is_fixed_across_epochs(dataset, world_size, kw):
    for r in range(world_size):
        sampler = DistributedShuffleSampler(dataset, "local", world_size=world_size, rank=r, **kw)
        owned = set(local_partition(sampler.layout, sampler.seed, world_size, r).tolist())
        for epoch in range(3):
            sampler.set_epoch(epoch)
            yielded = set(sampler.epoch_indices().tolist())
            if owned:
                assert yielded == owned
            else:  # n < W: an empty partition yields one padding sample
                assert len(yielded) <= 1


@PROPS
@given(datasets, world_sizes, st.integers(1, 20), st.integers(0, 3))
def test_shard_buffer_never_emits_a_sample_early(dataset, world_size, buffer_size, epoch):
    """In the shard stream a sample is never more than buffer_size - 1 positions early."""
    layout = DistributedShuffleSampler(dataset, "shard", world_size=1, rank=0).layout
    for r in range(world_size):
        s = DistributedShuffleSampler(
            dataset, "shard", world_size=world_size, rank=r, buffer_size=buffer_size
        )
        s.set_epoch(epoch)
        out = s.epoch_indices()
        stream = _shard_stream_before_buffer(layout, s, r)
        out = out[: stream.size]
        assert sorted(out.tolist()) == sorted(stream.tolist())
        position = {int(x): i for i, x in enumerate(out)}
        assert all(position[int(x)] >= i - buffer_size + 1 for i, x in enumerate(stream))


def _shard_stream_before_buffer(
    layout: ShardLayout, sampler: DistributedShuffleSampler, rank: int
) -> np.ndarray:
    from dataio.sampling.layout import balanced_bounds
    from dataio.sampling.modes import _SHARD_ORDER, stream_rng

    perm = stream_rng(sampler.seed, sampler.epoch, _SHARD_ORDER).permutation(layout.num_shards)
    bounds = balanced_bounds(layout.num_samples, sampler.world_size)
    return layout.shard_slice(perm, int(bounds[rank]), int(bounds[rank + 1]))


@PROPS
@given(datasets, modes, world_sizes, st.booleans(), st.integers(1, 64))
def test_every_rank_gets_the_same_number_of_batches(dataset, mode, world_size, drop_last, batch_size):
    streams = rank_epochs(dataset, mode, world_size, drop_last=drop_last)
    batches = [-(-s.size // batch_size) for s in streams]
    assert len(set(batches)) == 1, "ranks would run different numbers of steps (DDP hang)"
    distinct, entropy = batch_diversity(streams, batch_size)
    assert np.all(distinct <= min(batch_size, max(len(dataset), 1)))
    assert np.all(entropy >= -1e-12)
