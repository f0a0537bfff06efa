"""The report's figures (matplotlib, the ``bench`` extra): learning curves, gap to global against K, IO per mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataio.experiments.analysis import Runs, gap_to_global, io_summary

__all__ = ["plot_curves", "plot_gaps", "plot_io"]

COLORS = {"global": "#1f77b4", "local": "#d62728", "shard": "#2ca02c", "block": "#9467bd", "sequential": "#7f7f7f"}


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(runs: Runs, dataset: str, order: str, path: Path) -> None:
    """Held-out accuracy and whole-training-set loss per epoch, one line per mode (mean ± sd over seeds), for the
    smallest and the largest world size."""
    plt = _pyplot()
    ks = runs.axis(3)
    shown = sorted({ks[0], ks[-1]})
    fig, axes = plt.subplots(len(shown), 2, figsize=(10, 3.6 * len(shown)), squeeze=False)
    for row, k in enumerate(shown):
        for col, (metric, label) in enumerate((("heldout_accuracy", "held-out accuracy"),
                                               (runs.objective, "training objective (log)"))):  # fmt: skip
            ax = axes[row][col]
            for mode in runs.axis(2):
                mean, sd, n = runs.curve((dataset, order, mode, k), metric)
                if n == 0:
                    continue
                epochs = np.arange(1, mean.size + 1)
                ax.errorbar(epochs, mean, yerr=sd, label=f"{mode} ({n} seeds)", color=COLORS.get(mode), capsize=3,
                            marker="o", markersize=3)  # fmt: skip
            ax.set_title(f"{dataset}, {order} pack, K={k}: {label}")
            ax.set_xlabel("epoch")
            if metric == runs.objective:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(plt, fig, path)


def plot_gaps(runs: Runs, dataset: str, path: Path) -> None:
    """Final held-out accuracy and training-set loss minus global's at the same K (paired by seed; ± sd), per order."""
    plt = _pyplot()
    orders = runs.axis(1)
    ks = runs.axis(3)
    fig, axes = plt.subplots(2, len(orders), figsize=(5.2 * len(orders), 7), squeeze=False)
    for col, order in enumerate(orders):
        for row, (metric, scale, label) in enumerate((("heldout_accuracy", 100, "accuracy gap (pp)"),
                                                      (runs.objective, 1, "training objective gap"))):  # fmt: skip
            ax = axes[row][col]
            for mode in runs.axis(2):
                if mode == "global":
                    continue
                gaps = [gap_to_global(runs, dataset, order, mode, k, metric) for k in ks]
                xs = [k for k, g in zip(ks, gaps, strict=True) if g.n]
                if not xs:
                    continue
                ax.errorbar(xs, [g.mean * scale for g in gaps if g.n], yerr=[g.sd * scale for g in gaps if g.n],
                            label=mode, color=COLORS.get(mode), capsize=3, marker="o")  # fmt: skip
            ax.axhline(0, color=COLORS["global"], lw=1, ls="--")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
            if metric == runs.objective:
                ax.set_yscale("symlog", linthresh=0.01)
            ax.set_title(f"{dataset}, {order} pack: {label} vs global")
            ax.set_xlabel("world size K")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(plt, fig, path)


def plot_io(runs: Runs, dataset: str, order: str, k: int, path: Path) -> None:
    """Per mode at world size ``k`` (runs that read through the cache): storage fetches per sample, cache
    downloads per epoch (× dataset), cache hit rate, distinct shards per global batch."""
    plt = _pyplot()
    modes = runs.axis(2)
    summaries = {m: io_summary([r for r in runs.values((dataset, order, m, k)) if r.get("cache_limit")]) for m in modes}
    panels = (("fetches_per_sample", "storage fetches per sample"),
              ("downloaded_per_epoch", "cache downloads per epoch (× dataset)"),
              ("hit_rate", "cache hit rate (shard opens)"),
              ("shards_per_global_batch", "distinct shards per global batch"))  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (name, title) in zip(axes, panels, strict=True):
        values = [summaries[m][name] for m in modes]
        ax.bar(modes, values, color=[COLORS.get(m) for m in modes])
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"{dataset}, {order} pack, K={k}, cache = a fraction of the dataset", fontsize=10)
    _save(plt, fig, path)


def _save(plt, fig, path: Path) -> None:
    """Writes a finished figure (tight layout, 110 dpi) and frees it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
