"""The experiment's classifiers: a two-convolution CNN with no batch normalisation, or softmax regression.

No BatchNorm on purpose: its statistics are per rank, so with it the same global batch would train differently on
1 and on 8 ranks. Without it a DDP step is the same function of the global batch at every world size, and the gap
between shuffle modes is the sampling's alone. About 10 k parameters at 16 px: an epoch of the digits takes well
under a second on one core.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DigitNet", "build_model"]


class DigitNet(nn.Module):
    """conv3×3(16)-ReLU-maxpool-conv3×3(32)-ReLU-maxpool-linear on ``3 × size × size`` inputs (size divisible by 4)."""

    def __init__(self, num_classes: int, image_size: int) -> None:
        super().__init__()
        if num_classes < 2 or image_size < 4 or image_size % 4:
            raise ValueError(f"need >= 2 classes and an image size divisible by 4, got {num_classes}, {image_size}")
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.head = nn.Linear(32 * (image_size // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def build_model(name: str, num_classes: int, image_size: int, seed: int) -> nn.Module:
    """``"cnn"``: :class:`DigitNet`; ``"linear"``: softmax regression on the pixels. The initial weights are drawn
    from ``seed`` alone (the global RNG is left as it was).

    Raises:
        ValueError: An unknown name.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name == "cnn":
            return DigitNet(num_classes, image_size)
        if name == "linear":
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * image_size * image_size, num_classes))
    raise ValueError(f"unknown model {name!r}; choose cnn or linear")
