"""``write_report(results, path)``: the experiment's markdown report and its PNGs (beside it, ``<stem>_*.png``).

Sections: setup; accuracy and loss curves per mode (mean ± sd over seeds); the final gap to ``global`` per mode
and K; the theory's regime (S against n and n/K²) next to the measured ``local`` gap; IO per mode; throughput.
The interpretation and the recommendations are written by a person from these numbers and live in the committed
report (``benchmarks/results/shuffle_experiment.md``) below a marker line that a rerun keeps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dataio.experiments.analysis import Runs, gap_to_global, io_summary, mean_sd, theory_rows

__all__ = ["KEEP_MARKER", "render_report", "write_report"]

_MODEL_TEXT = {"cnn": "a 2-conv CNN without BatchNorm", "linear": "softmax regression on the pixels"}

#: everything below this line in an existing report is kept when the report is rewritten
KEEP_MARKER = "<!-- written by hand below: kept when the report is regenerated -->"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _num(value: float, spec: str) -> str:
    """``value`` formatted, or "–" when it was not measured (nan)."""
    return "–" if value != value else format(value, spec)


def _steady(run: dict[str, Any], metric: str) -> float:
    epochs = run["epochs"][1:] if len(run["epochs"]) > 1 else run["epochs"]
    return float(np.mean([e[metric] for e in epochs]))


def _setup(results: dict[str, Any], runs: Runs) -> list[str]:
    c = results["config"]
    lines = ["## Setup", ""]
    for name, d in results["data"].items():
        shards = ", ".join(str(s) for s in sorted({r["num_shards"] for r in results["runs"]
                                                    if r["run"]["dataset"] == name}))  # fmt: skip
        lines.append(
            f"- **{name}**: {d['num_train']} training / {d['num_heldout']} held-out images, {d['num_classes']} "
            f"classes, stored as {c['stored_size']} px RGB JPEGs in an ImageFolder, packed with "
            f"`dataio pack --shard-size {c['shard_size']}` ({shards} shards): `sorted` = ImageFolder order "
            "(class after class), `shuffled` = `--order shuffled`."
        )
    lines += [
        f"- **Grid**: modes {', '.join(runs.axis(2))}; K ∈ {{{', '.join(map(str, runs.axis(3)))}}} gloo ranks "
        f"(real DDP, one process per rank, 2 CPU cores in all); seeds {', '.join(map(str, c['seeds']))}; "
        f"S = {c['epochs']} epochs; {len(results['runs'])} of {results['grid_runs']} runs finished.",
        f"- **Training**: {_MODEL_TEXT[c.get('model', 'cnn')]} at {c['image_size']} px, SGD lr {c['lr']} momentum "
        f"{c['momentum']} weight decay {c.get('weight_decay', 0.0)}, global batch {c['global_batch']} split evenly "
        "over the K ranks (same steps and learning "
        "rate at every K: the elastic modes feed identical global batches at every K).",
        f"- **Modes' parameters**: block: blocks of {c['block_size']} samples, windows of {c['window']} blocks; "
        f"shard: a {c['buffer_size']}-slot shuffle buffer per rank; local: a fixed partition of shards per rank.",
        f"- **IO**: every rank reads with `dataio.DataLoader` (fast path, `ImagePipeline`, {c['read_threads']} reads "
        f"in flight, ranges ≤ {c['coalesce_gap']} B apart coalesced); "
        + (
            f"runs of seed(s) {', '.join(map(str, c['cache_seeds']))} on the `{c['orders'][0]}` pack read through the "
            "node-local shard cache (`open_dataset(cache_dir=, cache_limit=)`) limited to "
            f"{c['cache_fraction']:.0%} of the dataset, shared by the K ranks."
            if c["cache_seeds"]
            else "no run reads through the shard cache."
        ),
        "- **Error bars**: ± sample standard deviation over seeds. A gap to global is paired by seed (same initial "
        "weights) and marked * when it is more than two standard errors from 0.",
        "",
    ]
    return lines


def _gap_tables(runs: Runs, dataset: str) -> list[str]:
    lines = []
    ks = runs.axis(3)
    for order in runs.axis(1):
        header = ["mode", *[f"K={k}" for k in ks]]
        acc_rows, loss_rows = [], []
        for mode in runs.axis(2):
            if mode == "global":
                acc = [f"{mean_sd(list(runs.final((dataset, order, mode, k), 'heldout_accuracy').values()))[0]:.1%}"
                       for k in ks]  # fmt: skip
                loss = [f"{mean_sd(list(runs.final((dataset, order, mode, k), runs.objective).values()))[0]:.4f}"
                        for k in ks]  # fmt: skip
                acc_rows.append(["global (absolute)", *acc])
                loss_rows.append(["global (absolute)", *loss])
                continue
            acc_rows.append([mode, *[gap_to_global(runs, dataset, order, mode, k, "heldout_accuracy").text(100)
                                     for k in ks]])  # fmt: skip
            loss_rows.append([mode, *[gap_to_global(runs, dataset, order, mode, k, runs.objective).text(1, 4)
                                      for k in ks]])  # fmt: skip
        lines += [f"**{dataset}, {order} pack: final held-out accuracy, gap to global in percentage points**", ""]
        lines += _table(header, acc_rows)
        lines += [f"**{dataset}, {order} pack: final training objective (whole training set), gap to global**", ""]
        lines += _table(header, loss_rows)
    return lines


def _theory(results: dict[str, Any], runs: Runs, dataset: str) -> list[str]:
    n = results["data"][dataset]["num_train"]
    s = results["config"]["epochs"]
    order = runs.axis(1)[0]
    header = ["K", "n", "n/K²", f"S={s} ≪ n? (global)", f"S={s} ≪ n/K²? (local)", "local: accuracy gap (pp)",
              "local: objective gap", "shard: accuracy gap (pp)"]  # fmt: skip
    rows = []
    for row in theory_rows(n, s, runs.axis(3)):
        k = row["k"]
        rows.append([
            k, n, f"{row['n_over_k2']:.0f}", "yes" if row["global_ok"] else "no",
            "yes: gap predicted negligible" if row["local_ok"] else "**no: gap may show**",
            gap_to_global(runs, dataset, order, "local", k, "heldout_accuracy").text(100),
            gap_to_global(runs, dataset, order, "local", k, runs.objective).text(1, 4),
            gap_to_global(runs, dataset, order, "shard", k, "heldout_accuracy").text(100),
        ])  # fmt: skip
    return [f"**{dataset}, {order} pack** (≪ read as: at most a tenth)", "", *_table(header, rows)]


def _io(runs: Runs, dataset: str) -> list[str]:
    order = runs.axis(1)[0]
    header = ["mode", "K", "fetches / sample", "bytes read / bytes delivered", "cache downloads / epoch (× dataset)",
              "cache hit rate", "shards / rank batch", "shards / global batch", "classes / global batch",
              "samples/s (no cache)", "samples/s (cache)"]  # fmt: skip
    rows = []
    for k in runs.axis(3):
        for mode in runs.axis(2):
            all_runs = runs.values((dataset, order, mode, k))
            cached = [r for r in all_runs if r.get("cache_limit")]
            plain = [r for r in all_runs if not r.get("cache_limit")]
            if not all_runs:
                continue
            io = io_summary(cached or all_runs)
            speed = [f"{np.mean([_steady(r, 'samples_per_s') for r in group]):.0f}" if group else "–"
                     for group in (plain, cached)]  # fmt: skip
            rows.append([
                mode, k, _num(io["fetches_per_sample"], ".2f"), _num(io["read_amplification"], ".2f"),
                _num(io["downloaded_per_epoch"], ".2f"), _num(io["hit_rate"], ".0%"),
                _num(io["shards_per_rank_batch"], ".1f"), _num(io["shards_per_global_batch"], ".1f"),
                _num(io["labels_per_global_batch"], ".1f"), *speed,
            ])  # fmt: skip
    return _table(header, rows)


def render_report(results: dict[str, Any], figures: dict[str, str]) -> str:
    """The generated part of the report (markdown)."""
    runs = Runs(results["runs"])
    lines = ["# Global vs local shuffle: what each sampling mode costs in accuracy and in IO", ""]
    lines += ["Generated by `dataio experiment shuffle` (`dataio/experiments/`) from `results.json`.", ""]
    lines += _setup(results, runs)
    for dataset in runs.axis(0):
        lines += [f"## {dataset}: learning curves", ""]
        lines += [f"![{name}]({file})" for name, file in figures.items() if name.startswith(f"{dataset}-curves")]
        lines += ["", f"## {dataset}: gap to global at the end of training", ""]
        lines += [f"![gap]({figures[f'{dataset}-gaps']})", ""] if f"{dataset}-gaps" in figures else []
        lines += _gap_tables(runs, dataset)
        lines += [f"## {dataset}: the theory's regime next to the measured gap", ""]
        lines += _theory(results, runs, dataset)
        lines += [f"## {dataset}: IO per mode", ""]
        lines += [f"![io]({figures[f'{dataset}-io']})", ""] if f"{dataset}-io" in figures else []
        lines += _io(runs, dataset)
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Writes the PNGs and the report; keeps a hand-written part below :data:`KEEP_MARKER` of an existing report."""
    from dataio.experiments.plots import plot_curves, plot_gaps, plot_io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = Runs(results["runs"])
    figures: dict[str, str] = {}
    if results["runs"]:
        first_order, ks = runs.axis(1)[0], runs.axis(3)
        for dataset in runs.axis(0):
            for order in runs.axis(1):
                name = f"{dataset}-curves-{order}"
                plot_curves(runs, dataset, order, path.with_name(f"{path.stem}_{name}.png"))
                figures[name] = f"{path.stem}_{name}.png"
            plot_gaps(runs, dataset, path.with_name(f"{path.stem}_{dataset}-gaps.png"))
            figures[f"{dataset}-gaps"] = f"{path.stem}_{dataset}-gaps.png"
            if any(r.get("cache_limit") for r in results["runs"]):  # the figure is about the cache
                plot_io(runs, dataset, first_order, ks[-1], path.with_name(f"{path.stem}_{dataset}-io.png"))
                figures[f"{dataset}-io"] = f"{path.stem}_{dataset}-io.png"
    text = render_report(results, figures)
    kept = ""
    if path.exists():
        old = path.read_text(encoding="utf-8")
        if KEEP_MARKER in old:
            kept = old[old.index(KEEP_MARKER) + len(KEEP_MARKER) :]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n" + KEEP_MARKER + (kept or "\n"), encoding="utf-8")
    os.replace(tmp, path)
    return path
