"""Batches for the harness: a packed dataio dataset through ``dataio.DataLoader``, or synthetic data on the device.

Real data: ``open_dataset`` → :class:`~dataio.DistributedShuffleSampler` (this rank's equal share of each epoch,
``drop_last``) → :class:`~dataio.DataLoader` fast path with a training :class:`~dataio.ImagePipeline`
(RandomResizedCrop + flip + normalise, decoded in threads; batches land on the GPU when there is one).

Synthetic data: one fixed batch of normal pixels and uniform labels, made once on the device, handed out every
step: the same model and step with no input pipeline at all, the reference for how fast training could go.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from dataio.train.config import TrainConfig

__all__ = ["LoaderBatches", "SyntheticBatches", "open_batches"]

Batch = tuple[torch.Tensor, torch.Tensor]


class LoaderBatches:
    """This rank's batches of a dataio dataset, epoch by epoch.

    Attributes:
        num_classes: Classes of the dataset.
        steps_per_epoch: Full batches per rank per epoch.
    """

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        import dataio

        if config.dataset is None:
            raise ValueError("no dataset to load batches from")
        self.dataset = dataio.open_dataset(config.dataset)
        classes = getattr(self.dataset, "classes", None)
        labels = getattr(self.dataset, "labels", None)
        self.num_classes = len(classes) if classes else int(max(labels)) + 1 if labels is not None else 0
        if self.num_classes < 1:
            raise ValueError(f"{config.dataset}: no class labels to train a classifier on")
        self.sampler = dataio.DistributedShuffleSampler(
            self.dataset, config.shuffle_mode, seed=config.seed, drop_last=True
        )
        self.loader = dataio.DataLoader(
            self.dataset,
            batch_size=config.batch_size,
            sampler=self.sampler,
            num_workers=config.workers,
            drop_last=True,
            pipeline=dataio.ImagePipeline(train=True, size=config.image_size),
            seed=config.seed,
            device=str(device) if device.type == "cuda" else None,
        )
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"{config.dataset}: {len(self.sampler)} samples per rank make no full batch of {config.batch_size}"
            )
        self._iterator: Any = None

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """Iterator over the epoch's batches (closes the previous epoch's pipeline)."""
        self._close_iterator()
        self.loader.set_epoch(epoch)
        self._iterator = iter(self.loader)
        return self._iterator

    def stats(self) -> dict[str, Any]:
        """The loader's per-stage stats and verdict."""
        return self.loader.stats()

    def _close_iterator(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()
        self._iterator = None

    def close(self) -> None:
        """Stops the loader threads and closes the dataset."""
        self._close_iterator()
        close = getattr(self.dataset, "close", None)
        if close is not None:
            close()


class SyntheticBatches:
    """One fixed batch generated on the device, returned every step (no IO, no decoding, no copies)."""

    def __init__(self, config: TrainConfig, device: torch.device, num_classes: int, steps_per_epoch: int) -> None:
        gen = torch.Generator(device=device).manual_seed(config.seed + 1)
        shape = (config.batch_size, 3, config.image_size, config.image_size)
        self.images = torch.randn(shape, generator=gen, device=device)
        self.labels = torch.randint(0, num_classes, (config.batch_size,), generator=gen, device=device)
        self.num_classes = num_classes
        self.steps_per_epoch = steps_per_epoch

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The same batch, ``steps_per_epoch`` times."""
        for _ in range(self.steps_per_epoch):
            yield self.images, self.labels

    def stats(self) -> dict[str, Any]:
        """Nothing to report: there is no input pipeline."""
        return {}

    def close(self) -> None:
        """Nothing to release."""


def open_batches(config: TrainConfig, device: torch.device) -> LoaderBatches | SyntheticBatches:
    """The run's batch source: synthetic with ``synthetic_data``, the dataset's loader otherwise."""
    if not config.synthetic_data:
        return LoaderBatches(config, device)
    if config.dataset is None:
        return SyntheticBatches(config, device, config.classes, config.steps or 100)
    real = LoaderBatches(config, device)  # same classes and epoch length as the real run
    try:
        return SyntheticBatches(config, device, real.num_classes, real.steps_per_epoch)
    finally:
        real.close()
