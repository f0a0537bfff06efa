"""Geometry of the standard ImageNet transforms, restated from torchvision without importing it.

Pure functions of the image size and a ``numpy.random.Generator``: no pixels, no IO. They reproduce
torchvision's algorithms exactly (same rounding, same fallback), so that the fast decoder in
:mod:`dataio.loaders.image.decode` and the PIL reference in :mod:`dataio.loaders.image.reference` crop the same pixels:

- train: ``RandomResizedCrop(size, scale, ratio)`` → :func:`random_resized_crop_params`, then
  ``RandomHorizontalFlip()`` → :func:`horizontal_flip`;
- val: ``Resize(int(size / crop_ratio))`` + ``CenterCrop(size)`` → :func:`resize_shorter_size` and
  :func:`center_crop_offsets`, or both at once as a crop box in original pixels → :func:`center_crop_box`.

Randomness comes from one generator per sample, :func:`sample_rng` ``(seed, epoch, index)``, so an
augmentation depends on which sample it is, never on which thread or rank happens to process it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MISSING_LABEL",
    "center_crop_box",
    "center_crop_offsets",
    "check_crop_ratio",
    "check_ratio",
    "check_scale",
    "horizontal_flip",
    "label_of",
    "normalization",
    "random_resized_crop_params",
    "resize_shorter_size",
    "sample_rng",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The label of a sample that has none (an unlabelled dataset, or a sample without a ``label`` field).
MISSING_LABEL = -1


def normalization(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``Normalize(mean, std)`` of ``ToTensor()``'s ``x / 255`` as one multiply-add on uint8 pixels ``x``:
    ``(scale, shift)`` with ``scale = 1 / (255 std)`` and ``shift = -mean / std`` per channel (every decoder,
    the native kernel and the GPU normalisation use these same float32 values)."""
    if len(mean) != len(std):
        raise ValueError(f"mean and std differ in length: {len(mean)} vs {len(std)}")
    m, sd = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    scale = np.float32(1.0) / (np.float32(255.0) * sd)  # float32 arithmetic throughout, as the batches are
    shift = -m / sd
    return tuple(float(x) for x in scale), tuple(float(x) for x in shift)


def label_of(sample: dict[str, object]) -> int:
    """A sample's label as an int, :data:`MISSING_LABEL` when it has none."""
    label = sample.get("label")
    return MISSING_LABEL if label is None else int(label)  # type: ignore[call-overload]


Box = tuple[float, float, float, float]


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample's augmentation: a PCG64 stream keyed by ``(seed, epoch, index)``.

    Args:
        seed: The loader's seed (>= 0).
        epoch: The epoch (>= 0).
        index: The sample's index in the dataset (>= 0), not its position in the epoch.

    Raises:
        ValueError: A negative or non-integer argument.
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("index", index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"sample_rng: {name} must be an integer >= 0, got {value!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence((int(seed), int(epoch), int(index)))))


def check_scale(scale: Sequence[float]) -> tuple[float, float]:
    """Validates a RandomResizedCrop area range: ``0 < lo <= hi <= 1``."""
    lo, hi = _pair(scale, "scale")
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {tuple(scale)!r}")
    return lo, hi


def check_ratio(ratio: Sequence[float]) -> tuple[float, float]:
    """Validates a RandomResizedCrop aspect-ratio range (width / height): ``0 < lo <= hi``."""
    lo, hi = _pair(ratio, "ratio")
    if not 0 < lo <= hi < math.inf:
        raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {tuple(ratio)!r}")
    return lo, hi


#: The largest resized shorter side of a val crop (``size / crop_ratio``): the native kernel's bound
#: (``WINDOW_MAX_RESIZE`` in native/windows.c), which keeps its centre-crop arithmetic exact; both paths refuse more.
MAX_RESIZE = 4_194_304


def check_crop_ratio(crop_ratio: float, size: int | None = None) -> float:
    """Validates the val centre-crop fraction: ``0 < crop_ratio <= 1``, and with ``size``, ``size / crop_ratio``
    (the resized shorter side) at most :data:`MAX_RESIZE`, as the native kernel requires."""
    if isinstance(crop_ratio, bool) or not isinstance(crop_ratio, (int, float)) or not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio!r}")
    if size is not None and not size / MAX_RESIZE <= crop_ratio:
        raise ValueError(
            f"crop_ratio must be in [{size / MAX_RESIZE!r}, 1] for size {size} (size / crop_ratio, the resized "
            f"shorter side, is at most {MAX_RESIZE} pixels), got {crop_ratio!r}"
        )
    return float(crop_ratio)


def random_resized_crop_params(
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    rng: np.random.Generator | None = None,
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``: a crop ``(top, left, h, w)`` of a ``height`` × ``width`` image.

    Up to 10 attempts draw an area fraction uniformly from ``scale`` and an aspect ratio (w / h)
    log-uniformly from ``ratio``; the first crop that fits is placed uniformly at random. If none fits, the
    fallback is the central crop of the whole image with its aspect ratio clamped into ``ratio``.

    Args:
        height: Image height in pixels (>= 1).
        width: Image width in pixels (>= 1).
        scale: Range of the crop's area as a fraction of the image's.
        ratio: Range of the crop's aspect ratio (width / height).
        rng: The sample's generator (see :func:`sample_rng`); required.

    Returns:
        ``(top, left, h, w)`` in pixels, with ``0 <= top``, ``top + h <= height`` (same for left / w).
    """
    if rng is None:
        raise ValueError("random_resized_crop_params needs an rng (dataio.loaders.sample_rng(seed, epoch, index))")
    _check_dims(height, width)
    s_lo, s_hi = check_scale(scale)
    r_lo, r_hi = check_ratio(ratio)
    area = height * width
    log_lo, log_hi = math.log(r_lo), math.log(r_hi)
    for _ in range(10):
        target_area = area * rng.uniform(s_lo, s_hi)
        aspect_ratio = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect_ratio))
        h = round(math.sqrt(target_area / aspect_ratio))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height  # fallback: central crop, aspect ratio clamped into the range
    if in_ratio < r_lo:
        w = width
        h = round(w / r_lo)
    elif in_ratio > r_hi:
        h = height
        w = round(h * r_hi)
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def horizontal_flip(rng: np.random.Generator, p: float = 0.5) -> bool:
    """``RandomHorizontalFlip(p)``'s decision: one uniform draw after the crop's."""
    return bool(rng.random() < p)


def resize_shorter_size(height: int, width: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)`` with an int size: ``(new_h, new_w)`` with the shorter side ``size``.

    The longer side is ``int(size * long / short)`` (truncated, as torchvision does).
    """
    _check_dims(height, width)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1, got {size!r}")
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w


def center_crop_offsets(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int]:
    """torchvision's ``CenterCrop`` anchor: ``(top, left)`` of a ``crop_h`` × ``crop_w`` crop.

    ``int(round((height - crop_h) / 2.0))`` (Python's round: halves go to the even neighbour), same for left.
    Crops larger than the image (which torchvision pads) are refused.
    """
    _check_dims(height, width)
    if not (0 < crop_h <= height and 0 < crop_w <= width):
        raise ValueError(f"a {crop_h}x{crop_w} centre crop does not fit a {height}x{width} image")
    return round((height - crop_h) / 2.0), round((width - crop_w) / 2.0)


def center_crop_box(height: int, width: int, size: int, crop_ratio: float = 0.875) -> Box:
    """The val transform as one box: ``Resize(int(size / crop_ratio))`` then ``CenterCrop(size)``.

    Returns the centre crop's box ``(left, top, right, bottom)`` in the *original* image's (float) pixel
    coordinates, so that resizing that window of the image to ``size`` × ``size`` is the two-step
    transform (e.g. 224 of a 256-short-side resize: the central 87.5 % of the shorter side).

    Args:
        height: Original image height.
        width: Original image width.
        size: Output side (224).
        crop_ratio: ``size / resize``; 0.875 gives the standard Resize(256) + CenterCrop(224).
    """
    resize = int(size / check_crop_ratio(crop_ratio))
    new_h, new_w = resize_shorter_size(height, width, resize)
    top, left = center_crop_offsets(new_h, new_w, size, size)
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + size) * sx, (top + size) * sy


def _pair(value: Sequence[float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers (lo, hi), got {value!r}") from None
    return lo, hi


def _check_dims(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"image size must be at least 1x1, got {height}x{width}")
