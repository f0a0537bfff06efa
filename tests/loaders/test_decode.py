"""The fast decode + crop + resize against the PIL reference (torchvision's transforms on PIL images).

Tolerances, as the mean absolute difference (MAD) on 0..255, measured on 40 synth photos at output sizes
32..224, train and val (also in benchmarks/results/decode.md):

- full-scale JPEG decode (``k = 1``): simplejpeg and Pillow embed libjpeg-turbo and decode identically; the
  resize is torch's port of Pillow's antialiased bilinear filter (int16 weights): every pixel within ±1,
  MAD ~0.02 (max 0.12 seen). Bound: pixels within 1, MAD < 0.25.
- DCT-scaled decode (``k`` = 2, 4, 8; crops at least ``k`` times the output): the IDCT's own downscale
  replaces the first part of the triangle filter over full-resolution pixels, so fine detail differs:
  MAD 0.6-1.6 on average, at most 3.1 (k = 8 at 32 px), i.e. < 5.3 % of the image's std and < 0.6x what
  re-encoding the reference output as JPEG quality 90 changes (colour photos): the scale of ordinary JPEG
  noise. Bound: MAD < 3.5 and < 6 % of the reference's std.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataio.errors import DataioError
from dataio.loaders.image.decode import DecodeError, dct_factor, decode_crop_resize, decode_rgb, image_size, read_header
from dataio.loaders.image.reference import open_rgb, reference_center_crop, reference_resized_crop
from dataio.loaders.image.transforms import center_crop_box, random_resized_crop_params, sample_rng

FULL_MEAN, DCT_MEAN, DCT_REL = 0.25, 3.5, 0.06


@pytest.fixture(scope="module")
def jpegs(synth_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(synth_dir.rglob("*.JPEG"))[:10]]


@pytest.fixture(scope="module")
def big_jpeg(jpegs: list[bytes]) -> bytes:
    """A ~1900x1400 photo-like JPEG (an upscaled synth image), big enough for DCT scales 2, 4 and 8."""
    big = open_rgb(jpegs[0]).resize((1900, 1406), Image.Resampling.BICUBIC)
    return _encode(big, "JPEG", quality=90)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def assert_close(fast: np.ndarray, ref: np.ndarray, k: int) -> None:
    """The module docstring's tolerance for decode scale ``1 / k``."""
    d = _diff(fast, ref)
    if k == 1:
        assert d.max() <= 1 and d.mean() < FULL_MEAN, (d.max(), d.mean())
        return
    assert d.mean() < DCT_MEAN and d.mean() < DCT_REL * ref.std(), (d.mean(), ref.std())


def test_train_crop_matches_pil_reference(jpegs: list[bytes]) -> None:
    for i, data in enumerate(jpegs):
        img = open_rgb(data)
        for j in range(3):
            rng = sample_rng(1, j, i)
            top, left, h, w = random_resized_crop_params(img.height, img.width, (0.08, 1.0), (3 / 4, 4 / 3), rng)
            flip = bool(j % 2)
            assert dct_factor(w, h, 224, 224) == 1  # ImageNet-sized photos: full-scale decode
            fast = decode_crop_resize(data, (left, top, left + w, top + h), (224, 224), flip)
            ref = np.asarray(reference_resized_crop(img, top, left, h, w, 224, flip))
            assert_close(fast, ref, 1)


@pytest.mark.parametrize("size", [224, 333, 64])
def test_val_crop_matches_pil_reference(jpegs: list[bytes], size: int) -> None:
    for data in jpegs:
        img = open_rgb(data)
        box = center_crop_box(img.height, img.width, size)
        fast = decode_crop_resize(data, box, (size, size), crop_first=False)
        ref = np.asarray(reference_center_crop(img, size))
        k = dct_factor(box[2] - box[0], box[3] - box[1], size, size)
        assert k == (4 if size == 64 else 1)  # 64: a 5x downscale, decoded at DCT scale 1/4
        assert_close(fast, ref, k)


def test_flip_mirrors_the_output(jpegs: list[bytes], big_jpeg: bytes) -> None:
    for data, box in ((jpegs[1], (30, 20, 300, 250)), (big_jpeg, (100, 50, 1500, 1300))):
        plain = decode_crop_resize(data, box, (96, 80))
        flipped = decode_crop_resize(data, box, (96, 80), flip=True)
        assert plain.shape == (80, 96, 3)
        assert np.array_equal(flipped, plain[:, ::-1])


@pytest.mark.parametrize(
    "box", [(0, 0, 1900, 1406), (13, 7, 1501, 977), (600, 300, 1100, 800), (1, 2, 1897, 1403), (256, 400, 1156, 1300)]
)
def test_dct_scaled_train_crop_stays_close_to_full_decode(big_jpeg: bytes, box: tuple[int, int, int, int]) -> None:
    img = open_rgb(big_jpeg)
    assert img.size == (1900, 1406)
    left, top, right, bottom = box
    assert dct_factor(right - left, bottom - top, 224, 224) > 1
    fast = decode_crop_resize(big_jpeg, box, (224, 224))
    ref = np.asarray(reference_resized_crop(img, top, left, bottom - top, right - left, 224, False))
    assert_close(fast, ref, 2)


@pytest.mark.parametrize("size", [224, 160])
def test_dct_scaled_val_crop_stays_close_to_full_decode(big_jpeg: bytes, size: int) -> None:
    img = open_rgb(big_jpeg)
    box = center_crop_box(img.height, img.width, size)
    assert dct_factor(box[2] - box[0], box[3] - box[1], size, size) > 1
    fast = decode_crop_resize(big_jpeg, box, (size, size), crop_first=False)
    assert_close(fast, np.asarray(reference_center_crop(img, size)), 2)


def test_dct_factor_keeps_at_least_the_output_pixels() -> None:
    assert dct_factor(500, 375, 224, 224) == 1
    assert dct_factor(448, 448, 224, 224) == 2
    assert dct_factor(447, 2000, 224, 224) == 1
    assert dct_factor(1000, 900, 224, 224) == 4
    assert dct_factor(1792, 1792, 224, 224) == 8
    assert dct_factor(9000, 9000, 224, 224) == 8


def test_decode_rgb_scales(big_jpeg: bytes) -> None:
    assert decode_rgb(big_jpeg).shape == (1406, 1900, 3)
    assert decode_rgb(big_jpeg, 2).shape == (703, 950, 3)
    assert decode_rgb(big_jpeg, 8).shape == (176, 238, 3)  # ceil(1406 / 8), ceil(1900 / 8)
    with pytest.raises(ValueError):
        decode_rgb(big_jpeg, 3)


def test_tiny_images_are_upsampled_like_pil(jpegs: list[bytes]) -> None:
    tiny = open_rgb(jpegs[2]).resize((61, 45), Image.Resampling.BICUBIC)
    data = _encode(tiny, "JPEG", quality=95)
    img = open_rgb(data)
    fast = decode_crop_resize(data, (3, 2, 50, 41), (224, 224))
    assert_close(fast, np.asarray(reference_resized_crop(img, 2, 3, 39, 47, 224, False)), 1)
    fast = decode_crop_resize(data, center_crop_box(45, 61, 224), (224, 224), crop_first=False)
    assert_close(fast, np.asarray(reference_center_crop(img, 224)), 1)


def _variants(rgb: Image.Image) -> dict[str, bytes]:
    return {
        "png-rgb": _encode(rgb, "PNG"),
        "png-rgba": _encode(rgb.convert("RGBA"), "PNG"),
        "png-gray": _encode(rgb.convert("L"), "PNG"),
        "png-palette": _encode(rgb.convert("P"), "PNG"),
        "jpeg-gray": _encode(rgb.convert("L"), "JPEG", quality=90),
        "jpeg-cmyk": _encode(rgb.convert("CMYK"), "JPEG", quality=90),
        "jpeg-progressive": _encode(rgb, "JPEG", quality=90, progressive=True),
        "webp": _encode(rgb, "WEBP", quality=90),
        "bmp": _encode(rgb, "BMP"),
    }


def test_other_formats_decode_like_pil(jpegs: list[bytes]) -> None:
    rgb = open_rgb(jpegs[3])
    for name, data in _variants(rgb).items():
        img = open_rgb(data)
        assert image_size(data) == img.size, name
        fast = decode_crop_resize(data, (40, 30, 340, 290), (200, 200), True)  # full-scale decode
        assert_close(fast, np.asarray(reference_resized_crop(img, 30, 40, 260, 300, 200, True)), 1)
        fast = decode_crop_resize(data, (40, 30, 340, 290), (64, 64))  # DCT scale 1/4 for JPEGs
        assert_close(fast, np.asarray(reference_resized_crop(img, 30, 40, 260, 300, 64, False)), 4)


def test_jpeg_with_recoverable_errors_decodes_like_pil(jpegs: list[bytes]) -> None:
    data = jpegs[4]
    sos = data.index(b"\xff\xda")
    damaged = data[:sos] + b"\x00\x00\x00" + data[sos:]  # "extraneous bytes before marker": a libjpeg warning
    img = open_rgb(damaged)  # PIL (torchvision's loader) reads it
    fast = decode_crop_resize(damaged, (0, 0, img.width, img.height), (100, 100))
    ref = np.asarray(img.resize((100, 100), Image.Resampling.BILINEAR))
    assert _diff(fast, ref).max() <= 1


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", b"\xff\xd8\xff\xe0garbage", b"\x89PNG\r\n\x1a\n\x00\x00"],
    ids=["empty", "text", "jpeg-magic", "png-magic"],
)
def test_undecodable_bytes_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        image_size(data)
    with pytest.raises(DecodeError):
        decode_crop_resize(data, (0, 0, 1, 1), (8, 8))


def test_truncated_jpeg_raises_decode_error(jpegs: list[bytes]) -> None:
    data = jpegs[5][: len(jpegs[5]) // 2]
    assert image_size(data) == open_rgb(jpegs[5]).size  # the header is intact
    with pytest.raises(DecodeError, match="cannot decode") as info:
        decode_crop_resize(data, (0, 0, 100, 100), (32, 32))
    assert isinstance(info.value, DataioError) and isinstance(info.value, ValueError)


def test_output_shape_dtype_and_bad_arguments(jpegs: list[bytes]) -> None:
    data = jpegs[6]
    w, h = image_size(data)
    out = decode_crop_resize(data, (0, 0, w, h), (50, 30))
    assert out.shape == (30, 50, 3) and out.dtype == np.uint8
    same = decode_crop_resize(data, (10, 10, 60, 40), (50, 30))  # nothing to resample
    assert np.array_equal(same, decode_rgb(data)[10:40, 10:60])
    for box in ((0, 0, w + 1, h), (-1, 0, 10, 10), (5, 5, 5, 10), (0, 0, float("nan"), 3), (1, 2, 3)):
        with pytest.raises(ValueError):
            decode_crop_resize(data, box, (8, 8))
    for size in ((0, 8), (8,), (8.5, 8), (True, 8)):
        with pytest.raises(ValueError):
            decode_crop_resize(data, (0, 0, 10, 10), size)


def test_read_header(jpegs: list[bytes]) -> None:
    rgb = open_rgb(jpegs[7])
    header = read_header(jpegs[7])
    assert (header.width, header.height, header.turbo) == (rgb.width, rgb.height, True)
    variants = _variants(rgb)
    assert read_header(variants["jpeg-gray"]).turbo and not read_header(variants["jpeg-cmyk"]).turbo
    assert not read_header(variants["png-rgb"]).turbo and read_header(variants["png-rgb"]).width == rgb.width
    box = (10, 20, 300, 250)
    assert np.array_equal(decode_crop_resize(jpegs[7], box, (64, 64), header=header),
                          decode_crop_resize(jpegs[7], box, (64, 64)))
