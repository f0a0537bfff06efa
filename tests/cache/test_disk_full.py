"""A full cache disk (issue 19 item 12): the cache is an optimisation, never a dependency. Reads are served from
the remote store with one warning naming the cache folder and the fix, counted in ``stats().fallbacks``; plans
and lock files that cannot be written are skipped; caching resumes once there is space.

The disk is a real, small tmpfs mounted for the test (root only): without the permission the tests skip,
except under ``CI=true``, where a skip would hide the check.
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio.cache import CachedStore
from dataio.storage import LocalStore
from tests.cache.remotes import shard_table

FALLBACK_LOG = "dataio.cache.fallback"


def _mount(where: Path, options: str) -> None:
    where.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        reason = f"cannot mount a small tmpfs for a real full disk ({out.stderr.strip()}); run as root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true requires this check)")
        pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (the packed dataset is about 2 MB)."""
    where = tmp_path / "disk"
    _mount(where, "size=4m")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def few_inodes(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs with plenty of bytes and few inodes (no new file can be made once they are used)."""
    where = tmp_path / "inodes"
    _mount(where, "size=16m,nr_inodes=64")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill_bytes(disk: Path) -> Path:
    """Fills ``disk`` up to its last byte with one file; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        while True:  # the last partial block
            try:
                os.write(fd, b"\0" * 512)
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


def _fill_inodes(disk: Path) -> Path:
    """Uses every free inode of ``disk`` with empty files in one folder; returns the folder."""
    folder = disk / "fill"
    folder.mkdir()
    for i in range(10_000):
        try:
            (folder / str(i)).touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            return folder
    raise AssertionError("the inodes never ran out")


def _fallback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == FALLBACK_LOG and r.levelno == logging.WARNING]


def test_reads_fall_back_to_the_remote_store_while_the_disk_is_full(
    packed: Path, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shards = shard_table(packed)
    paths = sorted(shards)
    store = CachedStore(LocalStore(str(packed)), small_disk / "cache", 10**9, shards, prefetch=1)
    filler = _fill_bytes(small_disk)
    caplog.set_level(logging.WARNING)

    store.set_access_order(paths)  # the plan cannot be written: kept in memory, no error
    for p in paths:
        assert store.read(p) == (packed / p).read_bytes()
        assert store.read_range(p, 10, 100) == (packed / p).read_bytes()[10:110]
    warnings = _fallback_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert store.layout.base in warnings[0] and "free space" in warnings[0] and "cache_limit" in warnings[0]
    assert "cache_dir" in warnings[0]
    stats = store.stats()
    assert stats.fallbacks == 2 * len(paths) and stats.downloads == 0
    assert not os.listdir(store.layout.tmp_dir)  # no partial download left behind

    filler.unlink()  # space returns: caching resumes after the short pause downloads take
    deadline = time.monotonic() + 10
    while store._engine.bypass.full() and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in paths:
        assert store.read(p) == (packed / p).read_bytes()
    assert store.stats().downloads >= 1
    assert any(Path(store.layout.data_dir).rglob("*.*"))
    store.close()


def test_no_inode_left_for_lock_or_plan_files(packed: Path, few_inodes: Path, caplog: pytest.LogCaptureFixture) -> None:
    shards = shard_table(packed)
    paths = sorted(shards)
    store = CachedStore(LocalStore(str(packed)), few_inodes / "cache", 10**9, shards, prefetch=0)
    fill = _fill_inodes(few_inodes)
    caplog.set_level(logging.WARNING)

    store.set_access_order(paths)  # no inode for plans/<id>.alive: not published, no error
    assert os.listdir(store.layout.plans_dir) == []
    for p in paths:  # no inode for locks/<hash>.lock: served from the remote store
        assert store.read(p) == (packed / p).read_bytes()
    assert store.stats().fallbacks == len(paths)
    assert len(_fallback_warnings(caplog)) == 1
    assert any("access order is not published" in r.getMessage() for r in caplog.records)

    for f in fill.iterdir():
        f.unlink()
    deadline = time.monotonic() + 10
    while store._engine.bypass.full() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.read(paths[0]) == (packed / paths[0]).read_bytes()
    assert store.stats().downloads == 1
    store._engine.tracker.plans()  # the next eviction decision publishes the plan that could not be written
    assert any(n.endswith(".json") for n in os.listdir(store.layout.plans_dir))
    store.close()


def test_open_dataset_on_a_full_cache_disk_reads_the_same_records(packed: Path, small_disk: Path) -> None:
    plain = dataio.open_dataset(packed)
    _fill_bytes(small_disk)
    ds = dataio.open_dataset(str(packed), cache_dir=small_disk / "cache", cache_limit=10**9)
    sampler = dataio.DistributedShuffleSampler(ds, "shard", seed=1)
    indices = sampler.epoch_indices()
    ds.prefetch(np.asarray(sampler.shard_order(indices)))
    assert list(ds.read_records(indices)) == list(plain.read_records(indices))
    assert ds.store.stats().fallbacks > 0
    ds.close()
