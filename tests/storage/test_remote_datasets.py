"""Remote datasets everywhere: the CLI on URLs, pack straight to object stores, and the cache in front of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dataio
from dataio.errors import PackError
from dataio.pack import PackOptions, pack
from dataio.storage import open_store
from tests.conftest import SHARD_SIZE
from tests.storage.conftest import RemoteDataset


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dataio", *args], capture_output=True, text=True, timeout=300)


def test_info_and_verify_on_an_s3_url(s3_copy: RemoteDataset, packed: Path) -> None:
    options = json.dumps(s3_copy.options)
    out = cli("info", s3_copy.url, "--storage-options", options, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["samples"] == len(dataio.open_dataset(packed))
    assert s3_copy.options.get("secret", "~") not in out.stdout + out.stderr
    ok = cli("verify", s3_copy.url, "--storage-options", options)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    local = dataio.open_dataset(packed)
    path, offset, length = local.record_range(9)
    _, pos = local.locate(9)
    import s3fs

    fs = s3fs.S3FileSystem(**s3_copy.options)
    key = f"{s3_copy.bucket}/{s3_copy.prefix}/{path}"
    data = bytearray(fs.cat_file(key))
    data[offset + length // 2] ^= 0x08
    fs.pipe_file(key, bytes(data))
    bad = cli("verify", s3_copy.url, "--storage-options", options)
    assert bad.returncode == 1
    assert f"{path}: sample {pos}" in bad.stderr and f"byte offset {offset}" in bad.stderr


def test_pack_straight_to_s3_matches_the_local_pack(s3_dataset: RemoteDataset, packed: Path) -> None:
    remote = dataio.open_dataset(s3_dataset.url, storage_options=s3_dataset.options)
    local = dataio.open_dataset(packed)
    assert remote.manifest.dumps() == local.manifest.dumps()  # same shards, sizes, sha256 — whatever the store


def test_pack_straight_to_oss(seaweed_open, synth_dir: Path, packed: Path) -> None:
    from tests.storage.conftest import bucket_name

    name = bucket_name("oss-pack")
    seaweed_open.create_bucket(name)
    url = f"oss://{name}/ds"
    pack(synth_dir, url, PackOptions(shard_size=SHARD_SIZE), storage_options=seaweed_open.oss_storage_options())
    remote = dataio.open_dataset(url, storage_options=seaweed_open.oss_storage_options())
    local = dataio.open_dataset(packed)
    assert remote.manifest.dumps() == local.manifest.dumps()
    assert [remote[i] for i in range(0, len(local), 5)] == [local[i] for i in range(0, len(local), 5)]


@pytest.mark.parametrize("which", ["s3", "oss"])
def test_byte_identical_with_and_without_the_cache(
    which: str, s3_dataset: RemoteDataset, oss_dataset: RemoteDataset, packed: Path, tmp_path: Path
) -> None:
    ds_info = s3_dataset if which == "s3" else oss_dataset
    local = dataio.open_dataset(packed)
    order = np.random.default_rng(2).permutation(len(local))
    want = list(local.read_records(order))
    plain = dataio.open_dataset(ds_info.url, storage_options=ds_info.options)
    assert list(plain.read_records(order)) == want
    limit = int(local.shard_nbytes.max()) * 2
    cached = dataio.open_dataset(ds_info.url, storage_options=ds_info.options, cache_dir=tmp_path / "c",
                                 cache_limit=limit)
    sampler = dataio.DistributedShuffleSampler(cached, "shard", seed=3)
    indices = sampler.epoch_indices()
    cached.prefetch(sampler.shard_order(indices))
    assert list(cached.read_records(indices)) == list(local.read_records(indices))
    stats = cached.store.stats()
    assert stats.downloads >= len(local.shard_sizes) and stats.errors == 0


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
def test_pack_refuses_a_prefix_with_foreign_objects_below_it(
    seaweed, bucket: str, synth_dir: Path, client: str
) -> None:
    """Foreign objects in a sub-prefix pack does not own (``images/…``) are seen too, through either client."""
    options = {**seaweed.s3_storage_options(), "client": client}
    store = open_store(f"s3://{bucket}/ds", options)
    store.write_bytes("images/n01/x.jpg", b"not pack's")
    store.write_bytes("shards/notes/readme.txt", b"nor this")
    with pytest.raises(PackError, match=r"holds 2 .*images/, shards/notes/"):
        pack(synth_dir, f"s3://{bucket}/ds", PackOptions(shard_size=SHARD_SIZE), storage_options=options)
    assert store.read("images/n01/x.jpg") == b"not pack's"
