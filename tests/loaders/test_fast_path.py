"""The fast path: ShardDataset + ImagePipeline through dataio.DataLoader's threaded pipeline."""

from __future__ import annotations

import gc
import io
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dataio
from dataio.errors import SampleError
from dataio.pack import PackOptions, pack
from tests.helpers import assert_state_roundtrip

MODES = ["global", "local", "shard", "block", "sequential"]


def reference_batches(ds, pipeline, indices: np.ndarray, batch_size: int) -> list[torch.Tensor]:
    """What the loader must produce for a deterministic (val) pipeline: per-sample processing, stacked."""
    images = [pipeline(ds[int(i)])[0] for i in indices]
    return [torch.stack(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_delivers_the_samplers_epoch_exactly(packed: Path, mode: str) -> None:
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=False, size=64)
    loader = dataio.DataLoader(ds, batch_size=5, num_workers=2, pipeline=pipe, shuffle_mode=mode, seed=11)
    sampler = dataio.DistributedShuffleSampler(ds, mode, seed=11)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        indices = sampler.epoch_indices()
        assert sorted(indices.tolist()) == list(range(len(ds)))  # exactly once
        got = list(loader)
        want = reference_batches(ds, pipe, indices, 5)
        assert len(got) == len(want) == len(loader)
        for (images, labels), ref, start in zip(got, want, range(0, len(indices), 5), strict=True):
            assert images.dtype == torch.float32 and images.shape[1:] == (3, 64, 64)
            assert torch.allclose(images, ref, atol=1e-5)
            assert labels.tolist() == [int(ds.labels[i]) for i in indices[start : start + 5]]


def test_train_batches_do_not_depend_on_thread_count(packed: Path) -> None:
    ds = dataio.open_dataset(packed)

    def run(workers: int) -> list:
        loader = dataio.DataLoader(ds, batch_size=8, num_workers=workers, shuffle=True, seed=5,
                                   pipeline=dataio.ImagePipeline(train=True, size=48))
        return list(loader)

    a, b = run(1), run(3)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    c = run(2)
    assert torch.equal(a[0][0], c[0][0])


def test_drop_last_and_short_last_batch(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=False, size=32)
    sizes = [len(lab) for _, lab in dataio.DataLoader(ds, batch_size=10, pipeline=pipe, num_workers=2)]
    assert sizes == [10] * (len(ds) // 10) + ([len(ds) % 10] if len(ds) % 10 else [])
    loader = dataio.DataLoader(ds, batch_size=10, pipeline=pipe, num_workers=2, drop_last=True)
    assert [len(lab) for _, lab in loader] == [10] * (len(ds) // 10) == [10] * len(loader)


def test_resume_mid_epoch_gives_exactly_the_remaining_batches(packed: Path) -> None:
    ds = dataio.open_dataset(packed)

    def make():
        return dataio.DataLoader(ds, batch_size=4, num_workers=2, shuffle_mode="block", seed=3,
                                 pipeline=dataio.ImagePipeline(train=True, size=32))

    iterators: dict[int, object] = {}

    def consume(loader, k: int | None) -> list:
        it = iterators.setdefault(id(loader), iter(loader))
        return list(it) if k is None else [next(it) for _ in range(k)]

    def compare(resumed: list, original: list) -> None:
        assert len(resumed) == len(original) > 0
        for a, b in zip(resumed, original, strict=True):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    state = assert_state_roundtrip(make, consume, prefix=3, compare=compare)
    assert state["sampler"]["consumed"] == 12


def test_errors_name_the_sample_key_or_are_counted(synth_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    victim = sorted(src.rglob("*.JPEG"))[5]
    # A corrupt image that passes pack's cheap header/trailer check but cannot be decoded: the middle of a PNG is
    # cut out (its IEND trailer kept). Recoverable JPEG damage decodes the way PIL/torchvision would (grey fill).
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    victim.write_bytes(png[: len(png) // 2] + png[-12:])
    pack(src, tmp_path / "ds", PackOptions(shard_size=400_000))
    ds = dataio.open_dataset(tmp_path / "ds")
    key = victim.relative_to(src).as_posix()
    pipe = dataio.ImagePipeline(train=False, size=32)
    with pytest.raises(SampleError, match=key):
        list(dataio.DataLoader(ds, batch_size=4, pipeline=pipe, num_workers=2))
    loader = dataio.DataLoader(ds, batch_size=4, pipeline=pipe, num_workers=2, on_error="skip")
    total = sum(len(lab) for _, lab in loader)
    assert total == len(ds) - 1 and loader.stats()["skipped"] == 1


def test_stats_report_every_stage_and_a_verdict(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=6, num_workers=2, pipeline=dataio.ImagePipeline(train=True, size=32))
    assert sum(len(lab) for _, lab in loader) == len(ds)
    stats = loader.stats()
    assert stats["stages"]["read"]["items"] == len(ds) == stats["stages"]["decode"]["items"]
    assert stats["stages"]["read"]["bytes"] > 0 and 0 <= stats["stages"]["decode"]["busy_pct"] <= 100
    assert stats["batches"] == len(loader) and stats["io"]["requests"] >= len(ds)
    assert stats["verdict"].split(":")[0] in ("io-bound", "decode-bound", "consumer-bound")
    assert stats["backend"] == ("cpu-native" if loader.pipeline.native else "cpu-python") and stats["device"] == "cpu"


def test_memory_stays_flat_over_many_epochs(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=8, num_workers=2, shuffle=True, seed=1,
                               pipeline=dataio.ImagePipeline(train=True, size=96))

    def rss() -> int:
        gc.collect()
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    for epoch in range(2):
        loader.set_epoch(epoch)
        list(loader)
    base = rss()
    for epoch in range(2, 10):
        loader.set_epoch(epoch)
        for _ in loader:
            pass
    assert rss() - base < 40 * 2**20


def test_peak_memory_does_not_grow_with_the_dataset(synth_dir: Path, tmp_path: Path) -> None:
    """One epoch over 48 and over 480 samples (the same images, linked 10 times): the peak RSS above the
    starting point must not grow with the dataset. Holding the 480 encoded images would add ~19 MB, their
    decoded 128 px crops ~24 MB, their float batches ~94 MB."""
    big = tmp_path / "big"
    for copy in range(10):
        for src in synth_dir.rglob("*.JPEG"):
            dst = big / src.parent.name / f"{copy}_{src.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
    pack(synth_dir, tmp_path / "small-ds", PackOptions(shard_size=400_000))
    pack(big, tmp_path / "big-ds", PackOptions(shard_size=400_000))

    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def peak_growth(path: Path) -> int:
        ds = dataio.open_dataset(path)
        loader = dataio.DataLoader(ds, batch_size=8, num_workers=2, shuffle=True, seed=1, autotune=False,
                                   pipeline=dataio.ImagePipeline(train=True, size=128))
        for _ in loader:  # warm: buffers, allocator arenas, thread stacks (batches dropped as they come)
            pass
        gc.collect()
        base, peak, done = rss(), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.002)

        watcher = threading.Thread(target=sample)
        watcher.start()
        try:
            assert sum(len(labels) for _, labels in loader) == len(ds)
        finally:
            done.set()
            watcher.join()
        return peak[0] - base

    small, large = peak_growth(tmp_path / "small-ds"), peak_growth(tmp_path / "big-ds")
    assert large - small < 12 * 2**20, (small, large)


def test_two_live_iterators_of_one_loader_each_give_the_whole_epoch(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=8, num_workers=2, shuffle=True, seed=3,
                               pipeline=dataio.ImagePipeline(train=False, size=32))
    first, second = iter(loader), iter(loader)  # torch semantics: each replays the epoch
    a = torch.cat([labels for _, labels in first])
    b = torch.cat([labels for _, labels in second])
    assert torch.equal(a, b) and len(a) == len(ds)
    assert loader.state_dict()["sampler"]["consumed"] == len(ds)  # the newest pass is the position


def test_batch_buffers_are_reused_only_once_the_user_lets_go(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=4, num_workers=2, prefetch_factor=1, autotune=False,
                               pipeline=dataio.ImagePipeline(train=False, size=32))
    held = [(images, images.clone()) for images, _ in loader]  # every batch kept: none may be overwritten
    held.append((torch.from_numpy(next(iter(loader))[0].numpy()), None))  # a numpy view keeps its buffer too
    for _ in range(2):
        for _batch in loader:
            pass
    assert all(torch.equal(images, copy) for images, copy in held[:-1])
    held.clear()
    del _batch
    pool = loader.runtime.buffers
    allocated = pool.allocated
    for _ in range(3):  # batches dropped as they come: the pool's buffers serve every later epoch
        for images, _ in loader:
            assert images.shape == (4, 3, 32, 32)
    assert pool.allocated == allocated and len(pool.buffers) <= pool.cap


def test_cuda_device_is_refused_clearly_without_a_gpu(packed: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the GPU test covers device='cuda'")
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=4, pipeline=dataio.ImagePipeline(train=False, size=32), device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        next(iter(loader))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_prefetch_matches_cpu_batches(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=True, size=64)
    cpu = list(dataio.DataLoader(ds, batch_size=8, num_workers=2, shuffle=True, seed=4, pipeline=pipe))
    gpu = list(dataio.DataLoader(ds, batch_size=8, num_workers=2, shuffle=True, seed=4, pipeline=pipe,
                                 device="cuda", prefetch_factor=3))
    for (ci, cl), (gi, gl) in zip(cpu, gpu, strict=True):
        assert gi.is_cuda and gl.is_cuda
        assert torch.allclose(ci, gi.cpu(), atol=1e-5) and torch.equal(cl, gl.cpu())


def test_progress_bar_per_epoch(packed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=8, num_workers=2, shuffle_mode="shard", seed=2, progress=True,
                               pipeline=dataio.ImagePipeline(train=False, size=32))
    loader.set_epoch(4)
    assert sum(len(lab) for _, lab in loader) == len(ds)
    err = capsys.readouterr().err
    assert "epoch 4" in err and f"{len(loader)}/{len(loader)}" in err
