from __future__ import annotations

from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.errors import ManifestError, VersionError
from dataio.format import IMAGE_SCHEMA, Manifest, ShardEntry, check_relative_path
from tests.helpers import edit_manifest

SHA = "0" * 64


@pytest.mark.parametrize(
    "path",
    ["../x.dio", "shards/../../etc/passwd", "/etc/passwd", "C:/x", "s3://bucket/x", "a\\..\\b", "a//b", "./a",
     "a/./b", "", "a\0b", "shards/.."],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(ManifestError):
        check_relative_path(path)


@pytest.mark.parametrize("path", ["shards/shard-00000.dio", "a.dio", "x/y/z.dio", ".dataio-pack/a.json"])
def test_safe_paths_pass(path: str) -> None:
    assert check_relative_path(path) == path


def test_manifest_round_trip() -> None:
    m = Manifest(IMAGE_SCHEMA, (ShardEntry("shards/a.dio", 2, 124, SHA, 60, 7),), classes=("a", "b"),
                 skipped=({"path": "x", "reason": "empty file"},), extra={"k": 1})
    back = Manifest.loads(m.dumps())
    assert back == m and back.num_samples == 2 and back.total_bytes == 124
    assert m.dumps() == back.dumps()


def test_path_traversal_in_a_manifest_is_refused(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: d["shards"][0].update(path="../../outside.dio"))
    with pytest.raises(ManifestError, match="escapes"):
        open_dataset(packed_copy)


def test_index_path_traversal_is_refused(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: d.update(index="/etc/passwd"))
    with pytest.raises(ManifestError, match="not a relative path"):
        open_dataset(packed_copy)


def test_unknown_manifest_version_is_refused(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: d.update(version=2))
    with pytest.raises(VersionError, match="version 2 is not supported"):
        open_dataset(packed_copy)


def test_inconsistent_sample_count_is_refused(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: d.update(num_samples=d["num_samples"] + 1))
    with pytest.raises(ManifestError, match="num_samples"):
        open_dataset(packed_copy)


def test_malformed_manifests(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        open_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ManifestError, match="not a dataio manifest"):
        open_dataset(tmp_path)
    (tmp_path / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="no manifest"):
        open_dataset(tmp_path)
