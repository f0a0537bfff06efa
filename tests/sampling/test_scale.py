"""The properties at ImageNet-and-beyond scale: 10 M samples, 8 ranks, every mode (one epoch each)."""

from __future__ import annotations

import numpy as np
import pytest

from dataio.sampling import ShardLayout, ShuffleConfig
from dataio.sampling.plan import all_rank_indices, global_order, rank_indices
from tests.sampling.common import ALL_MODES

N, WORLD = 10_000_003, 8  # n not a multiple of the world size: padding is exercised


@pytest.mark.slow
@pytest.mark.parametrize("mode", ALL_MODES)
def test_ten_million_samples(mode):
    layout = _layout()
    streams = all_rank_indices(ShuffleConfig(mode), layout, epoch=1, world_size=WORLD)
    assert {s.size for s in streams} == {-(-N // WORLD)}
    assert all(s.dtype == np.int64 for s in streams)
    counts = np.bincount(np.concatenate(streams), minlength=N)
    assert counts.size == N and counts.min() == 1
    assert int(counts.sum()) - N == -N % WORLD, "only the padding repeats"


def _layout() -> ShardLayout:
    sizes = np.full(10_000, 1_000, dtype=np.int64)
    sizes[-1] += N - int(sizes.sum())
    return ShardLayout(sizes)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["global", "block"])
def test_ten_million_elastic_resume(mode):
    config, layout = ShuffleConfig(mode), _layout()
    order = global_order(config, layout, epoch=0)
    consumed = 8 * 700_001  # 8 ranks each yielded 700 001 samples, resume on 6 ranks
    resumed = [rank_indices(config, layout, 0, 6, r, consumed, order) for r in range(6)]
    merged = np.stack(resumed, axis=1).ravel()
    assert np.array_equal(merged[: N - consumed], order[consumed:])
    assert merged.size - (N - consumed) < 6
