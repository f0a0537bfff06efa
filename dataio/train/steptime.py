"""Where a training step's time goes: waiting for data, computing, and communication left exposed.

Per step (one rank)::

    start ── next(batches) ── data ready ── forward · backward ──(last bucket handed to the hook)── backward
    returns ── optimizer ── end

- **data**: host time blocked in ``next()`` on the loader (0 with synthetic data).
- **comm** (exposed): from the moment the last gradient bucket was handed to the allreduce hook (all of
  backward's compute is done by then) until ``backward()`` returns, i.e. the time spent only waiting for the
  gradient exchange (plus DDP copying the averaged buckets back into ``.grad``). Buckets exchanged while
  backward was still computing cost nothing here.
- **compute**: the rest (forward, backward, optimizer, framework overhead).

``comm_busy`` is the hook's own time summed over buckets; ``1 - comm / comm_busy`` is the share of the exchange
hidden behind backward. On CUDA the comm interval is measured with events (GPU time) and each step ends with a
device synchronisation, so host and device agree on where a step ends.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist

from dataio.train.hook import AllreduceHook

__all__ = ["StepSplit", "StepTimer"]


class StepTimer:
    """One rank's accumulated step times (see the module docstring); steps are added only while ``measuring``."""

    def __init__(self, hook: AllreduceHook) -> None:
        self.hook = hook
        self.clock = hook.clock
        self.measuring = False
        self.steps = self.images = 0
        self.step_s = self.data_s = self.comm_s = self.busy_s = 0.0
        self.first_start: float | None = None
        self.last_end: float | None = None
        self._start = self._data = 0.0
        self._after_backward: Any = None

    def start(self) -> None:
        """Call before fetching the step's batch."""
        self.hook.reset()
        self._start = time.perf_counter()

    def data_ready(self) -> None:
        """Call once the batch is in hand."""
        self._data = time.perf_counter()

    def backward_done(self) -> None:
        """Call right after ``loss.backward()`` returns."""
        self._after_backward = self.clock.now()

    def end(self, images: int) -> float:
        """Call after the optimizer step; returns the step's wall seconds."""
        self.clock.sync()
        end = time.perf_counter()
        seconds = end - self._start
        if self.measuring:
            stats = self.hook.stats()
            self.steps += 1
            self.images += images
            self.step_s += seconds
            self.data_s += self._data - self._start
            self.comm_s += min(self.clock.seconds(stats.last_ready, self._after_backward), seconds)
            self.busy_s += stats.seconds
            self.first_start = self._start if self.first_start is None else self.first_start
            self.last_end = end
        return seconds


@dataclass(frozen=True)
class StepSplit:
    """The job's step-time split (every rank's measured steps; shares are of the mean step).

    Attributes:
        steps: Measured steps per rank.
        images: Images over all ranks in the measured steps.
        seconds: Wall time of the measured steps (slowest rank).
        images_per_s: ``images / seconds``.
        step_s: Mean step time.
        data_pct / compute_pct / comm_pct: Shares of the step (they add up to 100).
        comm_busy_pct: The exchange's own time, overlapped or not, as a share of the step.
        comm_hidden_pct: Share of the exchange hidden behind backward.
        bottleneck: ``"data"``, ``"compute"`` or ``"comm"`` (the largest share).
    """

    steps: int
    images: int
    seconds: float
    images_per_s: float
    step_s: float
    data_pct: float
    compute_pct: float
    comm_pct: float
    comm_busy_pct: float
    comm_hidden_pct: float
    bottleneck: str

    @classmethod
    def gather(cls, timer: StepTimer, device: torch.device | str) -> StepSplit:
        """Combines every rank's timer (collective)."""
        sums = torch.tensor(
            [timer.steps, timer.images, timer.step_s, timer.data_s, timer.comm_s, timer.busy_s],
            dtype=torch.float64,
            device=device,
        )
        dist.all_reduce(sums)
        wall = (timer.last_end or 0.0) - (timer.first_start or 0.0)
        wall_t = torch.tensor([wall], dtype=torch.float64, device=device)
        dist.all_reduce(wall_t, op=dist.ReduceOp.MAX)
        steps, images, step_s, data_s, comm_s, busy_s = (float(v) for v in sums.cpu())
        seconds = float(wall_t.item())
        if steps == 0:
            return cls(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "none")
        pct = 100.0 / step_s
        data, comm = data_s * pct, comm_s * pct
        compute = max(0.0, 100.0 - data - comm)
        shares = {"data": data, "compute": compute, "comm": comm}
        return cls(
            steps=int(steps / dist.get_world_size()),
            images=int(images),
            seconds=seconds,
            images_per_s=images / seconds if seconds > 0 else 0.0,
            step_s=step_s / steps,
            data_pct=data,
            compute_pct=compute,
            comm_pct=comm,
            comm_busy_pct=busy_s * pct,
            comm_hidden_pct=min(100.0, max(0.0, 100.0 * (1 - comm_s / busy_s))) if busy_s > 0 else 0.0,
            bottleneck=max(shares, key=lambda k: shares[k]),
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)
