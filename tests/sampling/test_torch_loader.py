"""The sampler works unchanged as ``sampler=`` of ``torch.utils.data.DataLoader``."""

from __future__ import annotations

import pytest

from dataio.sampling import DistributedShuffleSampler
from tests.sampling.common import ALL_MODES

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

N = 103


def _loader_values(sampler: DistributedShuffleSampler, workers: int) -> list[int]:
    dataset = TensorDataset(torch.arange(N))
    loader = DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=workers)
    assert len(loader) == -(-len(sampler) // 8)
    return [int(v) for (batch,) in loader for v in batch]


@pytest.mark.parametrize("mode", ALL_MODES)
def test_dataloader_in_process(mode):
    seen = []
    for rank in range(3):
        sampler = DistributedShuffleSampler(range(N), mode, world_size=3, rank=rank, shard_size=10)
        sampler.set_epoch(2)
        values = _loader_values(sampler, 0)
        assert values == sampler.epoch_indices().tolist()
        assert len(values) == len(sampler) == 35
        seen += values
    assert set(seen) == set(range(N))


@pytest.mark.parametrize("mode", ["block", "local"])
def test_dataloader_with_worker_processes(mode):
    sampler = DistributedShuffleSampler(range(N), mode, world_size=2, rank=1, shard_size=10)
    sampler.set_epoch(1)
    assert _loader_values(sampler, 2) == _loader_values(sampler, 0) == sampler.epoch_indices().tolist()


def test_dataloader_resume_mid_epoch():
    sampler = DistributedShuffleSampler(range(N), "global", world_size=2, rank=0)
    full = _loader_values(sampler, 0)
    resumed = DistributedShuffleSampler(range(N), "global", world_size=2, rank=0)
    state = sampler.state_dict()
    state["consumed"] = 2 * 16  # each rank delivered two batches of 8
    resumed.load_state_dict(state)
    dataset = TensorDataset(torch.arange(N))
    rest = [int(v) for (batch,) in DataLoader(dataset, batch_size=8, sampler=resumed) for v in batch]
    assert rest == full[16:]
