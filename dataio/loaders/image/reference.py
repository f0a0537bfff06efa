"""The PIL reference of :class:`~dataio.loaders.image.pipeline.ImagePipeline`: what torchvision does, step by step.

Not used by the fast path. Tests compare the fast path with it, and ``benchmarks/decode.py`` measures the
speed-up over it. It is a literal restatement of::

    train: Compose([RandomResizedCrop(size), RandomHorizontalFlip(), ToTensor(), Normalize(mean, std)])
    val:   Compose([Resize(int(size / crop_ratio)), CenterCrop(size), ToTensor(), Normalize(mean, std)])

applied to ``PIL.Image.open(...).convert("RGB")`` (torchvision's default loader), with the geometry drawn by
the same functions and in the same order as the fast path, so both crop the same pixels for the same rng.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from dataio.loaders.image.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    center_crop_offsets,
    horizontal_flip,
    label_of,
    random_resized_crop_params,
    resize_shorter_size,
)

__all__ = [
    "ReferencePipeline",
    "open_rgb",
    "reference_center_crop",
    "reference_resized_crop",
    "to_normalized_tensor",
]


def open_rgb(data: bytes) -> Image.Image:
    """torchvision's ``pil_loader``: ``Image.open`` + ``convert("RGB")``."""
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def reference_resized_crop(img: Image.Image, top: int, left: int, h: int, w: int, size: int, flip: bool) -> Image.Image:
    """``F.resized_crop`` (crop, then resize BILINEAR) + optional ``F.hflip``, on a PIL image."""
    out = img.crop((left, top, left + w, top + h)).resize((size, size), Image.Resampling.BILINEAR)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else out


def reference_center_crop(img: Image.Image, size: int, crop_ratio: float = 0.875) -> Image.Image:
    """``Resize(int(size / crop_ratio))`` (BILINEAR, shorter side) + ``CenterCrop(size)``, on a PIL image."""
    new_h, new_w = resize_shorter_size(img.height, img.width, int(size / crop_ratio))
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = center_crop_offsets(new_h, new_w, size, size)
    return img.crop((left, top, left + size, top + size))


def to_normalized_tensor(
    img: Image.Image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """``ToTensor()`` (CHW float in [0, 1]) then ``Normalize(mean, std)`` (``(x - mean) / std``)."""
    x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


class ReferencePipeline:
    """The reference transform with the fast pipeline's interface (``process`` and ``__call__``).

    Args:
        train: RandomResizedCrop + flip (``True``) or Resize + CenterCrop (``False``).
        size: Output side.
        scale: RandomResizedCrop area range.
        ratio: RandomResizedCrop aspect-ratio range.
        crop_ratio: val centre-crop fraction.
        mean: Normalisation mean.
        std: Normalisation std.
    """

    def __init__(
        self,
        train: bool,
        size: int = 224,
        *,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        crop_ratio: float = 0.875,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.train, self.size, self.scale, self.ratio = train, size, scale, ratio
        self.crop_ratio, self.mean, self.std = crop_ratio, tuple(mean), tuple(std)

    def transform(self, img: Image.Image, rng: np.random.Generator | None = None) -> Image.Image:
        """The geometric part on a decoded PIL RGB image (same rng draws, in the same order, as the fast path)."""
        if not self.train:
            return reference_center_crop(img, self.size, self.crop_ratio)
        if rng is None:
            raise ValueError("a train pipeline needs the sample's rng")
        top, left, h, w = random_resized_crop_params(img.height, img.width, self.scale, self.ratio, rng)
        return reference_resized_crop(img, top, left, h, w, self.size, horizontal_flip(rng))

    def process(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
        """``(size, size, 3)`` uint8 image and label, like :meth:`ImagePipeline.process`."""
        out = self.transform(open_rgb(sample["image"]), rng)
        return np.array(out, dtype=np.uint8), label_of(sample)

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator | None = None) -> tuple[torch.Tensor, int]:
        """``(normalised float32 3 × size × size, label)``, like :meth:`ImagePipeline.__call__`."""
        out = self.transform(open_rgb(sample["image"]), rng)
        return to_normalized_tensor(out, self.mean, self.std), label_of(sample)
