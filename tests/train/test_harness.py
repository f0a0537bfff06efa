"""The training harness end to end, run as users run it: ``torchrun -m dataio.train`` (4 ranks as 2 nodes) and
``dataio train`` (one process), on the session's small packed dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dataio import open_dataset
from tests.conftest import SYNTH_IMAGES

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
TINY = ["--image-size", "32", "--width", "8", "--workers", "1"]


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=ENV)


def dataio_train(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "dataio", "train", *args)


def test_torchrun_trains_on_a_packed_set_and_reports_the_split(packed: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    torchrun = Path(sys.executable).with_name("torchrun")
    out = run(
        str(torchrun), "--standalone", "--nproc-per-node", "4", "-m", "dataio.train", str(packed),
        "--steps", "7", "--batch-size", "4", *TINY, "--ranks-per-node", "2", "--compress", "fp16",
        "--bucket-mb", "auto", "--bucket-candidates", "0.01,1", "--tune-steps", "1", "--warmup-steps", "1",
        "--compare-synthetic", "--json", str(report_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    steps_per_epoch = SYNTH_IMAGES // 4 // 4  # 48 images, 4 ranks, batch 4
    for epoch in range(3):  # 7 steps = 3 + 3 + 1
        assert f"epoch {epoch}: loss" in out.stdout, out.stdout
    assert "step time: data" in out.stdout and "compute" in out.stdout and "comm" in out.stdout
    assert "scaling efficiency vs --synthetic-data" in out.stdout
    report = json.loads(report_path.read_text())
    assert (report["world_size"], report["nodes"], report["ranks_per_node"]) == (4, 2, 2)
    assert report["allreduce"].startswith("hierarchical/") and "fp16" in report["allreduce"]
    assert [e["steps"] for e in report["epochs"]] == [steps_per_epoch, steps_per_epoch, 1]
    assert sum(e["images"] for e in report["epochs"]) == 7 * 4 * 4
    assert all(0 < e["loss"] < 10 and 0 <= e["accuracy"] <= 1 for e in report["epochs"])
    tuning = report["bucket_tuning"]
    assert tuning["choice_mb"] in (0.01, 1.0) and set(tuning["median_step_s"]) == {"0.01", "1"}
    assert report["bucket_mb"] == tuning["choice_mb"]
    split = report["split"]
    assert split["steps"] == 7 - 4 - 1  # minus 2 candidates × (1 warm-up + 1 timed) minus 1 warm-up
    assert split["images"] == split["steps"] * 4 * 4 and split["images_per_s"] > 0
    assert split["data_pct"] + split["compute_pct"] + split["comm_pct"] == pytest.approx(100, abs=0.01)
    assert split["comm_busy_pct"] > 0 and split["bottleneck"] in ("data", "compute", "comm")
    assert report["synthetic"]["steps"] == split["steps"] and report["synthetic"]["data_pct"] < 5
    assert report["data_efficiency"] > 0


def test_dataio_train_one_process_on_real_and_synthetic_data(packed: Path, tmp_path: Path) -> None:
    out = dataio_train(str(packed), "--epochs", "1", "--batch-size", "8", *TINY, "--allreduce", "flat")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "epoch 0: loss" in out.stdout and "1 rank(s)" in out.stdout
    assert f"({SYNTH_IMAGES // 8} steps, {SYNTH_IMAGES // 8 * 8} images)" in out.stdout
    report_path = tmp_path / "synthetic.json"
    synthetic = dataio_train(
        "--synthetic-data", "--steps", "4", "--batch-size", "2", *TINY, "--classes", "3", "--json", str(report_path)
    )
    assert synthetic.returncode == 0, synthetic.stdout + synthetic.stderr
    assert "data: synthetic (no IO)" in synthetic.stdout
    report = json.loads(report_path.read_text())
    assert report["split"]["steps"] == 2 and report["split"]["data_pct"] < 5  # nothing to wait for


def test_errors_name_the_rank_and_stage(packed_copy: Path) -> None:
    ds = open_dataset(packed_copy)
    path, offset, length = ds.record_range(5)
    f = packed_copy / path
    data = bytearray(f.read_bytes())
    data[offset + length // 2] ^= 0x04
    f.write_bytes(data)
    out = dataio_train(str(packed_copy), "--epochs", "1", "--batch-size", "8", *TINY, "--shuffle-mode", "sequential")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "rank 0 (node 0, local rank 0): data:" in out.stderr and "Traceback" not in out.stderr, out.stderr
    too_short = dataio_train(str(packed_copy), "--steps", "2", "--bucket-mb", "auto", *TINY)
    assert too_short.returncode == 2 and "run at least" in too_short.stderr, too_short.stderr
    no_data = dataio_train("--steps", "2")
    assert no_data.returncode == 2 and "dataset is needed" in no_data.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_gpu_run_uses_the_cuda_hook_path(packed: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    out = dataio_train(str(packed), "--steps", "4", "--batch-size", "8", *TINY, "--device", "cuda",
                       "--compress", "bf16", "--json", str(report_path))  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(report_path.read_text())
    assert report["backend"] == "nccl" and report["device"].startswith("cuda")
    assert report["split"]["steps"] == 2 and report["split"]["comm_busy_pct"] > 0
