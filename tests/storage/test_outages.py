"""The store goes away for a while: reads and uploads wait for it, bounded by time, not by a count of attempts.

The default :class:`RetryPolicy` must ride out a 30 s outage (a server restart). Through the fault proxy the
outage is scaled down with the policy (times ÷ 10: 3 s of connection refused against the default scaled to
1/10); one test stops the real SeaweedFS for 30 s mid-read and mid-upload with the default policy itself.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dataio import open_dataset
from dataio.storage import RetryPolicy, StorageError, open_store
from tests.storage.conftest import CREDENTIALS, RemoteDataset, require_weed, upload_tree
from tests.storage.faultproxy import FaultProxy
from tests.storage.seaweed import SeaweedServer

ProxyFactory = Callable[..., FaultProxy]
SCALE = 0.1
#: The default policy with every time scaled by SCALE (the count bound, if any, kept as it is).
SCALED = dataclasses.replace(
    RetryPolicy(),
    base_delay=RetryPolicy().base_delay * SCALE,
    max_delay=RetryPolicy().max_delay * SCALE,
    budget=RetryPolicy().budget * SCALE,
)


def _outage(px: FaultProxy, seconds: float) -> threading.Thread:
    """Stops ``px`` now (connections refused) and starts it again on the same port after ``seconds``."""
    px.stop()

    def back() -> None:
        time.sleep(seconds)
        px.start()

    t = threading.Thread(target=back, daemon=True)
    t.start()
    return t


def test_default_policy_is_bounded_by_time_not_by_a_count() -> None:
    p = RetryPolicy()
    assert p.max_attempts is None and p.budget >= 60
    assert not p.exhausted(attempt=10_000, elapsed=p.budget - 1)
    assert p.exhausted(attempt=2, elapsed=p.budget)
    assert RetryPolicy(max_attempts=3).exhausted(attempt=3, elapsed=0.0)
    for bad in ({"max_attempts": 0}, {"max_attempts": 2.5}, {"budget": float("inf")}, {"budget": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]


def test_reads_ride_out_a_scaled_30s_outage(
    s3_dataset: RemoteDataset, proxy: ProxyFactory, local_records: list[bytes]
) -> None:
    px = proxy(s3_dataset.server)
    n = len(local_records)
    with open_dataset(s3_dataset.url, storage_options=s3_dataset.via(px), threads=4, retry=SCALED) as ds:
        assert list(ds.read_records(range(n))) == local_records
        back = _outage(px, 30 * SCALE)
        t = time.monotonic()
        assert list(ds.read_records(range(n - 1, -1, -1))) == local_records[::-1]
        assert time.monotonic() - t >= 30 * SCALE * 0.9  # the reads really waited for the store
        back.join()
        assert ds.store.retries >= 1  # type: ignore[attr-defined]


def test_uploads_ride_out_a_scaled_30s_outage(s3_dataset: RemoteDataset, bucket: str, proxy: ProxyFactory) -> None:
    px = proxy(s3_dataset.server)
    url = f"s3://{bucket}/up"
    store = open_store(url, s3_dataset.via(px), retry=SCALED)
    back = _outage(px, 30 * SCALE)
    store.write_bytes("shards/shard-00000.dio", b"x" * 1000)
    back.join()
    assert store.read("shards/shard-00000.dio") == b"x" * 1000
    assert store.retries >= 1  # type: ignore[attr-defined]
    store.close()


def test_an_upload_that_gives_up_names_the_object_and_the_fix(
    s3_dataset: RemoteDataset, bucket: str, proxy: ProxyFactory
) -> None:
    px = proxy(s3_dataset.server)
    store = open_store(f"s3://{bucket}/up", s3_dataset.via(px), retry=RetryPolicy(base_delay=0.01, budget=1.0))
    px.stop()  # and never back
    with pytest.raises(StorageError) as info:
        store.write_bytes("shards/shard-00007.dio", b"y" * 123)
    text = str(info.value)
    assert text.startswith(f"s3://{bucket}/up/shards/shard-00007.dio (upload of 123 bytes): giving up after ")
    assert "run the same command again" in text and "RetryPolicy" in text
    assert CREDENTIALS[1] not in text and CREDENTIALS[1] not in repr(info.value.__cause__)
    store.close()


@pytest.mark.slow
def test_default_policy_survives_a_30s_server_outage(tmp_path: Path, packed: Path, local_records: list[bytes]) -> None:
    """SeaweedFS is stopped for 30 s while 4 threads read and one uploads, then started again on the same
    ports: with the default policy every read returns the right bytes and the upload lands."""
    require_weed()
    server = SeaweedServer(tmp_path / "weed", credentials=CREDENTIALS).start()
    try:
        server.create_bucket("outage")
        url = upload_tree(server, packed, "outage", "ds")
        ds = open_dataset(url, storage_options=server.s3_storage_options(), threads=4)  # the default RetryPolicy
        store = open_store("s3://outage/up", server.s3_storage_options())
        n = len(local_records)
        assert list(ds.read_records(range(n))) == local_records
        results: dict[str, object] = {}

        def read() -> None:
            try:
                results["read"] = list(ds.read_records(range(n - 1, -1, -1))) == local_records[::-1]
            except BaseException as exc:
                results["read"] = exc

        def upload() -> None:
            try:
                store.write_bytes("blob", b"z" * 5000)
                results["upload"] = True
            except BaseException as exc:
                results["upload"] = exc

        server.stop(grace=2)
        t = time.monotonic()
        threads = [threading.Thread(target=f, daemon=True) for f in (read, upload)]
        for th in threads:
            th.start()
        time.sleep(30)
        server.start()  # from the main thread: the server's parent-death signal is tied to it
        down = time.monotonic() - t
        for th in threads:
            th.join(RetryPolicy().budget)
        assert results == {"read": True, "upload": True}, results
        assert down >= 30
        assert store.read("blob") == b"z" * 5000
        assert ds.store.retries > 0 and store.retries > 0  # type: ignore[attr-defined]
        ds.close()
        store.close()
    finally:
        server.stop()


def test_cli_pack_upload_failure_is_one_clear_line(
    seaweed: SeaweedServer, bucket: str, proxy: ProxyFactory, synth_dir: Path
) -> None:
    """Every upload (PUT) is reset while reads pass: ``dataio pack`` retries each for its budget, then exits 2
    with one line naming the shard, its size and the fix — no traceback, no credentials."""
    px = proxy(seaweed, reset_rate=1.0, methods=frozenset({"PUT"}))
    options = json.dumps(seaweed.s3_storage_options(endpoint=px.endpoint))
    cmd = [sys.executable, "-m", "dataio", "pack", str(synth_dir), f"s3://{bucket}/ds", "--shard-size", "400000"]
    cmd += ["--no-progress", "--retry-budget", "1", "--storage-options", options]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert re.match(
        rf"dataio pack: error: s3://{bucket}/ds/shards/shard-00000\.dio \(upload of \d+ bytes\): giving up after "
        r"\d+ attempts in 1\.\d s; last error: .*run the same command again .*--retry-budget SECONDS",
        lines[0],
    ), lines[0]
    assert CREDENTIALS[1] not in done.stderr and CREDENTIALS[1] not in done.stdout
    assert px.counters.resets >= 2, px.counters
