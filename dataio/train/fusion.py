"""Tensor fusion granularity: the DDP bucket size, fixed or tuned during the first steps.

DDP fuses gradients into buckets of ``bucket_cap_mb`` and hands each bucket to the allreduce hook as soon as it is
full: small buckets start the exchange early (more overlap with backward) but pay the per-message latency many
times; large buckets pay it rarely but start late. The best size depends on the model, the network and the
strategy, so ``bucket_mb="auto"`` measures it: :class:`BucketTuner` gives each candidate one warm-up step (DDP
rebuilds its buckets in gradient-ready order after its first backward) and ``steps`` timed steps, then keeps the
candidate with the lowest median step time of the slowest rank; every rank takes the same decision. Candidates
at or above the model's gradient size all make a single bucket, so only the smallest of them is tried.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["BucketTuner"]

MB = 1 << 20


class BucketTuner:
    """Tries DDP bucket sizes during the first steps and keeps the fastest.

    Args:
        candidates: Bucket sizes in MB.
        steps: Timed steps per candidate (each after one warm-up step).
        grad_bytes: The model's gradient bytes (candidates that give one bucket are tried once).

    Raises:
        ValueError: No candidate, a size <= 0, or ``steps`` < 1.
    """

    def __init__(self, candidates: Sequence[float], steps: int, grad_bytes: int) -> None:
        if not candidates or any(not c > 0 for c in candidates):
            raise ValueError(f"bucket candidates must be sizes > 0 (MB), got {list(candidates)}")
        if steps < 1:
            raise ValueError(f"steps per candidate must be >= 1, got {steps}")
        kept: list[float] = []
        for size in sorted(set(float(c) for c in candidates)):
            kept.append(size)
            if size * MB >= grad_bytes:
                break  # every larger candidate is the same single bucket
        self.candidates = tuple(kept)
        self.steps = steps
        self.times: dict[float, list[float]] = {c: [] for c in self.candidates}
        self.medians: dict[float, float] = {}
        self.choice: float | None = None
        self._index = 0
        self._seen = 0

    @property
    def active(self) -> bool:
        """Still trying candidates."""
        return self.choice is None

    @property
    def current(self) -> float:
        """Bucket size (MB) to train with now."""
        return self.candidates[self._index] if self.choice is None else self.choice

    @property
    def total_steps(self) -> int:
        """Steps the tuning takes."""
        return len(self.candidates) * (1 + self.steps)

    def record(self, seconds: float, device: torch.device | str = "cpu") -> None:
        """Adds one step's wall time; after the last candidate, decides (collective: every rank calls it)."""
        if self.choice is not None:
            return
        if self._seen > 0:  # the first step of each candidate is its warm-up
            self.times[self.current].append(seconds)
        self._seen += 1
        if self._seen < 1 + self.steps:
            return
        self._seen = 0
        self._index += 1
        if self._index == len(self.candidates):
            self._decide(device)

    def _decide(self, device: torch.device | str) -> None:
        local = [statistics.median(self.times[c]) for c in self.candidates]
        worst = torch.tensor(local, dtype=torch.float64, device=device)
        if dist.is_initialized():
            dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        self.medians = dict(zip(self.candidates, (float(v) for v in worst.cpu()), strict=True))
        self.choice = min(self.candidates, key=lambda c: self.medians[c])

    def summary(self) -> dict[str, Any]:
        """The candidates' median step seconds (slowest rank) and the choice."""
        return {"choice_mb": self.choice, "median_step_s": {f"{c:g}": s for c, s in self.medians.items()}}
