"""ImagePipeline(backend="dali"): the DALI path passes the CPU path's loader tests, on DALI's CPU build here.

Tolerance of DALI vs the CPU backend: both decode the same crop window (the crop parameters come from dataio),
but the pixels differ in two places: DALI decodes with libjpeg-turbo / nvJPEG through nvImageCodec without the
CPU backend's DCT-domain downscale, and resizes with its own antialiased linear filter, where the CPU backend
uses torch's antialiased bilinear kernel on a (possibly DCT-downscaled) decode. Per batch, the mean absolute
difference of the normalised images stays below 6 % of their standard deviation (measured: 1–3 %); a wrong crop,
a missing flip, a channel swap or a wrong mean/std is 20–100 %.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dataio
from dataio.errors import SampleError
from dataio.pack import PackOptions, pack
from tests.helpers import assert_state_roundtrip

if os.environ.get("CI", "").lower() != "true":
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")

MODES = ["global", "local", "shard", "block", "sequential"]
TOLERANCE = 0.06


def loaders(ds, *, train: bool, size: int = 48, **kw) -> tuple[dataio.DataLoader, dataio.DataLoader]:
    def make(backend: str) -> dataio.DataLoader:
        return dataio.DataLoader(ds, pipeline=dataio.ImagePipeline(train=train, size=size, backend=backend), **kw)

    return make("dali"), make("cpu")


def assert_close_batches(got: list, want: list) -> None:
    assert len(got) == len(want)
    for (gi, gl), (wi, wl) in zip(got, want, strict=True):
        assert gi.dtype == torch.float32 and gi.shape == wi.shape
        assert torch.equal(gl, wl) and gl.dtype == torch.int64
        mad = (gi - wi).abs().mean().item()
        assert mad < TOLERANCE * wi.std().item(), mad


@pytest.mark.parametrize("train", [False, True])
def test_dali_matches_the_cpu_backend(packed: Path, train: bool) -> None:
    ds = dataio.open_dataset(packed)
    dali, cpu = loaders(ds, train=train, batch_size=7, num_workers=2, shuffle=True, seed=9)
    assert_close_batches(list(dali), list(cpu))
    assert dali.stats()["backend"] == "dali-cpu"
    assert cpu.stats()["backend"] == ("cpu-native" if cpu.pipeline.native else "cpu-python")


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_delivers_the_samplers_epoch_exactly_once(packed: Path, mode: str) -> None:
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=True, size=32, backend="dali")
    loader = dataio.DataLoader(ds, batch_size=5, num_workers=2, pipeline=pipe, shuffle_mode=mode, seed=4)
    sampler = dataio.DistributedShuffleSampler(ds, mode, seed=4)
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        indices = sampler.epoch_indices()
        batches = list(loader)
        assert len(batches) == len(loader) == -(-len(indices) // 5)
        labels = torch.cat([lab for _, lab in batches])
        assert labels.tolist() == [int(ds.labels[i]) for i in indices]  # sampler order, every sample once
        assert all(images.shape[1:] == (3, 32, 32) for images, _ in batches)
    assert loader.runtime.dali.builds == 1  # built once per loader, reused by every epoch


def test_drop_last_and_short_last_batch(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    pipe = dataio.ImagePipeline(train=False, size=32, backend="dali")
    short = list(dataio.DataLoader(ds, batch_size=10, pipeline=pipe))
    assert [len(lab) for _, lab in short] == [10, 10, 10, 10, len(ds) - 40]
    dropped = dataio.DataLoader(ds, batch_size=10, pipeline=pipe, drop_last=True)
    assert len(dropped) == 4 and [len(lab) for _, lab in dropped] == [10] * 4


def test_resume_mid_epoch_gives_exactly_the_remaining_batches(packed: Path) -> None:
    ds = dataio.open_dataset(packed)

    def make() -> dataio.DataLoader:
        pipe = dataio.ImagePipeline(train=True, size=32, backend="dali")
        return dataio.DataLoader(ds, batch_size=4, num_workers=2, pipeline=pipe, shuffle_mode="block", seed=6)

    iterators: dict[int, object] = {}

    def consume(loader, n):
        if id(loader) not in iterators:
            iterators[id(loader)] = iter(loader)
        it = iterators[id(loader)]
        return [next(it) for _ in range(n)] if n is not None else list(it)

    def compare(a, b):
        assert len(a) == len(b) == 7
        for (ai, al), (bi, bl) in zip(a, b, strict=True):
            assert torch.equal(al, bl) and torch.allclose(ai, bi)

    state = assert_state_roundtrip(make, consume, prefix=5, compare=compare)
    assert state["sampler"]["consumed"] == 20


def test_stats_report_the_backend_stages_and_a_verdict(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=6, num_workers=2,
                               pipeline=dataio.ImagePipeline(train=True, size=32, backend="dali"))
    assert sum(len(lab) for _, lab in loader) == len(ds)
    stats = loader.stats()
    assert stats["backend"] == "dali-cpu" and stats["device"] == "cpu"
    assert stats["stages"]["read"]["items"] == len(ds) == stats["stages"]["decode"]["items"]
    assert stats["batches"] == len(loader) and stats["io"]["requests"] >= len(ds)
    assert stats["verdict"].split(":")[0] in ("io-bound", "decode-bound", "consumer-bound")
    assert stats["autotune"]["enabled"] is False


def test_errors_name_the_sample_key_or_are_counted(synth_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(synth_dir, src)
    victim = sorted(src.rglob("*.JPEG"))[9]
    buf = io.BytesIO()  # a PNG with its middle cut out: its header parses, its pixels cannot be decoded
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    png = buf.getvalue()
    victim.write_bytes(png[: len(png) // 2] + png[-12:])
    pack(src, tmp_path / "ds", PackOptions(shard_size=400_000))
    ds = dataio.open_dataset(tmp_path / "ds")
    key = victim.relative_to(src).as_posix()
    pipe = dataio.ImagePipeline(train=False, size=32, backend="dali")
    with pytest.raises(SampleError, match=key):
        list(dataio.DataLoader(ds, batch_size=4, pipeline=pipe, num_workers=2))
    loader = dataio.DataLoader(ds, batch_size=4, pipeline=pipe, num_workers=2, on_error="skip")
    for _ in range(2):  # the rebuilt pipeline serves the next epoch too
        labels = torch.cat([lab for _, lab in loader])
        want = [int(x) for i, x in enumerate(ds.labels) if ds[i]["key"] != key]
        assert labels.tolist() == want
    assert loader.stats()["skipped"] == 2


def test_abandoned_epoch_is_torn_down_and_the_next_one_rebuilds(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, seed=1,
                               pipeline=dataio.ImagePipeline(train=False, size=32, backend="dali"))
    it = iter(loader)
    next(it)
    it.close()
    assert not [t for t in threading.enumerate() if t.name == "dataio-dali-feed" and t.is_alive()]
    assert sum(len(lab) for _, lab in loader) == len(ds)
    assert loader.runtime.dali.builds == 2
    assert sum(len(lab) for _, lab in loader) == len(ds)
    assert loader.runtime.dali.builds == 2


def test_two_live_iterators_each_get_their_own_pipeline(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    loader = dataio.DataLoader(ds, batch_size=8, num_workers=1, shuffle=True, seed=2,
                               pipeline=dataio.ImagePipeline(train=False, size=32, backend="dali"))
    first, second = iter(loader), iter(loader)
    a = torch.cat([labels for _, labels in first])
    b = torch.cat([labels for _, labels in second])
    assert torch.equal(a, b) and len(a) == len(ds)
    assert loader.runtime.dali.builds == 2
    assert sum(len(labels) for _, labels in loader) == len(ds)
    assert loader.runtime.dali.builds == 2  # both went back to the pool when their epochs ended


def test_auto_picks_the_cpu_backend_without_a_gpu() -> None:
    pipe = dataio.ImagePipeline(train=True, backend="auto")
    assert pipe.backend == ("dali" if torch.cuda.is_available() else "cpu")
    assert dataio.ImagePipeline(train=True, backend="dali").dali_device == (
        "mixed" if torch.cuda.is_available() else "cpu"
    )


def test_missing_dali_is_reported_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # what an environment without DALI looks like
    with pytest.raises(ImportError, match="pip install nvidia-dali"):
        dataio.ImagePipeline(train=True, backend="dali")
    assert dataio.ImagePipeline(train=True, backend="auto").backend == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mixed_decoding_on_the_gpu_matches_the_cpu_backend(packed: Path) -> None:
    ds = dataio.open_dataset(packed)
    dali, cpu = loaders(ds, train=True, batch_size=8, num_workers=2, shuffle=True, seed=2)
    got = list(dali)
    assert dali.stats()["backend"] == "dali-mixed" and all(images.is_cuda for images, _ in got)
    assert_close_batches([(i.cpu(), lab.cpu()) for i, lab in got], list(cpu))


def test_a_storage_error_mid_epoch_reaches_the_caller_with_its_traceback(packed: Path) -> None:
    from dataio.storage import LocalStore, StorageError

    class FailingStore(LocalStore):
        reads = 0

        def read_range(self, path: str, offset: int, length: int) -> bytes:
            FailingStore.reads += 1
            if FailingStore.reads > 20:
                raise StorageError(f"{path}: injected failure at offset {offset}")
            return super().read_range(path, offset, length)

    ds = dataio.open_dataset(packed, coalesce_gap=-1)
    ds.store = FailingStore(packed)
    loader = dataio.DataLoader(ds, batch_size=4, num_workers=1,
                               pipeline=dataio.ImagePipeline(train=False, size=32, backend="dali"))
    got = 0
    with pytest.raises(StorageError, match="injected failure") as info:
        for _, labels in loader:
            got += len(labels)
    assert 0 < got <= 20
    assert any("read_range" in str(entry.name) for entry in info.traceback)  # the original frames survive
