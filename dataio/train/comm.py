"""Allreduce strategies for gradient buckets: flat, and hierarchical in two arrangements.

Every strategy averages a tensor over all ranks in place (:meth:`Allreduce.average_`) with blocking-style
collectives: on gloo the calling thread waits for each stage; on NCCL each call only orders the current CUDA
stream after the collective, so a chain of stages stays asynchronous for the host.

``flat``
    one allreduce over all ``P`` ranks (a ring: ``2(P-1)`` steps, every one paced by the slowest link).
``hierarchical``, ``variant="scatter"`` (Horovod's arrangement, strong on NCCL)
    intra-node reduce-scatter of ``n/K`` chunks → inter-node allreduce of each chunk among the ``N``
    same-local-rank peers (``K`` rings in parallel) → intra-node all-gather. Buckets are zero-padded to a
    multiple of ``K`` elements.
``hierarchical``, ``variant="leader"`` (for gloo, whose reduce-scatter is slow)
    intra-node reduce to the node leader → allreduce among the ``N`` leaders → intra-node broadcast.

Either way only ``2(N-1)`` inter-node steps remain instead of ``2(P-1)``. With one node, or one rank per node,
hierarchical is flat. ``variant="auto"`` times both on a probe tensor and keeps the faster (the same choice on
every rank: the times are max-reduced first).

Compression (``wire=torch.float16`` / ``torch.bfloat16``): the values are divided by the world size first (a sum
of ``P`` terms each at most ``1/P`` of the range cannot overflow), cast to the wire dtype for the transfer, summed,
and cast back. Flat compresses its one allreduce; hierarchical compresses the inter-node stage, the slow link it
exists for, and keeps the intra-node stages in the gradient's dtype: the fast link gains little from half the
bytes, and full-precision intra-node sums are both more accurate and, on gloo, much faster (gloo adds fp16 on the
CPU element by element).

Accuracy: fp32 results equal a flat allreduce's up to summation order (a few ulp). A compressed result is within
``P·u·mean_i|x_i|`` of the exact mean, elementwise, with ``u`` the wire dtype's unit roundoff (``2^-11`` for
fp16, ``2^-8`` for bf16): ``P`` roundings at most, each of a partial sum no larger than ``Σ|x_i|/P`` (the tests
check this bound).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from dataio.train.config import STRATEGIES, VARIANTS
from dataio.train.errors import CommError
from dataio.train.topology import NodeGroups, discover_layout

__all__ = [
    "COMPRESS",
    "STRATEGIES",
    "VARIANTS",
    "Allreduce",
    "FlatAllreduce",
    "HierarchicalAllreduce",
    "build_allreduce",
    "wire_dtype",
]

COMPRESS = {None: None, "none": None, "fp16": torch.float16, "bf16": torch.bfloat16}

# all_gather_into_tensor / reduce_scatter_tensor were renamed *_single in recent torch
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


def wire_dtype(compress: str | None) -> torch.dtype | None:
    """``None`` / ``"none"`` / ``"fp16"`` / ``"bf16"`` → the dtype gradients travel in (``None``: unchanged)."""
    if compress not in COMPRESS:
        raise ValueError(f"compress must be one of none, fp16, bf16, got {compress!r}")
    return COMPRESS[compress]


class Allreduce:
    """Base of the strategies: an in-place mean over all ranks, optionally through a narrower wire dtype.

    Attributes:
        name: ``"flat"`` or ``"hierarchical/scatter"`` / ``"hierarchical/leader"``.
        groups: The node groups (topology) it runs on.
        world_size: Ranks summed over.
        wire: dtype gradients travel in, or ``None``.
    """

    name = "allreduce"

    def __init__(self, groups: NodeGroups, wire: torch.dtype | None = None) -> None:
        self.groups = groups
        self.world_size = groups.layout.world_size
        self.wire = wire

    def average_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Replaces ``tensor`` (1-D, contiguous) by its mean over all ranks; returns it."""
        raise NotImplementedError

    def _compressed(self, stage: str, tensor: torch.Tensor, group: object) -> None:
        """Sums ``tensor`` (already divided by the world size) over ``group``, through the wire dtype."""
        if self.wire is None or tensor.dtype == self.wire:
            self._stage(stage, lambda: dist.all_reduce(tensor, group=group))
            return
        sent = tensor.to(self.wire)
        self._stage(stage, lambda: dist.all_reduce(sent, group=group))
        tensor.copy_(sent)

    def _stage(self, stage: str, call: Callable[[], object]) -> None:
        try:
            call()
        except Exception as exc:
            raise CommError(f"{self.name} allreduce, stage {stage!r}, {self.groups.describe()}: {exc}") from exc

    def __repr__(self) -> str:
        layout = self.groups.layout
        wire = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.wire, "none") if self.wire else "none"
        return f"{self.name} ({layout.num_nodes} nodes × {layout.ranks_per_node} ranks, compress {wire})"


class FlatAllreduce(Allreduce):
    """One allreduce over all ranks."""

    name = "flat"

    def average_(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor.div_(self.world_size)  # first: a compressed sum of P terms of at most 1/P each cannot overflow
        self._compressed("allreduce", tensor, None)
        return tensor


class HierarchicalAllreduce(Allreduce):
    """Intra-node, then inter-node, then intra-node (see the module docstring for the two variants).

    Args:
        groups: Node groups with more than one node and more than one rank per node.
        variant: ``"scatter"`` or ``"leader"``.
        wire: Transfer dtype or ``None``.
    """

    def __init__(self, groups: NodeGroups, variant: str, wire: torch.dtype | None = None) -> None:
        super().__init__(groups, wire)
        if variant not in ("scatter", "leader"):
            raise ValueError(f"variant must be 'scatter' or 'leader', got {variant!r}")
        if groups.intra is None or groups.inter is None:
            raise ValueError("hierarchical allreduce needs several nodes with several ranks each")
        self.variant = variant
        self.name = f"hierarchical/{variant}"

    def average_(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor.div_(self.world_size)
        if self.variant == "leader":
            return self._leader(tensor)
        return self._scatter(tensor)

    def _leader(self, tensor: torch.Tensor) -> torch.Tensor:
        g = self.groups
        self._stage("intra-node reduce", lambda: dist.reduce(tensor, dst=g.leader, group=g.intra))
        if g.local_rank == 0:
            self._compressed("inter-node allreduce", tensor, g.inter)
        self._stage("intra-node broadcast", lambda: dist.broadcast(tensor, src=g.leader, group=g.intra))
        return tensor

    def _scatter(self, tensor: torch.Tensor) -> torch.Tensor:
        g = self.groups
        k = g.layout.ranks_per_node
        n = tensor.numel()
        chunk = -(-n // k)
        full = tensor
        if chunk * k != n:  # uneven bucket: zero-pad to K equal chunks
            full = torch.zeros(chunk * k, dtype=tensor.dtype, device=tensor.device)
            full[:n].copy_(tensor)
        part = torch.empty(chunk, dtype=tensor.dtype, device=tensor.device)
        self._stage("intra-node reduce-scatter", lambda: _reduce_scatter(part, full, group=g.intra))
        self._compressed("inter-node allreduce", part, g.inter)
        self._stage("intra-node all-gather", lambda: _all_gather(full, part, group=g.intra))
        if full is not tensor:
            tensor.copy_(full[:n])
        return tensor


def _probe(strategy: Allreduce, probe: torch.Tensor, repeats: int) -> float:
    def sync() -> None:  # NCCL only enqueues: wait for the device around the timed calls
        if probe.is_cuda:
            torch.cuda.synchronize(probe.device)

    strategy.average_(probe)  # warm-up (connections, buffers)
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        strategy.average_(probe)
    sync()
    return (time.perf_counter() - start) / repeats


def choose_variant(groups: NodeGroups, probe_bytes: int, device: torch.device | str, repeats: int = 3) -> str:
    """Times both hierarchical variants on a ``probe_bytes`` float32 tensor; the faster one's name.

    Collective; every rank returns the same answer (each variant's time is the slowest rank's).
    """
    numel = max(groups.layout.ranks_per_node, probe_bytes // 4)
    probe = torch.ones(numel, dtype=torch.float32, device=device)
    seconds = []
    for variant in ("scatter", "leader"):
        seconds.append(_probe(HierarchicalAllreduce(groups, variant), probe, repeats))
    worst = torch.tensor(seconds, dtype=torch.float64, device=device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return ("scatter", "leader")[int(torch.argmin(worst).item())]


def build_allreduce(
    strategy: str = "hierarchical",
    groups: NodeGroups | None = None,
    *,
    ranks_per_node: int | None = None,
    compress: str | None = None,
    variant: str = "auto",
    device: torch.device | str = "cpu",
    probe_bytes: int = 4 << 20,
) -> Allreduce:
    """The strategy object for the current process group (collective when it creates groups or probes).

    Args:
        strategy: ``"flat"`` or ``"hierarchical"``.
        groups: Existing node groups to reuse (else discovered and created here).
        ranks_per_node: Emulate nodes of this many consecutive ranks (see :func:`discover_layout`).
        compress: ``None`` / ``"none"``, ``"fp16"`` or ``"bf16"``.
        variant: Hierarchical arrangement: ``"scatter"``, ``"leader"`` or ``"auto"`` (measured).
        device: Device of the gradients (probe and topology exchange tensors go there).
        probe_bytes: Size of the probe that ``variant="auto"`` times.

    Raises:
        ValueError: Unknown strategy, variant or compression, or a layout that does not fit the world.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    wire = wire_dtype(compress)
    if groups is None:
        layout = discover_layout(ranks_per_node, device=device)
        groups = NodeGroups(layout, subgroups=strategy == "hierarchical")
    if strategy == "flat" or groups.intra is None or groups.inter is None:
        return FlatAllreduce(groups, wire)  # one node (or one rank per node): hierarchical is flat
    if variant == "auto":
        variant = choose_variant(groups, probe_bytes, device)
    return HierarchicalAllreduce(groups, variant, wire)
