"""The experiment's models: initial weights from the seed alone, both kinds classify 3×S×S inputs."""

from __future__ import annotations

import pytest
import torch

from dataio.experiments.model import build_model


@pytest.mark.parametrize("name", ["cnn", "linear"])
def test_weights_depend_on_the_seed_only(name: str) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = (build_model(name, 10, 16, seed) for seed in (0, 0, 1))
    assert torch.rand(1) == before  # the global RNG is left as it was
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a(torch.zeros(2, 3, 16, 16)).shape == (2, 10)


def test_invalid_models_are_named() -> None:
    with pytest.raises(ValueError, match="unknown model"):
        build_model("mlp", 10, 16, 0)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_model("cnn", 10, 18, 0)
