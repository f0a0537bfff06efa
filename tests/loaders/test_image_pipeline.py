"""ImagePipeline: config validation, process / collate_into / normalize / __call__, threads, pickling."""

from __future__ import annotations

import dataclasses
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from dataio.loaders import DecodeError, ImagePipeline, sample_rng
from dataio.loaders.image.reference import ReferencePipeline
from dataio.loaders.image.transforms import IMAGENET_MEAN, IMAGENET_STD


@pytest.fixture(scope="module")
def samples(synth_dir: Path) -> list[dict]:
    files = sorted(synth_dir.rglob("*.JPEG"))[:12]
    classes = sorted({p.parent.name for p in files})
    return [{"key": p.name, "label": classes.index(p.parent.name), "image": p.read_bytes()} for p in files]


@pytest.mark.parametrize("train", [True, False])
def test_process_matches_reference_pipeline(samples: list[dict], train: bool) -> None:
    fast, ref = ImagePipeline(train), ReferencePipeline(train)  # 224 of <= 500 px photos: full-scale decode
    for i, sample in enumerate(samples):
        image, label = fast.process(sample, sample_rng(3, 0, i))
        want, want_label = ref.process(sample, sample_rng(3, 0, i))
        assert image.shape == (224, 224, 3) and image.dtype == np.uint8
        assert isinstance(label, int) and label == want_label == sample["label"]
        d = np.abs(image.astype(np.int16) - want)
        assert d.max() <= 1 and d.mean() < 0.25  # see test_decode for the tolerances


def test_call_matches_torchvision_style_reference(samples: list[dict]) -> None:
    fast, ref = ImagePipeline(False), ReferencePipeline(False)
    for sample in samples[:4]:
        x, label = fast(sample)
        y, _ = ref(sample)
        assert x.dtype == torch.float32 and x.shape == (3, 224, 224) and x.is_contiguous()
        assert label == sample["label"]
        assert (x - y).abs().max().item() <= 1 / 255 / min(IMAGENET_STD) + 1e-5  # one uint8 step at most


def test_train_randomness_is_keyed_by_seed_epoch_index(samples: list[dict]) -> None:
    pipe = ImagePipeline(True, size=64)
    a = [pipe.process(s, sample_rng(0, 0, i))[0] for i, s in enumerate(samples)]
    b = [pipe.process(s, sample_rng(0, 0, i))[0] for i, s in enumerate(samples)]
    c = [pipe.process(s, sample_rng(0, 1, i))[0] for i, s in enumerate(samples)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert sum(not np.array_equal(x, z) for x, z in zip(a, c, strict=True)) >= len(samples) - 1
    torch.manual_seed(0)
    first = pipe(samples[0])[0]
    torch.manual_seed(0)
    assert torch.equal(first, pipe(samples[0])[0])  # __call__ draws from torch's generator


def test_val_is_deterministic_and_needs_no_rng(samples: list[dict]) -> None:
    pipe = ImagePipeline(False, size=96)
    assert np.array_equal(pipe.process(samples[0])[0], pipe.process(samples[0], sample_rng(1, 2, 3))[0])
    with pytest.raises(ValueError, match="rng"):
        ImagePipeline(True).process(samples[0])


def test_threads_give_the_same_images(samples: list[dict]) -> None:
    pipe = ImagePipeline(True, size=128)
    work = [(s, i) for i, s in enumerate(samples)] * 3
    sequential = [pipe.process(s, sample_rng(5, 0, i))[0] for s, i in work]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda a: pipe.process(a[0], sample_rng(5, 0, a[1]))[0], work))
    assert all(np.array_equal(x, y) for x, y in zip(sequential, threaded, strict=True))


def test_collate_into_writes_chw_rows(samples: list[dict]) -> None:
    pipe = ImagePipeline(True, size=64)
    processed = [pipe.process(s, sample_rng(0, 0, i)) for i, s in enumerate(samples[:5])]
    images, labels = [p[0] for p in processed], [p[1] for p in processed]
    images[1] = np.ascontiguousarray(images[1])  # HWC-contiguous and CHW-backed views both work
    images[2] = images[2].copy()
    images[2].flags.writeable = False
    out = torch.full((8, 3, 64, 64), 7, dtype=torch.uint8)
    out_labels = torch.full((8,), -5, dtype=torch.int64)
    pipe.collate_into(images, labels, out, out_labels)
    for row, image in enumerate(images):
        assert torch.equal(out[row], torch.from_numpy(image.copy()).permute(2, 0, 1))
        assert torch.equal(out[row, 0], torch.from_numpy(image[:, :, 0].copy()))  # channel 0 = R plane
    assert (out[5:] == 7).all() and out_labels.tolist() == [*labels, -5, -5, -5]
    with pytest.raises(ValueError):
        pipe.collate_into(images, labels[:2], out, out_labels)
    with pytest.raises(ValueError):
        pipe.collate_into(images, labels, out.float(), out_labels)
    with pytest.raises(ValueError):
        pipe.collate_into(images, labels, torch.zeros(8, 3, 32, 32, dtype=torch.uint8), out_labels)
    with pytest.raises(ValueError):
        pipe.collate_into(images, labels, out[:3], out_labels)
    with pytest.raises(ValueError):
        pipe.collate_into(images, labels, out, out_labels.int())


def test_normalize_matches_the_formula() -> None:
    pipe = ImagePipeline(False, mean=(0.5, 0.25, 0.125), std=(0.2, 0.3, 0.4))
    x = torch.randint(0, 256, (4, 3, 5, 6), dtype=torch.uint8)
    mean = torch.tensor([0.5, 0.25, 0.125]).view(3, 1, 1)
    std = torch.tensor([0.2, 0.3, 0.4]).view(3, 1, 1)
    want = (x.float() / 255 - mean) / std
    got = pipe.normalize(x)
    assert got.dtype == torch.float32 and got.shape == x.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(pipe.normalize(x[0]), want[0], atol=1e-5)  # a single CHW image
    for bad in (x.float(), x[:, :2], x[0, 0]):
        with pytest.raises(ValueError):
            pipe.normalize(bad)


def test_imagenet_defaults_and_out_shape() -> None:
    pipe = ImagePipeline(True)
    assert (pipe.size, pipe.backend, pipe.out_shape) == (224, "cpu", (3, 224, 224))
    assert (pipe.mean, pipe.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert pipe.scale == (0.08, 1.0) and pipe.ratio == (3 / 4, 4 / 3) and pipe.crop_ratio == 0.875
    assert ImagePipeline(False, 32, "cpu").out_shape == (3, 32, 32)
    assert ImagePipeline(False, device="cpu").device == torch.device("cpu") and pipe.device is None


def test_picklable_and_replaceable(samples: list[dict]) -> None:
    pipe = ImagePipeline(False, size=48)
    pipe.normalize(torch.zeros(3, 2, 2, dtype=torch.uint8))  # fills the per-device constants cache
    clone = pickle.loads(pickle.dumps(pipe))
    assert clone == pipe and torch.equal(clone(samples[0])[0], pipe(samples[0])[0])
    assert dataclasses.replace(pipe, size=32).out_shape == (3, 32, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipe.size = 64  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "gpu"}, "unknown backend"),
        ({"size": 0}, "size"),
        ({"size": 2.5}, "size"),
        ({"size": True}, "size"),
        ({"scale": (0.5, 0.1)}, "scale"),
        ({"ratio": (0, 1)}, "ratio"),
        ({"crop_ratio": 0.0}, "crop_ratio"),
        ({"crop_ratio": 1.2}, "crop_ratio"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"std": (0.2, float("nan"), 0.2)}, "std"),
        ({"device": "warp-drive"}, "device"),
    ],
)
def test_bad_configuration_raises_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ImagePipeline(True, **kwargs)


def test_train_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="train"):
        ImagePipeline("yes")  # type: ignore[arg-type]


def test_decode_errors_propagate_without_the_key(samples: list[dict]) -> None:
    bad = {"key": "secret/key.JPEG", "label": 0, "image": samples[0]["image"][:500]}
    for train in (True, False):
        with pytest.raises(DecodeError) as info:
            ImagePipeline(train).process(bad, sample_rng(0, 0, 0))
        assert "secret" not in str(info.value)


def test_missing_label_is_minus_one(samples: list[dict]) -> None:
    _, label = ImagePipeline(False, size=32).process({"image": samples[0]["image"], "label": None})
    assert label == -1
