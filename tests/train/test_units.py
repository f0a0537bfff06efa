"""Pure parts of the harness: node layouts, the α-β model, config validation, the bucket tuner, the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dataio.train.config import TrainConfig
from dataio.train.cost import Cluster, Link, crossovers, fit_link, flat_time, hierarchical_time, ring_time
from dataio.train.fusion import MB, BucketTuner
from dataio.train.model import build_model, count_parameters
from dataio.train.topology import NodeLayout


def test_contiguous_layout() -> None:
    layout = NodeLayout.contiguous(8, 4)
    assert layout.nodes == ((0, 1, 2, 3), (4, 5, 6, 7))
    assert (layout.num_nodes, layout.ranks_per_node, layout.world_size) == (2, 4, 8)
    assert layout.node_of(6) == 1 and layout.local_rank(6) == 2
    assert layout.peers(0) == (0, 4) and layout.peers(3) == (3, 7)
    assert layout.describe(5) == "rank 5 (node 1, local rank 1)"


def test_layout_from_node_keys_groups_ranks_by_key() -> None:
    layout = NodeLayout.from_keys([7, 3, 7, 3])
    assert layout.nodes == ((0, 2), (1, 3))
    assert layout.peers(1) == (2, 3)


@pytest.mark.parametrize(("world", "k"), [(4, 3), (4, 0), (6, 4)])
def test_contiguous_layout_rejects_non_divisors(world: int, k: int) -> None:
    with pytest.raises(ValueError, match="divide"):
        NodeLayout.contiguous(world, k)


@pytest.mark.parametrize("nodes", [((0, 1), (2,)), ((0, 1), (1, 2)), ((0, 2), (3, 4)), ()])
def test_layout_rejects_uneven_missing_or_repeated_ranks(nodes: tuple[tuple[int, ...], ...]) -> None:
    with pytest.raises(ValueError):
        NodeLayout(nodes)


def test_ring_formula() -> None:
    link = Link(alpha=1e-3, beta=1e-9)
    assert ring_time(1, 1e6, link) == 0
    assert ring_time(4, 1e6, link) == pytest.approx(6e-3 + 1.5e-3)


def test_flat_and_hierarchical_formulas() -> None:
    intra, inter = Link(1e-5, 1e-10), Link(1e-3, 1e-8)
    c = Cluster(16, 8, intra, inter)
    n = 1e6
    assert flat_time(c, n) == pytest.approx(2 * 127 * 1e-3 + 2 * 127 / 128 * n * 1e-8)
    leader = 2 * 3 * (1e-5 + n * 1e-10) + 2 * 15 * 1e-3 + 2 * 15 / 16 * n * 1e-8
    assert hierarchical_time(c, n, "leader") == pytest.approx(leader)
    scatter = 2 * 7 * 1e-5 + 2 * 7 / 8 * n * 1e-10 + 2 * 15 * 1e-3 + 2 * 15 / 16 * n * 1e-8
    assert hierarchical_time(c, n, "scatter") == pytest.approx(scatter)
    assert flat_time(c, n, wire=0.5) < flat_time(c, n)
    one_node = Cluster(1, 8, intra, inter)
    assert hierarchical_time(one_node, n) == flat_time(one_node, n) == ring_time(8, n, intra)
    with pytest.raises(ValueError):
        hierarchical_time(c, n, "tree")


def test_fit_link_recovers_alpha_and_beta() -> None:
    rng = np.random.default_rng(0)
    sizes = [4 << 10 << (2 * i) for i in range(9)]
    times = [(2 * 2.5e-3 + n * 8e-9) * (1 + 0.02 * rng.standard_normal()) for n in sizes]
    link = fit_link(sizes, times, steps=2, byte_factor=1.0)
    assert link.alpha == pytest.approx(2.5e-3, rel=0.05)
    assert link.beta == pytest.approx(8e-9, rel=0.05)
    with pytest.raises(ValueError):
        fit_link([1], [1.0], 2, 1)


def test_crossovers_find_where_the_winner_changes() -> None:
    fast_latency = lambda n: 1e-3 + n * 2e-9  # noqa: E731
    fast_bandwidth = lambda n: 5e-3 + n * 1e-9  # noqa: E731
    (x,) = crossovers(fast_latency, fast_bandwidth, 1e3, 1e9)
    assert x == pytest.approx(4e6, rel=0.05)
    assert crossovers(fast_latency, fast_latency, 1e3, 1e9) == []


def test_link_validation() -> None:
    with pytest.raises(ValueError):
        Link(-1.0, 0.0)
    with pytest.raises(ValueError):
        Link(0.0, math.nan)
    with pytest.raises(ValueError):
        Cluster(0, 8, Link(0, 0), Link(0, 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "dataset is needed"),
        ({"dataset": "d", "steps": 3, "epochs": 1}, "not both"),
        ({"dataset": "d", "batch_size": 0}, "batch_size"),
        ({"dataset": "d", "allreduce": "ring"}, "allreduce"),
        ({"dataset": "d", "variant": "tree"}, "variant"),
        ({"dataset": "d", "compress": "int8"}, "compress"),
        ({"dataset": "d", "bucket_mb": 0}, "bucket_mb"),
        ({"dataset": "d", "bucket_mb": "fast"}, "bucket_mb"),
        ({"dataset": "d", "bucket_candidates": ()}, "bucket_candidates"),
        ({"dataset": "d", "lr": -1.0}, "lr"),
        ({"dataset": "d", "shuffle_mode": "random"}, "shuffle_mode"),
        ({"synthetic_data": True, "compare_synthetic": True}, "compare"),
        ({"dataset": "d", "ranks_per_node": 0}, "ranks_per_node"),
    ],
)
def test_config_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_config_accepts_synthetic_without_dataset() -> None:
    config = TrainConfig(synthetic_data=True, steps=5, bucket_mb="auto")
    assert config.as_dict()["bucket_mb"] == "auto"


def test_bucket_tuner_tries_each_candidate_and_keeps_the_fastest() -> None:
    tuner = BucketTuner([16, 1, 4, 64, 256], steps=2, grad_bytes=10 * MB)
    assert tuner.candidates == (1.0, 4.0, 16.0)  # 64 and 256 MB are the same single bucket as 16 MB
    assert tuner.total_steps == 9
    seen = []
    step_time = {1.0: 0.5, 4.0: 0.2, 16.0: 0.3}
    while tuner.active:
        seen.append(tuner.current)
        tuner.record(step_time[tuner.current] + (1.0 if len(seen) % 3 == 1 else 0.0))  # slow warm-ups ignored
    assert seen == [1.0] * 3 + [4.0] * 3 + [16.0] * 3
    assert tuner.choice == tuner.current == 4.0
    assert tuner.summary()["median_step_s"] == {"1": 0.5, "4": 0.2, "16": 0.3}
    with pytest.raises(ValueError):
        BucketTuner([], 2, MB)
    with pytest.raises(ValueError):
        BucketTuner([1.0], 0, MB)


def test_small_resnet_shapes() -> None:
    model = build_model("resnet", num_classes=5, image_size=32, width=8)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5)
    assert count_parameters(model) > 0
    big = build_model("resnet", num_classes=1000, image_size=224)
    assert 1e6 < count_parameters(big) < 2e6


def test_torchvision_model_needs_torchvision() -> None:
    try:
        import torchvision  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="torchvision"):
            build_model("resnet18", 10)
    else:
        assert build_model("resnet18", 10)(torch.randn(1, 3, 64, 64)).shape == (1, 10)
