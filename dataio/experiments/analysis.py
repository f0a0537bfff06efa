"""Aggregates over seeds of the experiment's finished runs: curves, gaps to ``global``, the theory's regime, IO.

Pure functions of the results dict (``results.json``). Spread over seeds is the sample standard deviation; a gap
to ``global`` is paired by seed (same initial weights, same K) and called *measurable* when its mean is more than
two standard errors from 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Gap", "Runs", "gap_to_global", "io_summary", "mean_sd", "much_less", "theory_rows"]

Key = tuple[str, str, str, int]  # dataset, order, mode, world size

#: "S ≪ x" taken as "S at most a tenth of x"
MUCH_LESS = 10.0


def much_less(a: float, b: float) -> bool:
    """``a ≪ b``, read as ``a <= b / 10``."""
    return a * MUCH_LESS <= b


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; nan for none)."""
    if not values:
        return float("nan"), float("nan")
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


class Runs:
    """The finished runs, grouped by (dataset, order, mode, K) and by seed."""

    def __init__(self, runs: Iterable[dict[str, Any]]) -> None:
        self.by_key: dict[Key, dict[int, dict[str, Any]]] = defaultdict(dict)
        for run in runs:
            r = run["run"]
            self.by_key[(r["dataset"], r["order"], r["mode"], int(r["world_size"]))][int(r["seed"])] = run

    @property
    def objective(self) -> str:
        """The training-set objective the runs recorded: ``objective`` (mean loss + λ/2 ‖w‖²), or
        ``full_train_loss`` in results from before it was recorded."""
        runs = [r for group in self.by_key.values() for r in group.values()]
        return "objective" if runs and all("objective" in r["epochs"][-1] for r in runs) else "full_train_loss"

    def values(self, key: Key) -> list[dict[str, Any]]:
        return [self.by_key[key][s] for s in sorted(self.by_key.get(key, {}))]

    def axis(self, position: int) -> list[Any]:
        """Distinct values of one key position, in first-seen order (world sizes sorted)."""
        seen = list(dict.fromkeys(k[position] for k in self.by_key))
        return sorted(seen) if position == 3 else seen

    def curve(self, key: Key, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Per-epoch mean and standard deviation of ``metric`` over seeds, and the number of seeds."""
        runs = self.values(key)
        if not runs:
            return np.zeros(0), np.zeros(0), 0
        epochs = min(len(r["epochs"]) for r in runs)
        table = np.array([[r["epochs"][e][metric] for e in range(epochs)] for r in runs], dtype=np.float64)
        sd = table.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(epochs)
        return table.mean(axis=0), sd, len(runs)

    def final(self, key: Key, metric: str) -> dict[int, float]:
        """``metric`` at the last epoch of each seed's run."""
        return {seed: float(run["epochs"][-1][metric]) for seed, run in sorted(self.by_key.get(key, {}).items())}


@dataclass(frozen=True)
class Gap:
    """A mode's final ``metric`` minus global's at the same K and seed, over the seeds both have."""

    mean: float
    sd: float
    n: int

    @property
    def stderr(self) -> float:
        return self.sd / math.sqrt(self.n) if self.n > 1 else float("nan")

    @property
    def measurable(self) -> bool:
        """More than two standard errors from zero (needs 2 seeds or more)."""
        return self.n > 1 and abs(self.mean) > 2 * self.stderr

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        if self.n == 0:
            return "–"
        if self.n == 1:
            return f"{self.mean * scale:+.{digits}f} (1 seed)"
        mark = " *" if self.measurable else ""
        return f"{self.mean * scale:+.{digits}f} ± {self.sd * scale:.{digits}f}{mark}"


def gap_to_global(runs: Runs, dataset: str, order: str, mode: str, k: int, metric: str) -> Gap:
    """Paired-by-seed gap of ``mode`` to ``global`` (both at world size ``k``) in the final ``metric``."""
    mine = runs.final((dataset, order, mode, k), metric)
    ref = runs.final((dataset, order, "global", k), metric)
    diffs = [mine[s] - ref[s] for s in mine if s in ref]
    mean, sd = mean_sd(diffs)
    return Gap(mean, sd, len(diffs))


def theory_rows(n: int, epochs: int, world_sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Per K: n, n/K², and whether S ≪ n (global's condition) and S ≪ n/K² (local's) hold."""
    rows = []
    for k in world_sizes:
        bound = n / k**2
        rows.append({"k": k, "n": n, "n_over_k2": bound, "global_ok": much_less(epochs, n),
                     "local_ok": much_less(epochs, bound)})  # fmt: skip
    return rows


def io_summary(runs: Sequence[dict[str, Any]], skip_first: bool = True) -> dict[str, float]:
    """A mode's IO per epoch, averaged over runs and epochs (the first, cold-cache epoch left out when there are more).

    Returns:
        ``fetches_per_sample`` (storage operations after coalescing), ``read_amplification`` (bytes read ÷ bytes
        of the samples delivered, at the dataset's mean record size), ``downloaded_per_epoch`` (cache downloads ÷
        dataset bytes; nan without a cache), ``hit_rate`` (cache shard opens that found the shard), and the batch
        spread (``shards_per_rank_batch``, ``shards_per_global_batch``, ``labels_per_global_batch``).
    """
    rows: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        epochs = run["epochs"][1:] if skip_first and len(run["epochs"]) > 1 else run["epochs"]
        mean_record = run["dataset_bytes"] / run["num_train"]
        for e in epochs:
            io, n = e["io"], e["samples"]
            rows["fetches_per_sample"].append(io["fetches"] / n)
            rows["read_amplification"].append(io["bytes"] / (n * mean_record))
            if run.get("cache_limit") is not None:
                rows["downloaded_per_epoch"].append(io["bytes_downloaded"] / run["dataset_bytes"])
                opens = io["hits"] + io["misses"]
                rows["hit_rate"].append(io["hits"] / opens if opens else float("nan"))
            for name, value in e["spread"].items():
                rows[name].append(value)
    keys = ("fetches_per_sample", "read_amplification", "downloaded_per_epoch", "hit_rate", "shards_per_rank_batch",
            "shards_per_global_batch", "labels_per_global_batch")  # fmt: skip
    return {k: float(np.nanmean(rows[k])) if rows[k] else float("nan") for k in keys}
