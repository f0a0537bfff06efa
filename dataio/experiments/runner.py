"""``run_shuffle_experiment(config, out)``: prepares the data, runs every pending run of the grid, writes the results.

Runs are grouped by (seed, dataset, world size): each group is one spawn of ``K`` processes on a fresh gloo
group (127.0.0.1, a free port) that trains the group's modes one after the other (see
:mod:`dataio.experiments.worker`). Finished runs are skipped (:class:`~dataio.experiments.store.RunStore`), so an
interrupted grid resumes; a progress bar counts finished runs. ``out`` holds ``data/`` (ImageFolders and packed
sets, reused), ``runs/`` (one JSON per run), ``cache/`` (the node-local shard caches, emptied after each run) and
``results.json`` (configuration, datasets and every finished run).
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dataio.experiments.config import RunSpec, ShuffleExperimentConfig
from dataio.experiments.data import PreparedData, prepare_data
from dataio.experiments.store import RunStore, write_json

__all__ = ["collect_results", "run_shuffle_experiment"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _groups(pending: list[RunSpec]) -> list[list[RunSpec]]:
    """Consecutive pending runs that share seed, dataset and world size (the grid's order is kept)."""
    key = lambda s: (s.seed, s.dataset, s.world_size)  # noqa: E731
    return [list(g) for _, g in itertools.groupby(pending, key=key)]


def _spawn(job: Any, world_size: int, on_tick: Callable[[], None]) -> None:
    import torch.multiprocessing as mp

    from dataio.experiments.worker import rank_main

    context = mp.start_processes(rank_main, args=(world_size, job), nprocs=world_size, join=False, start_method="spawn")
    while not context.join(timeout=1.0):
        on_tick()
    on_tick()


def run_shuffle_experiment(
    config: ShuffleExperimentConfig,
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the grid's pending runs and returns (and writes to ``out/results.json``) every finished run of the grid.

    Raises:
        ImportError: A dataset's package is missing.
        RuntimeError: A rank failed (the message names the rank and the run).
    """
    from tqdm import tqdm

    from dataio.experiments.worker import GroupJob

    out = Path(out)
    started = time.perf_counter()
    data: dict[str, PreparedData] = {name: prepare_data(name, config, out / "data") for name in config.datasets}
    store = RunStore(out / "runs", config.run_digest())
    specs = config.runs()
    pending = store.pending(specs)
    log(f"shuffle experiment: {len(specs)} runs, {len(specs) - len(pending)} already finished, {len(pending)} to run")
    bar = tqdm(total=len(specs), initial=len(specs) - len(pending), unit="run", disable=not progress,
               dynamic_ncols=True)  # fmt: skip
    try:
        for group in _groups(pending):
            k = group[0].world_size
            bar.set_description(f"{group[0].dataset} K={k} seed {group[0].seed}")
            job = GroupJob(config, tuple(group), data, str(out / "runs"), str(out / "cache"), _free_port())
            done = len(specs) - len(pending)

            def tick(group: list[RunSpec] = group, base: int = done) -> None:
                finished = sum(store.load(s) is not None for s in group)
                bar.n = base + finished
                bar.refresh()

            _spawn(job, k, tick)
            pending = store.pending(specs)
    finally:
        bar.close()
    results = _results(config, data, store, specs)
    results["wall_s_this_call"] = time.perf_counter() - started
    write_json(out / "results.json", results)
    log(f"{len(results['runs'])}/{len(specs)} runs finished; results in {out / 'results.json'}")
    return results


def _results(
    config: ShuffleExperimentConfig, data: dict[str, PreparedData], store: RunStore, specs: list[RunSpec]
) -> dict[str, Any]:
    return {
        "config": config.as_dict(),
        "digest": config.run_digest(),
        "data": {name: vars(d) | {"train": dict(d.train)} for name, d in data.items()},
        "runs": store.finished(specs),
        "grid_runs": len(specs),
    }


def collect_results(config: ShuffleExperimentConfig, out: str | os.PathLike[str]) -> dict[str, Any]:
    """The results of the runs of ``config`` finished so far under ``out`` (runs nothing; e.g. while a grid runs)."""
    out = Path(out)
    data = {name: prepare_data(name, config, out / "data") for name in config.datasets}
    return _results(config, data, RunStore(out / "runs", config.run_digest()), config.runs())
