"""``dataio shuffle-stats`` end to end on a packed, class-sorted synth dataset."""

from __future__ import annotations

import argparse
import json

import pytest

from dataio.cli import main
from dataio.units import size_arg

MODES = ["sequential", "global", "block", "shard", "local"]


def test_table(packed, capsys):
    assert main(["shuffle-stats", str(packed), "--world-size", "2", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "48 samples" in lines[0] and "world size 2" in lines[0]
    assert lines[1].split()[:2] == ["mode", "labels/batch"]
    assert [line.split()[0] for line in lines[2:8]] == ["ideal", *MODES]
    assert "read ampl." in out


def test_json_matches_python(packed, capsys):
    from dataio.dataset import open_dataset

    args = ["shuffle-stats", str(packed), "--mode", "block", "--mode", "global", "--world-size", "3"]
    assert main([*args, "--batch-size", "4", "--block-size", "2", "--window", "3", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["block", "global"]
    assert rows[0]["mode_params"] == {"block_size": 2, "window": 3}
    with open_dataset(packed) as ds:
        from dataio.sampling import DistributedShuffleSampler

        sampler = DistributedShuffleSampler(ds, "global", world_size=3, rank=0)
        assert sampler.shuffle_stats(4).as_dict() == rows[1]
        assert rows[1]["num_samples"] == len(ds)


def test_markdown(packed, capsys):
    assert (
        main(["shuffle-stats", str(packed), "--mode", "shard", "--format", "markdown", "--chunk-bytes", "0"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[1].startswith("| mode |")
        and lines[3].startswith("| ideal |")
        and lines[4].startswith("| shard |")
    )


def test_missing_dataset(tmp_path, capsys):
    assert main(["shuffle-stats", str(tmp_path / "nope")]) == 2
    assert "shuffle-stats: error" in capsys.readouterr().err


def test_size_options_parse_as_everywhere_else():
    assert size_arg("1048576") == 1 << 20
    assert size_arg("4MiB") == size_arg("4M") == 4 << 20
    assert size_arg("4mb") == 4 * 10**6  # decimal, as pack's --shard-size (dataio/units.py)
    assert size_arg("1.5G") == 3 << 29
    assert size_arg("0") == 0
    with pytest.raises(argparse.ArgumentTypeError):
        size_arg("lots")
