"""``TrainConfig``: every option of a harness run, validated once (frozen; plain data, JSON-friendly)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["COMPRESSIONS", "DEFAULT_BUCKET_CANDIDATES", "STRATEGIES", "VARIANTS", "TrainConfig"]

#: allreduce strategies, hierarchical arrangements and wire compressions (see :mod:`dataio.train.comm`)
STRATEGIES = ("flat", "hierarchical")
VARIANTS = ("auto", "scatter", "leader")
COMPRESSIONS = (None, "none", "fp16", "bf16")

#: bucket sizes (MB) that ``bucket_mb="auto"`` tries
DEFAULT_BUCKET_CANDIDATES = (1.0, 4.0, 16.0, 64.0)
_SHUFFLE_MODES = ("global", "local", "shard", "block", "sequential")
_DEVICES = ("auto", "cpu", "cuda")


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Options of :func:`dataio.train.harness.train` (the CLI's flags, one to one).

    Attributes:
        dataset: dataio dataset path / URL; may be ``None`` with ``synthetic_data`` (then ``classes`` counts).
        steps: Optimizer steps in all (overrides ``epochs``); ``None``: ``epochs`` full epochs.
        epochs: Full epochs when ``steps`` is ``None`` (default 1).
        batch_size: Images per rank per step.
        image_size: Side of the (square) training crops.
        lr: SGD learning rate (momentum ``momentum``, weight decay ``weight_decay``).
        model: ``"resnet"`` (built in) or a torchvision model name.
        width: Channels of the built-in model's first stage.
        allreduce: ``"flat"`` or ``"hierarchical"``.
        variant: Hierarchical arrangement: ``"auto"``, ``"scatter"`` or ``"leader"``.
        compress: ``None``, ``"fp16"`` or ``"bf16"``.
        ranks_per_node: Emulate nodes of this many ranks (``None``: the real nodes).
        bucket_mb: DDP bucket size in MB, or ``"auto"`` (tried during the first steps).
        bucket_candidates: Sizes ``"auto"`` tries.
        tune_steps: Timed steps per candidate (after one warm-up step that lets DDP rebuild its buckets).
        shuffle_mode: Sampler mode (``global``, ``local``, ``shard``, ``block``, ``sequential``).
        workers: Loader threads.
        synthetic_data: Same model on a fixed batch generated on the device: the no-IO reference.
        compare_synthetic: After the real-data run, time the same number of steps on synthetic data and report
            the data efficiency (real ÷ synthetic images/s).
        classes: Classes of the synthetic data when there is no dataset.
        warmup_steps: Steps left out of the timing (after bucket tuning).
        seed: Seed of shuffling, augmentation, initialisation and synthetic data.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        json_path: Also write the report as JSON here (rank 0).
    """

    dataset: str | None = None
    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 32
    image_size: int = 224
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    model: str = "resnet"
    width: int = 32
    allreduce: str = "hierarchical"
    variant: str = "auto"
    compress: str | None = None
    ranks_per_node: int | None = None
    bucket_mb: float | str = 25.0
    bucket_candidates: tuple[float, ...] = DEFAULT_BUCKET_CANDIDATES
    tune_steps: int = 3
    shuffle_mode: str = "block"
    workers: int = 2
    synthetic_data: bool = False
    compare_synthetic: bool = False
    classes: int = 1000
    warmup_steps: int = 2
    seed: int = 0
    device: str = "auto"
    json_path: str | None = None

    def __post_init__(self) -> None:
        if self.dataset is None and not self.synthetic_data:
            raise ValueError("a dataset is needed unless --synthetic-data is given")
        if self.compare_synthetic and (self.synthetic_data or self.dataset is None):
            raise ValueError("--compare-synthetic compares a real-data run with synthetic data: give a dataset")
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give --steps or --epochs, not both")
        for name in ("steps", "epochs"):
            _positive(name, getattr(self, name), allow_none=True)
        for name in ("batch_size", "image_size", "width", "tune_steps", "workers", "classes"):
            _positive(name, getattr(self, name))
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}")
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.allreduce not in STRATEGIES:
            raise ValueError(f"allreduce must be one of {', '.join(STRATEGIES)}, got {self.allreduce!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.compress not in COMPRESSIONS:
            raise ValueError(f"compress must be none, fp16 or bf16, got {self.compress!r}")
        _positive("ranks_per_node", self.ranks_per_node, allow_none=True)
        if self.bucket_mb != "auto" and not (isinstance(self.bucket_mb, (int, float)) and self.bucket_mb > 0):
            raise ValueError(f"bucket_mb must be a number > 0 or 'auto', got {self.bucket_mb!r}")
        if not self.bucket_candidates or any(
            not isinstance(c, (int, float)) or not c > 0 for c in self.bucket_candidates
        ):
            raise ValueError(f"bucket_candidates must be numbers > 0, got {self.bucket_candidates!r}")
        if self.shuffle_mode not in _SHUFFLE_MODES:
            raise ValueError(f"shuffle_mode must be one of {', '.join(_SHUFFLE_MODES)}, got {self.shuffle_mode!r}")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {', '.join(_DEVICES)}, got {self.device!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for the JSON report)."""
        return asdict(self)
