"""Loader layer: the image pipeline (decode, augment, collate, normalise) run by dataio's threaded loader."""

from dataio.loaders.image.decode import DecodeError, decode_crop_resize, image_size
from dataio.loaders.image.pipeline import ImagePipeline
from dataio.loaders.image.transforms import IMAGENET_MEAN, IMAGENET_STD, sample_rng

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DecodeError",
    "ImagePipeline",
    "decode_crop_resize",
    "image_size",
    "sample_rng",
]
