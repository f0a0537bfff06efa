"""The shuffle experiment end to end on a tiny grid, with real gloo process groups of 1 and 2 ranks: every run
finishes and records what the report needs, the same seeds give identical results, and a finished grid resumes
without rerunning anything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataio.experiments.config import ShuffleExperimentConfig
from dataio.experiments.runner import run_shuffle_experiment

CONFIG = ShuffleExperimentConfig.quick(max_per_class=20)
METRICS = ("train_loss", "train_accuracy", "heldout_loss", "heldout_accuracy", "full_train_loss", "full_train_accuracy")


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("experiment")
    return out, run_shuffle_experiment(CONFIG, out, progress=False, log=_quiet)


def _curves(results: dict[str, Any]) -> dict[str, list[tuple[float, ...]]]:
    return {r["run_id"]: [tuple(e[m] for m in METRICS) for e in r["epochs"]] for r in results["runs"]}


def test_every_run_records_training_accuracy_and_io(first: tuple[Path, dict[str, Any]]) -> None:
    _, results = first
    runs = {r["run_id"]: r for r in results["runs"]}
    assert sorted(runs) == sorted(s.run_id for s in CONFIG.runs()) and results["grid_runs"] == 4
    for run in runs.values():
        assert len(run["epochs"]) == CONFIG.epochs and run["digest"] == CONFIG.run_digest()
        assert run["per_rank_batch"] * run["run"]["world_size"] == CONFIG.global_batch
        for epoch in run["epochs"]:
            assert 0 < epoch["train_loss"] < 10 and 0 <= epoch["heldout_accuracy"] <= 1
            assert epoch["samples"] == run["steps_per_epoch"] * CONFIG.global_batch and epoch["samples_per_s"] > 0
            assert epoch["io"]["requests"] >= epoch["samples"] and epoch["io"]["bytes"] > 0
            spread = epoch["spread"]
            assert 1 <= spread["shards_per_rank_batch"] <= spread["shards_per_global_batch"]
        assert run["cache_limit"] < run["dataset_bytes"]  # seed 0 on the first order reads through a smaller cache
        assert sum(e["io"]["downloads"] for e in run["epochs"]) >= run["num_shards"]
    assert results["data"]["digits"]["num_train"] == 160


def test_an_elastic_mode_trains_the_same_on_one_and_two_ranks(first: tuple[Path, dict[str, Any]]) -> None:
    curves = _curves(first[1])
    one, two = curves["digits-sorted-global-k1-s0"], curves["digits-sorted-global-k2-s0"]
    flat = lambda curve: [v for epoch in curve for v in epoch]  # noqa: E731
    assert flat(two) == pytest.approx(flat(one), rel=1e-4)  # same global batches; only the reduction order differs


def test_same_seeds_give_identical_results(first: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    again = run_shuffle_experiment(CONFIG, tmp_path, progress=False, log=_quiet)
    assert _curves(again) == _curves(first[1])
    reader = lambda res: {r["run_id"]: [e["io"]["requests"] for e in r["epochs"]] for r in res["runs"]}  # noqa: E731
    assert reader(again) == reader(first[1])


def test_a_finished_grid_resumes_without_rerunning(first: tuple[Path, dict[str, Any]]) -> None:
    out, results = first
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    logged: list[str] = []
    again = run_shuffle_experiment(CONFIG, out, progress=False, log=logged.append)
    assert "4 already finished, 0 to run" in logged[0]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps
    assert again["runs"] == results["runs"]


def test_cli_writes_the_report_from_the_results(first: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    out, _ = first
    report = tmp_path / "report.md"
    done = subprocess.run(
        [sys.executable, "-m", "dataio", "experiment", "shuffle", "--quick", "--max-per-class", "20", "--report-only",
         "--out", str(out), "--report", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = report.read_text()
    assert "K=1 | K=2" in text and "| local |" in text and "4 of 4 runs finished" in text
    assert (tmp_path / "report_digits-gaps.png").stat().st_size > 1000
    assert json.loads((out / "results.json").read_text())["grid_runs"] == 4
