"""Geometry of the ImageNet transforms vs a line-by-line restatement of torchvision's code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataio.loaders.image.decode import window_geometry
from dataio.loaders.image.transforms import (
    center_crop_box,
    center_crop_offsets,
    horizontal_flip,
    random_resized_crop_params,
    resize_shorter_size,
    sample_rng,
)

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)


def torchvision_get_params(height, width, scale, ratio, rng):
    """torchvision.transforms.RandomResizedCrop.get_params, transcribed; torch's RNG calls are the rng's
    (torch.empty(1).uniform_(a, b) -> rng.uniform(a, b); torch.randint(0, n, (1,)) -> rng.integers(0, n)).
    Also returns whether the fallback was taken."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))  # noqa: RUF046 - verbatim
        h = int(round(math.sqrt(target_area / aspect_ratio)))  # noqa: RUF046 - verbatim
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return (i, j, h, w), False
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))  # noqa: RUF046 - verbatim
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))  # noqa: RUF046 - verbatim
    else:
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return (i, j, h, w), True


def torchvision_resize_center_crop(height, width, resize, crop):
    """torchvision's Resize(resize) output size (_compute_resized_output_size) and CenterCrop(crop) anchor."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = resize, int(resize * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    crop_top = int(round((new_h - crop) / 2.0))  # noqa: RUF046 - verbatim
    crop_left = int(round((new_w - crop) / 2.0))  # noqa: RUF046 - verbatim
    return new_h, new_w, crop_top, crop_left


SIZES = [(375, 500), (500, 375), (333, 500), (500, 333), (501, 333), (257, 255), (224, 224), (100, 80),
         (37, 211), (1, 1), (10, 1000), (1000, 10), (2000, 1500), (4000, 97)]  # fmt: skip


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_random_resized_crop_is_torchvisions(height: int, width: int) -> None:
    for index in range(300):
        got = random_resized_crop_params(height, width, SCALE, RATIO, sample_rng(5, 1, index))
        want, _ = torchvision_get_params(height, width, SCALE, RATIO, sample_rng(5, 1, index))
        assert got == want
        top, left, h, w = got
        assert 0 <= top <= height - h and 0 <= left <= width - w and h > 0 and w > 0


def test_random_resized_crop_distribution() -> None:
    height, width, n = 375, 500, 6000
    fractions, log_ratios, fallbacks = [], [], 0
    for index in range(n):
        rng = sample_rng(0, 0, index)
        (top, left, h, w), fallback = torchvision_get_params(height, width, SCALE, RATIO, sample_rng(0, 0, index))
        assert random_resized_crop_params(height, width, SCALE, RATIO, rng) == (top, left, h, w)
        fallbacks += fallback
        if not fallback:
            fractions.append(h * w / (height * width))
            log_ratios.append(math.log(w / h))
    fractions, log_ratios = np.array(fractions), np.array(log_ratios)
    assert fallbacks < n * 0.01  # a 4:3 image almost never needs the fallback
    assert fractions.min() >= 0.08 * 0.97 and fractions.max() <= 1.0  # rounding to whole pixels: ~1 px per side
    # uniform on [0.08, 1] has mean 0.54; big crops that do not fit a 4:3 image are redrawn (mean ~0.43)
    assert 0.40 < fractions.mean() < 0.47
    assert (fractions > 0.9).mean() > 0.005  # yet nearly-whole-image crops still occur
    assert log_ratios.min() >= math.log(3 / 4) - 0.03 and log_ratios.max() <= math.log(4 / 3) + 0.03
    assert abs(float(np.median(log_ratios))) < 0.05  # log-uniform: symmetric around ratio 1
    counts, _ = np.histogram(log_ratios, bins=4, range=(math.log(3 / 4), math.log(4 / 3)))
    assert counts.min() > 0.15 * len(log_ratios)  # no bin starved (log-uniform, not uniform in ratio)


def test_fallback_on_extreme_images() -> None:
    rng = sample_rng(0, 0, 0)
    assert random_resized_crop_params(10, 1000, SCALE, RATIO, rng) == (0, (1000 - 13) // 2, 10, 13)
    assert random_resized_crop_params(1000, 10, SCALE, RATIO, rng) == ((1000 - 13) // 2, 0, 13, 10)
    assert random_resized_crop_params(1, 1, SCALE, RATIO, rng) == (0, 0, 1, 1)
    # no 2:1..3:1 crop of the whole area fits a square: the fallback clamps the ratio to 2 (h = round(1.5) = 2)
    assert random_resized_crop_params(3, 3, (1.0, 1.0), (2.0, 3.0), rng) == (0, 0, 2, 3)


def test_sample_rng_is_keyed_by_seed_epoch_index() -> None:
    draw = lambda *key: sample_rng(*key).random(4).tolist()  # noqa: E731
    assert draw(1, 2, 3) == draw(1, 2, 3)
    others = [draw(1, 2, 4), draw(1, 3, 3), draw(2, 2, 3), draw(0, 0, 0)]
    assert all(o != draw(1, 2, 3) for o in others)
    assert sample_rng(2**40, 10**6, 2**62).random() >= 0
    for bad in ((-1, 0, 0), (0, -1, 0), (0, 0, -1), (0.5, 0, 0), (True, 0, 0)):
        with pytest.raises(ValueError):
            sample_rng(*bad)


def test_crop_then_flip_draw_order_is_deterministic() -> None:
    def params(index: int) -> tuple:
        rng = sample_rng(9, 0, index)
        return random_resized_crop_params(375, 500, SCALE, RATIO, rng), horizontal_flip(rng)

    runs = [[params(i) for i in range(200)] for _ in range(2)]
    assert runs[0] == runs[1]
    flips = [f for _, f in runs[0]]
    assert 70 < sum(flips) < 130


@pytest.mark.parametrize(("height", "width"), SIZES)
@pytest.mark.parametrize(("size", "crop_ratio"), [(224, 0.875), (160, 0.875), (299, 0.875), (64, 0.5), (32, 1.0)])
def test_val_box_is_torchvisions_resize_center_crop(height: int, width: int, size: int, crop_ratio: float) -> None:
    resize = int(size / crop_ratio)
    new_h, new_w, top, left = torchvision_resize_center_crop(height, width, resize, size)
    assert resize_shorter_size(height, width, resize) == (new_h, new_w)
    assert center_crop_offsets(new_h, new_w, size, size) == (top, left)
    sx, sy = width / new_w, height / new_h
    box = center_crop_box(height, width, size, crop_ratio)
    assert box == (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    assert -1e-9 <= box[0] < box[2] <= width + 1e-9 and -1e-9 <= box[1] < box[3] <= height + 1e-9
    # what the decoder recovers from the box: exactly torchvision's resize size and crop anchor
    assert window_geometry(width, height, box, (size, size)) == (new_w, new_h, left, top)


def test_val_geometry_inverts_exactly_for_many_sizes() -> None:
    rng = np.random.default_rng(0)
    for height, width in rng.integers(1, 3000, size=(3000, 2)):
        height, width = int(height), int(width)
        new_h, new_w, top, left = torchvision_resize_center_crop(height, width, 256, 224)
        assert window_geometry(width, height, center_crop_box(height, width, 224), (224, 224)) == (
            new_w, new_h, left, top)


def test_standard_geometry_examples() -> None:
    assert resize_shorter_size(375, 500, 256) == (256, 341)
    assert resize_shorter_size(500, 375, 256) == (341, 256)
    assert center_crop_offsets(256, 341, 224, 224) == (16, 58)  # (341 - 224) / 2 = 58.5 rounds to even
    assert center_crop_offsets(256, 343, 224, 224) == (16, 60)  # 59.5 -> 60
    assert center_crop_box(256, 256, 224) == (16.0, 16.0, 240.0, 240.0)


def test_bad_arguments_raise_value_error() -> None:
    rng = sample_rng(0, 0, 0)
    for kwargs in ({"scale": (0.0, 1.0)}, {"scale": (0.5, 0.2)}, {"scale": (0.1, 1.5)}, {"ratio": (2.0, 1.0)},
                   {"ratio": (0.0, 1.0)}, {"scale": (1,)}, {"ratio": "ab"}):  # fmt: skip
        with pytest.raises(ValueError):
            random_resized_crop_params(100, 100, **{"scale": SCALE, "ratio": RATIO, **kwargs}, rng=rng)
    with pytest.raises(ValueError):
        random_resized_crop_params(0, 100, SCALE, RATIO, rng)
    with pytest.raises(ValueError):
        random_resized_crop_params(100, 100, SCALE, RATIO, None)
    with pytest.raises(ValueError):
        center_crop_box(100, 100, 224, crop_ratio=1.5)
    with pytest.raises(ValueError):
        center_crop_offsets(100, 100, 224, 224)
    with pytest.raises(ValueError):
        resize_shorter_size(100, 100, 0)
