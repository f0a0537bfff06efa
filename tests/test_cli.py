"""The ``dataio`` command line, run as users run it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dataio import open_dataset


def dataio(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dataio", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command() -> None:
    out = dataio("--help")
    assert out.returncode == 0
    for name in ("pack", "info", "verify", "synth", "demo"):
        assert name in out.stdout


def test_info(packed: Path) -> None:
    out = dataio("info", str(packed))
    assert out.returncode == 0, out.stderr
    ds = open_dataset(packed)
    assert f"samples        {len(ds)}" in out.stdout and "format version 1" in out.stdout
    info = json.loads(dataio("info", str(packed), "--json").stdout)
    assert info["samples"] == len(ds) and info["classes"] == len(ds.classes)
    assert sum(info["class_counts"].values()) == len(ds)
    assert info["shards"] == len(ds.manifest.shards) and info["bytes"] == ds.manifest.total_bytes


def test_verify_ok_then_catches_a_corrupted_byte(packed_copy: Path) -> None:
    ok = dataio("verify", str(packed_copy))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    ds = open_dataset(packed_copy)
    i = len(ds) - 3
    path, offset, length = ds.record_range(i)
    _, pos = ds.locate(i)
    f = packed_copy / path
    data = bytearray(f.read_bytes())
    data[offset + length // 2] ^= 0x04
    f.write_bytes(data)
    bad = dataio("verify", str(packed_copy))
    assert bad.returncode == 1
    key = ds.index_table().column("key")[i].as_py()
    assert f"{path}: sample {pos} (key {key}) at byte offset {offset}" in bad.stderr
    assert f"{path}: sha256 differs" in bad.stderr and "FAILED: 2 problems" in bad.stdout


def test_verify_warns_of_an_older_manifest_and_fails_on_a_changed_index(packed_copy: Path) -> None:
    from tests.helpers import edit_manifest

    edit_manifest(packed_copy, lambda d: d.pop("index_sha256"), seal=False)  # as written before pack recorded it
    old = dataio("verify", str(packed_copy))
    assert old.returncode == 0 and "OK" in old.stdout, old.stderr
    assert "warning: index.parquet: the manifest records no index_sha256" in old.stderr
    assert "warning: manifest.json: no manifest_sha256 (packed by an older dataio)" in old.stderr
    edit_manifest(packed_copy, lambda d: d.update(index_sha256="0" * 64), seal=False)
    bad = dataio("verify", str(packed_copy))
    assert bad.returncode == 1 and "index.parquet: sha256 differs" in bad.stderr
    assert "no index_sha256" not in bad.stderr


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    out = dataio("info", str(tmp_path))
    assert out.returncode == 2
    assert "no manifest" in out.stderr and "Traceback" not in out.stderr
    out = dataio("pack", str(tmp_path / "nope"), str(tmp_path / "o"))
    assert out.returncode == 2 and "no such file or directory" in out.stderr


def test_storage_options_value_is_never_echoed(packed: Path) -> None:
    out = dataio("info", str(packed), "--storage-options", '{"secret": "hunter2"')
    assert out.returncode == 2 and "hunter2" not in out.stderr + out.stdout


def test_demo_runs_the_whole_job_and_checks_it(tmp_path: Path) -> None:
    out = dataio("demo", "--images", "60", "--classes", "3", "--shard-size", "1MB", "--dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    steps = [line.split()[0] for line in out.stdout.splitlines() if line.strip()][:5]
    assert steps == ["synth", "pack", "read", "verify", "load"]
    assert "every sample byte-identical with its source" in out.stdout
    assert len(open_dataset(tmp_path / "dataset")) == 60
