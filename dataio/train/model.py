"""Image classifiers for the harness: a compact ResNet-style CNN, or any torchvision model by name.

The default (``"resnet"``) is a ResNet-18-shaped network at a fraction of the width and depth: a 3×3 stem (plus a
max-pool for inputs of 128 px and more), four stages of one basic residual block each (``width``, 2×, 4×, 8×
channels; stride 2 from the second stage), global average pooling and a linear classifier. At ``width=32`` its
convolutions hold 1.2 M parameters (4.7 MB of fp32 gradients: several DDP buckets at small bucket sizes; the
classifier adds 0.26 M per 1000 classes) and it trains at a useful rate on CPUs, so the harness exercises data
loading, compute and gradient exchange together anywhere.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "SmallResNet", "build_model", "count_parameters"]


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the (projected when the shape changes) input, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """The default classifier (see the module docstring).

    Args:
        num_classes: Output logits.
        width: Channels of the first stage (then 2×, 4×, 8×).
        image_size: Input side in pixels; 128 and above adds a stride-2 max-pool after the stem.
    """

    def __init__(self, num_classes: int, width: int = 32, image_size: int = 224) -> None:
        super().__init__()
        if num_classes < 1 or width < 1 or image_size < 1:
            raise ValueError(f"num_classes, width and image_size must be >= 1: {num_classes}, {width}, {image_size}")
        stem: list[nn.Module] = [nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        if image_size >= 128:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks, cin = [], width
        for i, cout in enumerate(widths):
            blocks.append(BasicBlock(cin, cout, 1 if i == 0 else 2))
            cin = cout
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build_model(name: str, num_classes: int, image_size: int = 224, width: int = 32) -> nn.Module:
    """``"resnet"``: :class:`SmallResNet`; anything else: ``torchvision.models.get_model(name, num_classes=…)``.

    Raises:
        ImportError: A torchvision name without torchvision installed.
        ValueError: An unknown torchvision model name.
    """
    if name == "resnet":
        return SmallResNet(num_classes, width=width, image_size=image_size)
    try:
        import torchvision
    except ImportError:
        raise ImportError(
            f"model {name!r} needs torchvision (pip install torchvision); the built-in model is 'resnet'"
        ) from None
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except ValueError as exc:
        raise ValueError(f"unknown torchvision model {name!r}: {exc}") from None


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
