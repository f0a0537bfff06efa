"""Which ranks share a node, and the process groups a hierarchical allreduce runs on.

A :class:`NodeLayout` is pure data (no torch): ``nodes[i]`` lists the global ranks on node ``i`` and a rank's
local rank is its position there. :func:`discover_layout` builds it for the running job: from
``ranks_per_node`` when given (contiguous blocks of ranks: emulated nodes on one machine), otherwise from the
node each rank reports (torchrun's ``GROUP_RANK``, else the host name), exchanged as integers through one
all-gather. :class:`NodeGroups` then creates, collectively on every rank, the intra-node groups and the
inter-node groups of same-local-rank peers (local rank 0's is the group of node leaders).
"""

from __future__ import annotations

import os
import socket
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["NodeGroups", "NodeLayout", "discover_layout", "node_key"]


@dataclass(frozen=True)
class NodeLayout:
    """Ranks grouped into equally sized nodes.

    Args:
        nodes: ``nodes[i]`` is the tuple of global ranks on node ``i`` (local rank = position in the tuple).
            Every rank ``0 … P-1`` appears exactly once and every node has the same number of ranks.

    Raises:
        ValueError: Empty, repeated or missing ranks, or nodes of different sizes.
    """

    nodes: tuple[tuple[int, ...], ...]

    def __post_init__(self) -> None:
        if not self.nodes or any(not node for node in self.nodes):
            raise ValueError("a node layout needs at least one node and every node at least one rank")
        ranks = sorted(r for node in self.nodes for r in node)
        if ranks != list(range(len(ranks))):
            raise ValueError(f"every rank 0..{len(ranks) - 1} must be on exactly one node, got {self.nodes}")
        sizes = {len(node) for node in self.nodes}
        if len(sizes) != 1:
            raise ValueError(f"nodes must have equal numbers of ranks for a hierarchical allreduce, got {self.nodes}")

    @classmethod
    def contiguous(cls, world_size: int, ranks_per_node: int) -> NodeLayout:
        """Ranks ``[0, K)`` on node 0, ``[K, 2K)`` on node 1, … (torchrun's numbering).

        Raises:
            ValueError: ``ranks_per_node`` < 1 or not a divisor of ``world_size``.
        """
        if ranks_per_node < 1 or world_size < 1 or world_size % ranks_per_node:
            raise ValueError(f"ranks_per_node={ranks_per_node} must be >= 1 and divide world_size={world_size}")
        k = ranks_per_node
        return cls(tuple(tuple(range(i, i + k)) for i in range(0, world_size, k)))

    @classmethod
    def from_keys(cls, keys: list[int]) -> NodeLayout:
        """Groups ranks by a per-rank node key (``keys[r]`` for rank ``r``), nodes in order of their first rank."""
        nodes: dict[int, list[int]] = {}
        for rank, key in enumerate(keys):
            nodes.setdefault(int(key), []).append(rank)
        return cls(tuple(tuple(node) for node in nodes.values()))

    @property
    def world_size(self) -> int:
        """All ranks."""
        return sum(len(node) for node in self.nodes)

    @property
    def num_nodes(self) -> int:
        """Nodes (N)."""
        return len(self.nodes)

    @property
    def ranks_per_node(self) -> int:
        """Ranks on each node (K)."""
        return len(self.nodes[0])

    def node_of(self, rank: int) -> int:
        """Node index of a global rank."""
        for i, node in enumerate(self.nodes):
            if rank in node:
                return i
        raise ValueError(f"rank {rank} is not in this layout of {self.world_size} ranks")

    def local_rank(self, rank: int) -> int:
        """Position of a global rank on its node."""
        return self.nodes[self.node_of(rank)].index(rank)

    def peers(self, local_rank: int) -> tuple[int, ...]:
        """Global ranks with this local rank, one per node (an inter-node group)."""
        return tuple(node[local_rank] for node in self.nodes)

    def describe(self, rank: int) -> str:
        """``"rank 3 (node 1, local rank 1)"``: how errors name a rank."""
        return f"rank {rank} (node {self.node_of(rank)}, local rank {self.local_rank(rank)})"


def node_key() -> int:
    """This process's node as an integer: torchrun's ``GROUP_RANK`` when set, else a hash of the host name."""
    group_rank = os.environ.get("GROUP_RANK", "").strip()
    if group_rank:
        try:
            return int(group_rank)
        except ValueError:
            raise ValueError(f"environment variable GROUP_RANK={group_rank!r} is not an integer") from None
    return zlib.crc32(socket.gethostname().encode()) + (1 << 32)  # never collides with a GROUP_RANK


def discover_layout(ranks_per_node: int | None = None, device: Any = "cpu") -> NodeLayout:
    """The job's node layout (collective: every rank must call it).

    Args:
        ranks_per_node: Emulate nodes of this many consecutive ranks (overrides the real topology).
        device: Device of the exchange tensor (``"cuda"`` for NCCL).

    Raises:
        ValueError: ``ranks_per_node`` does not divide the world size, or the real nodes differ in size.
    """
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    if ranks_per_node is not None:
        return NodeLayout.contiguous(world, int(ranks_per_node))
    mine = torch.tensor([node_key()], dtype=torch.int64, device=device)
    keys = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(keys, mine)
    layout = NodeLayout.from_keys([int(k.item()) for k in keys])
    local = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    if local.isdigit() and int(local) != layout.ranks_per_node:
        raise ValueError(f"LOCAL_WORLD_SIZE={local} but the ranks report {layout.ranks_per_node} ranks per node")
    return layout


class NodeGroups:
    """Process groups of one layout, created collectively (every rank calls the constructor, same order).

    Attributes:
        layout: The node layout.
        rank: This process's global rank.
        intra: Group of the ranks on this node (``None`` with one node or one rank per node: nothing to
            arrange hierarchically).
        inter: Group of this rank's same-local-rank peers on every node (``None`` likewise).
        leader: Global rank of this node's local rank 0.

    Args:
        layout: The job's node layout.
        subgroups: Create the groups (``False``: the layout only, e.g. for a flat allreduce).
    """

    def __init__(self, layout: NodeLayout, subgroups: bool = True) -> None:
        import torch.distributed as dist

        self.layout = layout
        self.rank = dist.get_rank()
        if layout.world_size != dist.get_world_size():
            raise ValueError(f"layout of {layout.world_size} ranks for a world of {dist.get_world_size()}")
        self.node = layout.node_of(self.rank)
        self.local_rank = layout.local_rank(self.rank)
        self.leader = layout.nodes[self.node][0]
        self.intra: Any = None
        self.inter: Any = None
        if subgroups and layout.ranks_per_node > 1 and layout.num_nodes > 1:
            self.intra, _ = dist.new_subgroups_by_enumeration([list(node) for node in layout.nodes])
            peers = [list(layout.peers(i)) for i in range(layout.ranks_per_node)]
            self.inter, _ = dist.new_subgroups_by_enumeration(peers)

    def describe(self) -> str:
        """How errors name this rank."""
        return self.layout.describe(self.rank)
