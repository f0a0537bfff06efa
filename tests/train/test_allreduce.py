"""Allreduce strategies and the DDP hook on real gloo process groups: 4 processes as 2 nodes × 2 ranks.

The module spawns the ranks once (process start-up dominates the cost) and runs every check in them; each test
then fails with the failing ranks' tracebacks if its check failed anywhere.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from dataio.train.comm import FlatAllreduce, HierarchicalAllreduce, build_allreduce
from dataio.train.errors import CommError
from dataio.train.topology import NodeGroups, NodeLayout, discover_layout
from tests.train.ranks import assert_passed, run_checks, run_ranks

WORLD = 4
K = 2  # ranks per emulated node
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
SIZES = (1, 3, 1001, 4096, 65537)  # all but 4096 are not divisible by K: uneven, zero-padded chunks


def everyone(x: torch.Tensor) -> torch.Tensor:
    """Every rank's tensor, stacked in rank order."""
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x)
    return torch.stack(out)


def _strategies(rank: int, world: int) -> None:
    groups = NodeGroups(NodeLayout.contiguous(world, K))
    gen = torch.Generator().manual_seed(1000 + rank)
    for n in SIZES:
        x = torch.randn(n, generator=gen) * 3
        allx = everyone(x).double()
        exact, mean_abs = allx.mean(0), allx.abs().mean(0)
        ulps = 8 * 2.0**-24 * mean_abs + 1e-30
        flat = FlatAllreduce(groups).average_(x.clone())
        assert ((flat.double() - exact).abs() <= ulps).all(), n
        for variant in ("scatter", "leader"):
            hier = HierarchicalAllreduce(groups, variant).average_(x.clone())
            # fp32: the flat result up to summation order, and the same bits on every rank
            assert ((hier.double() - flat.double()).abs() <= ulps).all(), (n, variant)
            assert (everyone(hier) == hier).all(), (n, variant)
        for wire, u in UNIT_ROUNDOFF.items():
            compressed = [FlatAllreduce(groups, wire)]
            compressed += [HierarchicalAllreduce(groups, v, wire) for v in ("scatter", "leader")]
            for strategy in compressed:
                got = strategy.average_(x.clone())
                err = (got.double() - exact).abs()
                # the documented bound: P roundings of partial sums no larger than sum|x_i| / P
                assert (err <= world * u * mean_abs).all(), (n, strategy, float((err / mean_abs).max()))
                assert (everyone(got) == got).all(), (n, strategy)
                if n >= 1001:
                    assert err.max() > 0, f"{strategy!r} did not travel in {wire}"


def _overflow_and_fallbacks(rank: int, world: int) -> None:
    groups = NodeGroups(NodeLayout.contiguous(world, K))
    big = torch.full((1001,), 60000.0)  # the fp16 sum of 4 of these overflows (max 65504) without pre-division
    for strategy in (FlatAllreduce(groups, torch.float16), HierarchicalAllreduce(groups, "leader", torch.float16)):
        out = strategy.average_(big.clone())
        assert torch.isfinite(out).all() and (out == 60000.0).all(), strategy
    # topology: torchrun's node rank, and ranks_per_node overriding it
    assert discover_layout().num_nodes == 1  # one host, no GROUP_RANK: a single node
    assert discover_layout(ranks_per_node=2).nodes == ((0, 1), (2, 3))
    assert isinstance(build_allreduce("hierarchical", ranks_per_node=4), FlatAllreduce)  # one node
    assert isinstance(build_allreduce("hierarchical", ranks_per_node=1), FlatAllreduce)  # one rank per node
    try:
        build_allreduce("hierarchical", ranks_per_node=3)
    except ValueError as exc:
        assert "divide" in str(exc)
    else:
        raise AssertionError("ranks_per_node=3 on 4 ranks was accepted")
    auto = build_allreduce("hierarchical", groups, variant="auto", probe_bytes=64 << 10)
    assert isinstance(auto, HierarchicalAllreduce)
    choice = torch.tensor([("scatter", "leader").index(auto.variant)])
    assert (everyone(choice) == choice).all(), "ranks chose different variants"
    # a failing stage names the strategy, the stage and the rank (gloo has no uint16 sum: every rank's
    # inter-node stage fails the same way, before any transfer)
    try:
        HierarchicalAllreduce(groups, "scatter", torch.uint16).average_(torch.ones(64))
    except CommError as exc:
        text = str(exc)
        assert "hierarchical/scatter" in text and "inter-node allreduce" in text, text
        assert f"rank {rank} (node {rank // K}, local rank {rank % K})" in text, text
    else:
        raise AssertionError("a uint16 wire dtype was accepted by gloo")


@pytest.fixture(scope="module")
def results() -> dict[str, str]:
    return run_checks([_strategies, _overflow_and_fallbacks], WORLD)


def test_hierarchical_equals_flat_and_compression_stays_within_its_bound(results: dict[str, str]) -> None:
    assert_passed(results, _strategies)


def test_overflow_topology_fallbacks_auto_variant_and_errors(results: dict[str, str]) -> None:
    assert_passed(results, _overflow_and_fallbacks)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 4, reason="NCCL hierarchical allreduce needs 4 GPUs")
def test_nccl_hierarchical_equals_flat() -> None:
    run_ranks(_nccl_strategies, WORLD, backend="nccl")


def _nccl_strategies(rank: int, world: int) -> None:
    device = torch.device("cuda", rank)
    groups = NodeGroups(NodeLayout.contiguous(world, K))
    gen = torch.Generator(device=device).manual_seed(rank)
    for n in SIZES:
        x = torch.randn(n, generator=gen, device=device)
        flat = FlatAllreduce(groups).average_(x.clone())
        for variant in ("scatter", "leader"):
            hier = HierarchicalAllreduce(groups, variant).average_(x.clone())
            torch.testing.assert_close(hier, flat, rtol=1e-5, atol=1e-6)
