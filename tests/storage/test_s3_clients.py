"""The s3:// client choice (obstore by default, s3fs as fallback or on request), obstore's option translation and
error mapping, its behaviour across fork and pickling, and what the reader and loader report about the client.

The reader suite, the fault, reset and outage tests and pack-to-URL run against both clients elsewhere
(``s3_any``, ``s3fs_dataset``); here are the parts that exist only because there are two.
"""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import dataio
from dataio.loaders.stats import verdict
from dataio.storage import FsspecStore, ObstoreStore, StorageError, open_store
from dataio.storage.obstore_store import ServerError, translate_error
from dataio.storage.retry import is_transient
from dataio.storage.s3_client import choose_client, obstore_settings
from tests.storage.conftest import CREDENTIALS, RemoteDataset

obstore = pytest.importorskip("obstore")

ROOT = Path(__file__).resolve().parents[2]


# -- choosing the client ---------------------------------------------------------------------------------------


def test_s3_urls_default_to_obstore_and_other_protocols_to_fsspec() -> None:
    assert choose_client("s3", {"key": "k", "secret": "s"}) == ("obstore", "obstore is installed")
    assert choose_client("s3a", {})[0] == "obstore"
    assert choose_client("oss", {})[0] == "fsspec"
    assert choose_client("memory", {})[0] == "fsspec"
    assert isinstance(open_store("memory://bucket/x"), FsspecStore)


def test_the_client_option_forces_either_client() -> None:
    assert choose_client("s3", {"client": "fsspec"}) == ("fsspec", "asked for (client='fsspec')")
    assert choose_client("s3", {"client": "obstore"})[0] == "obstore"
    with pytest.raises(ValueError, match="must be one of"):
        choose_client("s3", {"client": "boto"})
    with pytest.raises(ValueError, match="serves s3:// only"):
        choose_client("oss", {"client": "obstore"})


def test_an_option_obstore_cannot_express_falls_back_to_s3fs_naming_the_option_not_its_value() -> None:
    client, reason = choose_client("s3", {"profile": "secret-profile-name"})
    assert client == "fsspec" and "profile" in reason and "secret-profile-name" not in reason
    client, reason = choose_client("s3", {"client_kwargs": {"verify": "/etc/ca.pem"}})
    assert client == "fsspec" and "client_kwargs.verify" in reason
    with pytest.raises(ValueError, match="profile") as info:
        choose_client("s3", {"client": "obstore", "profile": "secret-profile-name"})
    assert "secret-profile-name" not in str(info.value)


def test_an_aws_profile_in_the_environment_selects_s3fs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "training")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    assert choose_client("s3", {})[0] == "fsspec"  # only botocore reads ~/.aws profiles
    assert choose_client("s3", {"key": "k", "secret": "s"})[0] == "obstore"  # explicit keys need no profile


def test_without_obstore_s3_goes_through_s3fs() -> None:
    code = """
import sys
sys.modules["obstore"] = None  # as if it were not installed
from dataio.storage import open_store
store = open_store("s3://bucket/ds", {"anon": True})
print(type(store).__name__, store.client, "|", store.client_reason)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.stdout.strip() == "FsspecStore fsspec | obstore is not installed (pip install 'dataio[s3]')", out.stderr


def test_s3fs_options_translate_to_obstore_settings() -> None:
    settings = obstore_settings(
        {
            "key": "AKID",
            "secret": "s3cr3t",
            "token": "tok",
            "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"},
            "config_kwargs": {
                "connect_timeout": 3,
                "read_timeout": 7,
                "retries": {"max_attempts": 1},
                "s3": {"addressing_style": "virtual"},
            },
            "skip_instance_cache": True,
            "obstore": {"checksum_algorithm": "sha256"},
        }
    )
    assert settings.config == {
        "access_key_id": "AKID",
        "secret_access_key": "s3cr3t",
        "session_token": "tok",
        "endpoint": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "virtual_hosted_style_request": True,
        "checksum_algorithm": "sha256",
    }
    assert settings.client_options["allow_http"] is True
    assert settings.client_options["connect_timeout"] == "3.0s" and settings.client_options["read_timeout"] == "7.0s"
    assert "s3cr3t" not in repr(settings) and "AKID" not in repr(settings)
    assert obstore_settings({"anon": True}).config == {"skip_signature": True}


# -- obstore's errors as the retry policy sees them --------------------------------------------------------------


def test_obstore_errors_are_classified_and_scrubbed() -> None:
    from obstore.exceptions import GenericError, NotFoundError, PermissionDeniedError

    def generic(text: str) -> BaseException:
        return translate_error(GenericError(text), secrets=("TOPSECRET",))

    slow = generic(
        "Generic S3 error: GET http://h/b/k - Server returned non-2xx status code: 503 Service "
        'Unavailable: <?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Reduce your rate'
        "</Message></Error>\n\nDebug source:\n{ headers TOPSECRET }"
    )
    assert isinstance(slow, ServerError) and slow.status == 503 and is_transient(slow)
    assert "(SlowDown: Reduce your rate)" in str(slow) and "Debug source" not in str(slow)
    bad_range = generic("Generic S3 error: Server returned non-2xx status code: 416 Range Not Satisfiable")
    assert isinstance(bad_range, ServerError) and not is_transient(bad_range)
    reset = generic("Generic S3 error: HTTP error: request or response body error\n\nDebug source:\n  kind: Body,")
    assert isinstance(reset, ConnectionError) and is_transient(reset)
    timeout = generic("Generic S3 error: GET in 3s - HTTP error: error sending request\n\n  kind: Timeout,")
    assert isinstance(timeout, TimeoutError) and is_transient(timeout)
    leaked = generic("Generic S3 error: signature TOPSECRET rejected")
    assert "TOPSECRET" not in str(leaked) and not is_transient(leaked)
    assert isinstance(translate_error(NotFoundError("Object at location k not found")), FileNotFoundError)
    assert isinstance(translate_error(PermissionDeniedError("lacked privileges")), PermissionError)


# -- the default client against a real server ---------------------------------------------------------------------


def test_open_dataset_on_s3_uses_obstore_by_default(s3_dataset: RemoteDataset, local_records: list[bytes]) -> None:
    with dataio.open_dataset(s3_dataset.url, storage_options=s3_dataset.options, threads=8) as ds:
        assert isinstance(ds.store, ObstoreStore) and ds.store.client == "obstore"
        assert list(ds.read_records(range(len(ds)))) == local_records
        stats = ds.reader.stats()
    assert stats["client"] == "obstore" and stats["in_flight"] == 0
    assert 1.0 <= stats["in_flight_mean"] <= 8.0
    assert stats["fetches"] < stats["requests"] or stats["fetches"] == stats["requests"]
    assert 0.0 < stats["client_cpu_share"] <= 1.0
    assert stats["client_threads_cpu_s"] >= 0.0 and stats["client_call_cpu_s"] > 0.0
    with dataio.open_dataset(s3_dataset.url, storage_options={**s3_dataset.options, "client": "fsspec"}) as ds:
        assert isinstance(ds.store, FsspecStore) and ds.reader.stats()["client"] == "fsspec"


def test_credentials_never_in_logs_errors_or_reprs(s3_dataset: RemoteDataset, caplog: pytest.LogCaptureFixture) -> None:
    options = {**s3_dataset.options, "secret": "wrong-" + CREDENTIALS[1]}
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PermissionError) as info:
        dataio.open_dataset(s3_dataset.url, storage_options=options)
    store = open_store(s3_dataset.url, options)
    seen = [str(info.value), repr(info.value), repr(info.value.__cause__), repr(store), str(store), caplog.text]
    for secret in (CREDENTIALS[1], "wrong-" + CREDENTIALS[1]):
        assert not any(secret in text for text in seen)
    assert isinstance(info.value, StorageError) and "403 Forbidden" in str(info.value)


def _run(code: str, *args: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_a_child_forked_after_obstore_ran_reads_through_s3fs(s3_dataset: RemoteDataset) -> None:
    """tokio's runtime does not survive fork(): a forked child would hang on its first request (it did, in torch
    DataLoader workers). The store notices and serves the child through s3fs, with a warning."""
    out = _run(
        """
        import json, os, sys
        import dataio
        ds = dataio.open_dataset(sys.argv[1], storage_options=json.loads(sys.argv[2]))
        first = ds.read_record(0)
        pid = os.fork()
        if pid == 0:
            ok = ds.read_record(0) == first and ds.read_record(len(ds) - 1)
            print("child", ds.store.client, bool(ok), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", ds.store.client, ds.read_record(0) == first)
        """,
        s3_dataset.url,
        json.dumps(s3_dataset.options),
    )
    assert "child fsspec True" in out.stdout and "parent obstore True" in out.stdout, out.stderr
    assert "forked after obstore started its tokio runtime" in out.stderr


def test_a_pickled_copy_uses_obstore(s3_dataset: RemoteDataset, local_records: list[bytes]) -> None:
    """Spawn and forkserver workers get a pickled dataset: a fresh process, so obstore serves it."""
    ds = dataio.open_dataset(s3_dataset.url, storage_options=s3_dataset.options)
    blob = pickle.dumps(ds)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; ds = pickle.loads(sys.stdin.buffer.read()); "
            "sys.stdout.buffer.write(ds.store.client.encode() + b' ' + ds.read_record(3))",
        ],
        input=blob,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.stdout == b"obstore " + local_records[3], proc.stderr.decode()
    ds.close()


# -- the loader's verdict ----------------------------------------------------------------------------------------


def _summary(share: float) -> dict[str, Any]:
    return {
        "consumer_wait_pct": 60.0,
        "stages": {"read": {"busy_pct": 90.0}, "decode": {"busy_pct": 30.0}},
        "io": {"client": "fsspec", "client_cpu_share": share, "in_flight_mean": 7.6, "threads": 8},
    }


def test_verdict_says_client_bound_when_the_client_eats_the_cpu() -> None:
    text = verdict(_summary(0.7))
    assert text.startswith("client-bound: the storage client (fsspec) used 70% of this process's CPU")
    assert "7.6 reads in flight on average (of 8)" in text and "obstore" in text
    other = verdict(_summary(0.1))
    assert other.startswith("io-bound") and "7.6 reads in flight on average (of 8)" in other


def test_loader_stats_report_the_client_and_reads_in_flight(s3_dataset: RemoteDataset) -> None:
    ds = dataio.open_dataset(s3_dataset.url, storage_options=s3_dataset.options, threads=4)
    loader = dataio.DataLoader(ds, batch_size=8, num_workers=1, pipeline=dataio.ImagePipeline(train=False, size=16))
    for _ in loader:
        pass
    stats = loader.stats()
    assert stats["io"]["client"] == "obstore" and stats["io"]["requests"] >= len(ds)
    assert "in_flight_mean" in stats["io"] and "client_cpu_share" in stats["io"]
    assert stats["verdict"].split(":")[0] in ("io-bound", "client-bound", "decode-bound", "consumer-bound")
    ds.close()


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
def test_an_oversized_remote_manifest_is_refused_before_it_is_downloaded(
    seaweed: Any, bucket: str, proxy: Any, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    from dataio.errors import ManifestError
    from dataio.format import manifest

    limit = 4096
    monkeypatch.setattr(manifest, "MAX_MANIFEST_BYTES", limit)
    options = {**seaweed.s3_storage_options(), "client": client}
    open_store(f"s3://{bucket}/ds", options).write_bytes("manifest.json", b"{" + b" " * (1 << 20) + b"}")
    px = proxy(seaweed)
    with pytest.raises(ManifestError, match=r"manifest\.json: more than 4096 bytes"):
        dataio.open_dataset(f"s3://{bucket}/ds", storage_options={**options, **seaweed.s3_storage_options(
            endpoint=px.endpoint)})
    assert px.counters.bytes_down < limit + 8192, px.counters  # headers and one bounded body at most
