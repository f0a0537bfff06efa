"""Symlinks, FIFOs and device files inside a dataset are refused before they are opened (issue 13, item 5)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.errors import DataioError
from dataio.inspection import verify_dataset
from dataio.storage.local import LocalStore
from tests.helpers import run_with_timeout

SECRET = b"TOPSECRET-0123456789"


def shard_path(root: Path) -> Path:
    ds = open_dataset(root)
    path = root / ds.manifest.shards[0].path
    ds.close()
    return path


def test_shard_symlinked_outside_the_root_is_refused_without_leaking_bytes(packed_copy: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(SECRET * 100)
    shard = shard_path(packed_copy)
    shard.unlink()
    shard.symlink_to(outside)
    ds = open_dataset(packed_copy)
    with pytest.raises(DataioError) as err:
        ds[0]
    msg = str(err.value)
    assert shard.name in msg and "symbolic link" in msg
    assert "TOPSECRET"[:4] not in msg and "TOPS" not in repr(err.value)
    report = verify_dataset(packed_copy)
    text = "\n".join(report.problems)
    assert not report.ok and "symbolic link" in text and "TOPS" not in text


def test_symlinked_directory_inside_the_root_is_refused(packed_copy: Path, tmp_path: Path) -> None:
    store = LocalStore(packed_copy)
    real = tmp_path / "elsewhere"
    real.mkdir()
    (real / "x.bin").write_bytes(SECRET)
    (packed_copy / "sub").symlink_to(real, target_is_directory=True)
    with pytest.raises(DataioError, match="symbolic link"):
        store.read_range("sub/x.bin", 0, 4)
    with pytest.raises(DataioError, match="symbolic link"):
        store.read("sub/x.bin")


def test_fifo_in_place_of_a_shard_is_refused_without_hanging(packed_copy: Path) -> None:
    shard = shard_path(packed_copy)
    shard.unlink()
    os.mkfifo(shard)
    report = run_with_timeout(lambda: verify_dataset(packed_copy), shard)
    text = "\n".join(report.problems)
    assert not report.ok and shard.name in text and "not a regular file" in text
    ds = open_dataset(packed_copy)
    with pytest.raises(DataioError, match="not a regular file"):
        run_with_timeout(lambda: ds[0], shard)
    with pytest.raises(DataioError, match="not a regular file"):
        run_with_timeout(lambda: next(ds.iter_shard(0)), shard)


def _device_in_place_of(shard: Path) -> None:
    shard.unlink()
    if os.geteuid() == 0:
        os.mknod(shard, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero's numbers
    else:
        shard.symlink_to("/dev/zero")


def test_dev_zero_as_a_shard_is_refused(packed_copy: Path) -> None:
    shard = shard_path(packed_copy)
    _device_in_place_of(shard)
    report = run_with_timeout(lambda: verify_dataset(packed_copy))
    text = "\n".join(report.problems)
    assert not report.ok and shard.name in text
    assert "not a regular file" in text or "symbolic link" in text
    ds = open_dataset(packed_copy)
    with pytest.raises(DataioError, match=r"not a regular file|symbolic link"):
        ds[0]


def test_manifest_and_index_must_be_regular_files(packed_copy: Path, tmp_path: Path) -> None:
    manifest = packed_copy / "manifest.json"
    moved = tmp_path / "manifest.json"
    shutil.move(manifest, moved)
    manifest.symlink_to(moved)
    with pytest.raises(DataioError, match=r"manifest.json.*symbolic link"):
        open_dataset(packed_copy)
    manifest.unlink()
    shutil.move(moved, manifest)
    index = packed_copy / "index.parquet"
    index.unlink()
    os.mkfifo(index)
    ds = open_dataset(packed_copy)
    with pytest.raises(DataioError, match=r"index.parquet.*not a regular file"):
        run_with_timeout(ds.index_table, index)


def test_a_symlinked_dataset_root_is_still_allowed(packed: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(packed, target_is_directory=True)
    with open_dataset(link) as ds:
        assert ds[0]["key"]


def test_a_foreign_file_in_place_of_a_shard_is_not_echoed(packed_copy: Path) -> None:
    shard = shard_path(packed_copy)
    size = shard.stat().st_size
    shard.write_bytes((SECRET * (size // len(SECRET) + 1))[:size])
    report = verify_dataset(packed_copy)
    text = "\n".join(report.problems)
    assert not report.ok and "not a dataio shard" in text and "TOPS" not in text
