"""The Parquet index has its own checksum in the manifest: pack records it, readers check it, and manifests
written before it existed still load (issue 13, item 4)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.errors import ChecksumError, ManifestError, UnsealedManifestWarning
from dataio.format import IMAGE_SCHEMA, Manifest, ShardEntry, seal_manifest
from tests.helpers import edit_manifest


def test_pack_records_the_index_sha256(packed: Path) -> None:
    doc = json.loads((packed / "manifest.json").read_text())
    assert doc["index_sha256"] == hashlib.sha256((packed / "index.parquet").read_bytes()).hexdigest()


def test_manifest_round_trips_index_sha256_and_refuses_a_malformed_one() -> None:
    entry = ShardEntry("shards/a.dio", 2, 124, "0" * 64, 60, 7)
    m = Manifest(IMAGE_SCHEMA, (entry,), index_sha256="ab" * 32)
    assert Manifest.loads(m.dumps()) == m
    assert "index_sha256" not in json.loads(Manifest(IMAGE_SCHEMA, (entry,)).dumps())  # absent, not null
    doc = json.loads(m.dumps())
    doc["index_sha256"] = "xyz"
    with pytest.raises(ManifestError, match="index_sha256"):
        Manifest.loads(json.dumps(seal_manifest(doc)))


def test_reader_refuses_an_index_that_fails_its_checksum(packed_copy: Path) -> None:
    index = packed_copy / "index.parquet"
    data = bytearray(index.read_bytes())
    data[len(data) // 2] ^= 0x01
    index.write_bytes(data)
    ds = open_dataset(packed_copy)
    with pytest.raises(ChecksumError, match=r"index\.parquet.*sha256"):
        ds.index_table()
    with pytest.raises(ChecksumError, match=r"index\.parquet"):
        ds.labels  # noqa: B018
    assert ds[0]["key"]  # samples themselves do not depend on the Parquet index


def test_older_manifest_without_index_sha256_still_loads(packed_copy: Path) -> None:
    edit_manifest(packed_copy, lambda d: d.pop("index_sha256"), seal=False)
    with pytest.warns(UnsealedManifestWarning, match="no manifest_sha256"):
        ds = open_dataset(packed_copy)
    assert ds.manifest.index_sha256 is None
    assert len(ds.labels) == len(ds)
    assert "index_sha256" not in json.loads(ds.manifest.dumps())
