"""The fast path as a wing (issue 20, items 1 and 9): decoders testable alone through a SlotView, the read stage
in the sampler's read order, and the re-sequencing that keeps delivery exact."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import dataio
from dataio import DistributedShuffleSampler
from dataio.errors import DataioError, SampleError
from dataio.loaders import native
from dataio.loaders.epoch import EpochPlan
from dataio.loaders.fast.decoders import NativeDecoder, PythonDecoder
from dataio.loaders.fast.slots import BatchRing, Normalization
from dataio.loaders.fast.stages import in_delivery_order
from dataio.sampling.plan import in_order_of
from dataio.sampling.protocol import ResumableSampler


class DeliveryOrderSampler(DistributedShuffleSampler):
    """The same sampler without a read order: the fast path then reads in delivery order (as before)."""

    def read_order(self, indices: np.ndarray) -> np.ndarray | None:
        return None


def _epoch(loader: dataio.DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def test_shard_mode_reads_shard_by_shard_and_delivers_the_same_batches(packed: Path) -> None:
    got = {}
    for cls in (DistributedShuffleSampler, DeliveryOrderSampler):
        ds = dataio.open_dataset(packed, coalesce_gap=0)
        sampler = cls(ds, "shard", seed=1, buffer_size=16, rank=0, world_size=1)
        assert isinstance(sampler, ResumableSampler)
        loader = dataio.DataLoader(
            ds, batch_size=8, sampler=sampler, pipeline=dataio.ImagePipeline(train=True, size=32), num_workers=1,
            autotune=False,
        )  # fmt: skip
        got[cls] = (*_epoch(loader), loader.stats()["io"]["fetches"])
    (images, labels, fetches), (old_images, old_labels, old_fetches) = got.values()
    assert torch.equal(images, old_images) and torch.equal(labels, old_labels)
    assert fetches < old_fetches, (fetches, old_fetches)  # sequential reads inside a shard coalesce


def test_read_order_resumes_mid_epoch(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    sampler = DistributedShuffleSampler(ds, "shard", seed=2, buffer_size=8, rank=0, world_size=1)
    full = sampler.begin_epoch()
    sampler.advance(11)
    state = sampler.state_dict()
    resumed = DistributedShuffleSampler(ds, "shard", seed=2, buffer_size=8, rank=0, world_size=1)
    resumed.load_state_dict(state)
    rest = resumed.begin_epoch()
    assert np.array_equal(rest, full[11:])
    order = resumed.read_order(rest)
    assert order is not None and sorted(order.tolist()) == sorted(rest.tolist())
    assert list(in_delivery_order(iter(order.tolist()), order, rest)) == rest.tolist()
    assert DistributedShuffleSampler(ds, "global", seed=2).read_order(full) is None


@pytest.mark.parametrize("seed", range(20))
def test_in_order_of_is_a_rearrangement_in_the_given_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    order = rng.permutation(40)
    wanted = np.concatenate([rng.choice(order, 25, replace=False), order[:2], [99]])  # pads and a stranger
    out = in_order_of(order, wanted)
    assert sorted(out.tolist()) == sorted(wanted.tolist())
    head = out[: np.isin(out, order).sum() - 2]  # the first copies follow ``order``
    positions = {v: i for i, v in enumerate(order.tolist())}
    assert [positions[v] for v in head.tolist()] == sorted(positions[v] for v in head.tolist())


def test_in_delivery_order_holds_only_what_was_read_ahead() -> None:
    read = np.arange(10)
    delivery = np.array([1, 0, 3, 2, 5, 4, 7, 6, 9, 8])
    assert list(in_delivery_order(iter(read.tolist()), read, delivery)) == delivery.tolist()
    with pytest.raises(RuntimeError, match="read stage: sample 11"):
        list(in_delivery_order(iter(read.tolist()), read, np.array([0, 11])))


@pytest.mark.parametrize("decoder_kind", ["python", "native"])
def test_a_decoder_alone_fills_a_slot_like_the_pipeline(packed: Path, decoder_kind: str) -> None:
    if decoder_kind == "native" and not native.AVAILABLE:
        pytest.skip("dataio._native is not built")
    ds = dataio.open_dataset(packed)
    pipeline = dataio.ImagePipeline(train=True, size=32, native=decoder_kind == "native")
    indices = np.array([5, 1, 7, 3], dtype=np.int64)
    plan = EpochPlan(indices, epoch=2, seed=9, batch_size=4)
    norm = Normalization.of(pipeline.mean, pipeline.std)
    ring = BatchRing(2, 4, tuple(pipeline.out_shape), False, norm, plan.batch_len)
    if decoder_kind == "native":
        decoder = NativeDecoder(pipeline, plan, ds.decode, "raise", native.require().ImageKernel(1), True)
    else:
        decoder = PythonDecoder(pipeline, plan, ds.decode, "raise")
    records = list(ds.read_records(indices))
    slot = ring.acquire(0, threading.Event())
    assert slot is not None
    assert decoder.decode(records[:2], np.arange(2), slot) == 0 and not ring.filled(slot, 2)
    assert decoder.decode(records[2:], np.arange(2, 4), slot) == 0 and ring.filled(slot, 2)
    images, labels = ring.take(0)
    for row, index in enumerate(indices.tolist()):
        want, label = pipeline(ds[index], dataio.loaders.image.transforms.sample_rng(9, 2, index))
        assert torch.allclose(images[row], want, atol=1e-5) and labels[row] == label


def test_sample_error_is_a_dataio_error_naming_the_stage(packed: Path) -> None:
    assert issubclass(SampleError, DataioError) and issubclass(SampleError, RuntimeError)
    ds = dataio.open_dataset(packed)
    pipeline = dataio.ImagePipeline(train=False, size=32, native=False)
    plan = EpochPlan(np.array([0], dtype=np.int64), epoch=0, seed=0, batch_size=1)
    ring = BatchRing(
        1, 1, tuple(pipeline.out_shape), False, Normalization.of(pipeline.mean, pipeline.std), plan.batch_len
    )
    slot = ring.acquire(0, threading.Event())
    broken = ds.manifest.schema.encode({"key": "k.jpg", "label": 0, "image": b"not a jpeg"})
    with pytest.raises(SampleError, match=r"decode stage: sample 0 \(key 'k.jpg'\)"):
        PythonDecoder(pipeline, plan, ds.decode, "raise").decode([broken], np.arange(1), slot)
    assert PythonDecoder(pipeline, plan, ds.decode, "skip").decode([broken], np.arange(1), slot) == 1
