"""α-β cost model of the allreduce strategies (what :mod:`dataio.train.comm` does, in seconds).

A link class (intra-node or inter-node) is ``Link(alpha, beta)``: ``alpha`` seconds per message step (latency
plus per-message software cost), ``beta`` seconds per byte. For ``n`` bytes on ``N`` nodes × ``K`` ranks
(``P = N·K``):

ring allreduce over ``p`` ranks of one link class
    ``T_ring(p, n) = 2(p-1)·α + 2(p-1)/p · n·β``
flat (a ring over all ranks, numbered node by node)
    every one of the ``2(P-1)`` steps waits for the slowest link it uses, an inter-node one:
    ``T_flat = 2(P-1)·α_e + 2(P-1)/P · n·β_e``  (one node: ``T_ring(K, n)`` on the intra link)
hierarchical, leader variant (reduce → allreduce among leaders → broadcast)
    ``T_hier = T_reduce(K, n) + T_ring,e(N, n) + T_bcast(K, n)``, where the intra-node reduce and broadcast
    are binomial trees: ``T_reduce = T_bcast = ⌈log2 K⌉ · (α_i + n·β_i)``;
    so ``T_hier = 2⌈log2 K⌉·(α_i + n·β_i) + 2(N-1)·α_e + 2(N-1)/N · n·β_e``
hierarchical, scatter variant (reduce-scatter → K parallel inter-node rings of n/K → all-gather)
    ``T_hier = 2(K-1)·α_i + 2(K-1)/K · n·β_i + 2(N-1)·α_e + 2(N-1)/N · n·β_e`` (the K rings share the node's
    link, so their bytes add up to the leader variant's).

The inter-node latency term drops from ``2(P-1)`` to ``2(N-1)`` steps; the inter-node bytes per node from
``2(P-1)/P·n`` to ``2(N-1)/N·n``. :func:`fit_link` estimates ``α, β`` from measured times of a known step
count; :func:`crossovers` finds where one strategy overtakes another.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Cluster",
    "Link",
    "crossovers",
    "fit_link",
    "flat_time",
    "hierarchical_time",
    "ring_time",
    "tree_steps",
]


@dataclass(frozen=True)
class Link:
    """One link class: ``alpha`` seconds per step, ``beta`` seconds per byte (both >= 0)."""

    alpha: float
    beta: float

    def __post_init__(self) -> None:
        if not (self.alpha >= 0 and self.beta >= 0 and math.isfinite(self.alpha) and math.isfinite(self.beta)):
            raise ValueError(f"alpha and beta must be finite and >= 0, got {self.alpha}, {self.beta}")

    @property
    def bandwidth(self) -> float:
        """Bytes per second (``1/β``; infinite for β = 0)."""
        return math.inf if self.beta == 0 else 1.0 / self.beta


@dataclass(frozen=True)
class Cluster:
    """``nodes`` × ``ranks_per_node`` ranks joined by an intra-node and an inter-node link class."""

    nodes: int
    ranks_per_node: int
    intra: Link
    inter: Link

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.ranks_per_node < 1:
            raise ValueError(f"nodes and ranks_per_node must be >= 1, got {self.nodes}, {self.ranks_per_node}")

    @property
    def world_size(self) -> int:
        """``P = N·K``."""
        return self.nodes * self.ranks_per_node


def tree_steps(k: int) -> int:
    """Steps of a binomial-tree reduce or broadcast over ``k`` ranks: ``⌈log2 k⌉``."""
    return math.ceil(math.log2(k)) if k > 1 else 0


def ring_time(p: int, nbytes: float, link: Link) -> float:
    """``2(p-1)·α + 2(p-1)/p · n·β``: a ring allreduce over ``p`` ranks of one link class."""
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * link.alpha + 2 * (p - 1) / p * nbytes * link.beta


def flat_time(cluster: Cluster, nbytes: float, wire: float = 1.0) -> float:
    """One ring over all ranks; with several nodes every step is paced by the inter-node link.

    ``wire``: bytes sent per gradient byte (0.5 for fp16 / bf16 compression; casts are not modelled).
    """
    if cluster.nodes == 1:
        return ring_time(cluster.ranks_per_node, nbytes * wire, cluster.intra)
    return ring_time(cluster.world_size, nbytes * wire, cluster.inter)


def hierarchical_time(cluster: Cluster, nbytes: float, variant: str = "leader", wire: float = 1.0) -> float:
    """Intra-node, inter-node, intra-node (see the module docstring); flat on one node or one rank per node.

    ``wire``: bytes sent per gradient byte on the inter-node stage (the only compressed one).
    """
    n, k, i = cluster.nodes, cluster.ranks_per_node, cluster.intra
    if n == 1 or k == 1:
        return flat_time(cluster, nbytes, wire)
    inter = ring_time(n, nbytes * wire, cluster.inter)
    if variant == "leader":
        return 2 * tree_steps(k) * (i.alpha + nbytes * i.beta) + inter
    if variant == "scatter":
        return 2 * (k - 1) * i.alpha + 2 * (k - 1) / k * nbytes * i.beta + inter
    raise ValueError(f"variant must be 'leader' or 'scatter', got {variant!r}")


def fit_link(nbytes: Sequence[float], seconds: Sequence[float], steps: float, byte_factor: float) -> Link:
    """Least-squares ``α, β`` from times modelled as ``steps·α + byte_factor·n·β``.

    Errors are weighted relative to each time, so the small messages fix ``α`` and the large ones ``β``
    (an unweighted fit would let the largest message decide both).

    Raises:
        ValueError: Fewer than two sizes, or mismatched lengths.
    """
    x = np.asarray(nbytes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    if x.shape != t.shape or x.size < 2 or np.any(t <= 0):
        raise ValueError("fit_link needs >= 2 sizes with positive times")
    design = np.stack([np.full_like(x, steps), byte_factor * x], axis=1) / t[:, None]
    (alpha, beta), *_ = np.linalg.lstsq(design, np.ones_like(t), rcond=None)
    return Link(max(float(alpha), 0.0), max(float(beta), 0.0))


def crossovers(a: Callable[[float], float], b: Callable[[float], float], lo: float, hi: float) -> list[float]:
    """Sizes in ``[lo, hi]`` where the faster of ``a`` and ``b`` changes (scanned on a 512-point log grid);
    each is the first grid size on the new winner's side. Empty: one of them is faster (or equal) throughout."""
    grid = np.geomspace(lo, hi, 512)
    a_wins = np.array([a(float(n)) <= b(float(n)) for n in grid])
    return [float(grid[i]) for i in np.nonzero(a_wins[1:] != a_wins[:-1])[0] + 1]
