"""dataio's extras on the generic path (torch's worker processes or threads): worker_mode, stats(), state_dict()
resume after the last delivered batch, shuffle_mode= samplers, progress, device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.utils.data as tud

import dataio
from tests.helpers import assert_state_roundtrip
from tests.loaders.parity import MODES, NoLenSampler, Squares, drain


def test_worker_mode_defaults_and_validation() -> None:
    assert dataio.DataLoader(Squares(3)).worker_mode == "process"
    assert dataio.DataLoader(Squares(3), num_workers=2, worker_mode="thread").worker_mode == "thread"
    with pytest.raises(ValueError, match="worker_mode"):
        dataio.DataLoader(Squares(3), worker_mode="greenlet")


def test_pipeline_runs_on_threads(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=False, size=32)
    assert dataio.DataLoader(ds, pipeline=pipe).worker_mode == "thread"
    with pytest.raises(ValueError, match="worker_mode='thread'"):
        dataio.DataLoader(ds, pipeline=pipe, worker_mode="process")


@pytest.mark.parametrize("mode", MODES)
def test_stats_of_the_generic_path(mode: str) -> None:
    loader = dataio.DataLoader(Squares(30), batch_size=4, num_workers=2, worker_mode=mode)
    drain(iter(loader))
    stats = loader.stats()
    assert stats["path"] == "generic" and stats["worker_mode"] == mode and stats["workers"] == 2
    assert stats["batches"] == 8 and stats["samples"] == 30
    assert stats["wall_s"] > 0 and 0 <= stats["consumer_wait_pct"] <= 100


@pytest.mark.parametrize("mode", MODES)
def test_shard_dataset_resumes_after_the_last_delivered_batch(packed: Path, mode: str) -> None:
    ds = dataio.open_dataset(packed)

    def make() -> dataio.DataLoader:
        return dataio.DataLoader(ds, batch_size=4, num_workers=2, worker_mode=mode, shuffle_mode="block", seed=3,
                                 prefetch_factor=3)  # fmt: skip

    iterators: dict[int, object] = {}

    def consume(loader: dataio.DataLoader, k: int | None) -> list:
        it = iterators.setdefault(id(loader), iter(loader))
        return [b["key"] for b in (it if k is None else [next(it) for _ in range(k)])]  # type: ignore[attr-defined]

    # the workers have drawn 2 x 3 batches ahead; the state is still the one after 3 delivered batches
    state = assert_state_roundtrip(make, consume, prefix=3)
    assert state["sampler"]["consumed"] == 12


@pytest.mark.parametrize("mode", MODES)
def test_shard_dataset_with_workers_matches_torch(packed: Path, mode: str) -> None:
    ds = dataio.open_dataset(packed)
    ds.__getitems__([0, 1])  # the reader's pool is running: forked workers must not inherit it broken
    ours = drain(iter(dataio.DataLoader(ds, batch_size=5, num_workers=2, worker_mode=mode)))
    theirs = drain(iter(tud.DataLoader(ds, batch_size=5)))
    assert [b["key"] for b in ours] == [b["key"] for b in theirs]
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(ours, theirs, strict=True))
    assert [b["image"] for b in ours] == [b["image"] for b in theirs]


@pytest.mark.parametrize("mode", MODES)
def test_progress_bar_with_and_without_len(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    for sampler in (None, NoLenSampler(10)):
        loader = dataio.DataLoader(Squares(10), batch_size=3, num_workers=2, worker_mode=mode, progress=True,
                                   sampler=sampler)  # fmt: skip
        assert len(drain(iter(loader))) == 4
    assert "batch" in capsys.readouterr().err


@pytest.mark.parametrize("mode", MODES)
def test_device_copy(mode: str) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loader = dataio.DataLoader(Squares(10), batch_size=4, num_workers=2, worker_mode=mode, device=device,
                               pin_memory=device == "cuda")  # fmt: skip
    batches = drain(iter(loader))
    assert all(b["x"].device.type == device and b["name"][0].startswith("s") for b in batches)
    assert torch.cat([b["x"][:, 0].cpu() for b in batches]).tolist() == list(range(10))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_prefetch_keeps_order_values_and_the_resume_position(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    kw = {"batch_size": 5, "num_workers": 2, "shuffle_mode": "global", "seed": 3,
          "collate_fn": lambda b: torch.tensor([s["label"] for s in b])}  # fmt: skip
    cpu = [b.tolist() for b in dataio.DataLoader(ds, worker_mode="thread", **kw)]
    loader = dataio.DataLoader(ds, worker_mode="thread", device="cuda", pin_memory=True, **kw)
    it = iter(loader)
    first = [next(it) for _ in range(3)]  # batch 4 is already being copied: it is not "delivered" yet
    assert all(b.is_cuda for b in first) and [b.tolist() for b in first] == cpu[:3]
    assert loader.state_dict()["sampler"]["consumed"] == 15
    assert [b.tolist() for b in it] == cpu[3:]
