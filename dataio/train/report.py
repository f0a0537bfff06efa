"""The run's report: what was trained how, per-epoch loss / accuracy, throughput and the step-time split."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from dataio.train.steptime import StepSplit

__all__ = ["EpochResult", "TrainReport", "format_epoch", "format_report"]


@dataclass(frozen=True)
class EpochResult:
    """One epoch (or the part of it a ``--steps`` run covered), over all ranks."""

    epoch: int
    steps: int
    images: int
    loss: float
    accuracy: float


@dataclass(frozen=True)
class TrainReport:
    """Everything rank 0 prints, as plain data (``to_json``)."""

    world_size: int
    nodes: int
    ranks_per_node: int
    device: str
    backend: str
    model: str
    parameters: int
    grad_bytes: int
    batch_size: int
    image_size: int
    data: str
    allreduce: str
    bucket_mb: float
    bucket_tuning: dict[str, Any] | None
    epochs: list[EpochResult]
    split: StepSplit
    loader: dict[str, Any] = field(default_factory=dict)
    synthetic: StepSplit | None = None

    @property
    def data_efficiency(self) -> float | None:
        """Real-data images/s ÷ synthetic-data images/s (when both ran)."""
        if self.synthetic is None or self.synthetic.images_per_s <= 0:
            return None
        return self.split.images_per_s / self.synthetic.images_per_s

    def to_json(self) -> str:
        """The report as JSON."""
        out = asdict(self)
        out["data_efficiency"] = self.data_efficiency
        return json.dumps(out, indent=1, default=str)


def format_epoch(e: EpochResult) -> str:
    """``epoch 0: loss 1.3862  accuracy 27.1%  (12 steps, 384 images)``."""
    return f"epoch {e.epoch}: loss {e.loss:.4f}  accuracy {100 * e.accuracy:.1f}%  ({e.steps} steps, {e.images} images)"


def _split_lines(s: StepSplit, label: str) -> list[str]:
    if s.steps == 0:
        return [f"{label}: no measured steps (raise --steps, or lower --warmup-steps / bucket tuning)"]
    hidden = f", {s.comm_hidden_pct:.0f}% of it hidden behind backward" if s.comm_busy_pct > 0 else ""
    return [
        f"{label}: {s.images_per_s:,.1f} images/s over {s.steps} steps per rank "
        f"({s.images} images in {s.seconds:.2f} s, {1e3 * s.step_s:.1f} ms per step)",
        f"  step time: data {s.data_pct:.1f}%  compute {s.compute_pct:.1f}%  comm {s.comm_pct:.1f}%  "
        f"-> {s.bottleneck}-bound",
        f"  comm: exposed {s.comm_pct:.1f}% of the step; the exchange itself took {s.comm_busy_pct:.1f}%{hidden}",
    ]


def format_report(r: TrainReport) -> str:
    """The final report, as printed by rank 0."""
    lines = [
        f"dataio train: {r.world_size} rank(s) ({r.nodes} nodes × {r.ranks_per_node}), {r.device} / {r.backend}; "
        f"model {r.model} ({r.parameters / 1e6:.2f} M parameters, {r.grad_bytes / 2**20:.1f} MB of gradients); "
        f"batch {r.batch_size} per rank at {r.image_size} px; data: {r.data}",
        f"allreduce: {r.allreduce}; buckets {r.bucket_mb:g} MB",
    ]
    if r.bucket_tuning:
        tried = ", ".join(f"{mb} MB {1e3 * s:.1f} ms" for mb, s in r.bucket_tuning["median_step_s"].items())
        lines.append(f"  bucket size auto-tuned: median step time (slowest rank) {tried} -> {r.bucket_mb:g} MB")
    lines += _split_lines(r.split, "throughput")
    verdict = r.loader.get("verdict")
    if verdict:
        lines.append(f"  loader: {verdict}")
    if r.synthetic is not None:
        lines += _split_lines(r.synthetic, "synthetic data (no IO)")
        eff = r.data_efficiency
        if eff is not None:
            lines.append(
                f"scaling efficiency vs --synthetic-data: {100 * eff:.1f}% "
                f"({r.split.images_per_s:,.1f} ÷ {r.synthetic.images_per_s:,.1f} images/s)"
            )
    return "\n".join(lines)
