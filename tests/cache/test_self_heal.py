"""A cached shard copy that goes bad on the node's disk is dropped and downloaded again by the read that finds it
(issue 13 item 7); when the fresh download is bad too, the error names the cached file and the remote shard."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import dataio
from dataio.errors import ChecksumError
from dataio.format import seal_manifest


def _flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x20
    path.write_bytes(bytes(blob))


def _sha256(ds, shard: str) -> str:
    return next(e.sha256 for e in ds.manifest.shards if e.path == shard)


def _cached_file(ds, shard: str) -> Path:
    layout = ds.store.layout
    return Path(layout.data_path(layout.shard_name(shard, _sha256(ds, shard))))


def test_a_corrupt_cached_copy_is_replaced_by_a_fresh_download(packed_copy: Path, tmp_path: Path) -> None:
    ds = dataio.open_dataset(packed_copy, cache_dir=tmp_path / "cache", cache_limit=10**9)
    want = [ds.read_record(i) for i in range(len(ds))]  # every shard cached
    i = len(ds) // 2
    shard, offset, length = ds.record_range(i)
    copy = _cached_file(ds, shard)
    assert copy.is_file()
    downloads = ds.store.stats().downloads
    _flip(copy, offset + length // 2)  # bit rot on the node's disk, after the verified fill

    assert ds.read_record(i) == want[i]  # healed on the spot: no error reaches the user
    assert list(ds.read_records(range(len(ds)))) == want
    stats = ds.store.stats()
    assert stats.invalidated == 1 and stats.downloads == downloads + 1
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == _sha256(ds, shard)
    ds.close()


def test_when_the_fresh_download_is_bad_too_the_error_names_both(packed_copy: Path, tmp_path: Path) -> None:
    probe = dataio.open_dataset(packed_copy)
    i = 5
    shard, offset, length = probe.record_range(i)
    probe.close()
    remote = packed_copy / shard
    _flip(remote, offset + length // 2)  # a remote shard whose bytes match a (rewritten) manifest but not its index
    manifest = json.loads((packed_copy / "manifest.json").read_text())
    for entry in manifest["shards"]:
        if entry["path"] == shard:
            entry["sha256"] = hashlib.sha256(remote.read_bytes()).hexdigest()
    (packed_copy / "manifest.json").write_text(json.dumps(seal_manifest(manifest)))

    ds = dataio.open_dataset(packed_copy, cache_dir=tmp_path / "cache", cache_limit=10**9)
    with pytest.raises(ChecksumError) as info:
        ds.read_record(i)
    message = str(info.value)
    assert shard in message and str(tmp_path / "cache") in message and "remote shard" in message
    assert info.value.shard == shard and ds.store.stats().invalidated == 1
    ds.close()
