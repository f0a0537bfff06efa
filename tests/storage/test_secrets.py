"""Credentials never in errors: not in the message, nor anywhere in the exception chain (issue 19 item 14)."""

from __future__ import annotations

import subprocess
import sys
import traceback

import pytest

from dataio.storage import RetryPolicy, StorageError, open_store
from dataio.storage.secrets import scrub_chain, secrets_of
from tests.storage.conftest import CREDENTIALS
from tests.storage.seaweed import SeaweedServer, free_ports

PASSWORD = "hunter2-endpoint-pw"
SECRET = "s3cr3t-option-value"


def _everything_printable(exc: BaseException) -> str:
    """The formatted traceback plus repr, str, args, notes and attributes of every exception in the chain."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        parts += [
            repr(e),
            str(e),
            repr(e.args),
            repr(getattr(e, "__notes__", None)),
            repr(getattr(e, "__dict__", None)),
        ]
        todo += [e.__cause__, e.__context__]
    return "\n".join(parts)


@pytest.mark.parametrize("client", ["obstore", "fsspec"])
def test_endpoint_userinfo_is_scrubbed_from_the_whole_chain(client: str) -> None:
    (port,) = free_ports(1)  # nothing listens there: connection refused
    options = {
        "key": "AKIDEXAMPLE",
        "secret": SECRET,
        "client_kwargs": {"endpoint_url": f"http://user:{PASSWORD}@127.0.0.1:{port}", "region_name": "us-east-1"},
        "client": client,
    }
    store = open_store("s3://bkt/ds", options, retry=RetryPolicy(max_attempts=2, base_delay=0.01, budget=5))
    with pytest.raises(StorageError) as info:
        store.read_range("manifest.json", 0, 10)
    assert "s3://bkt/ds/manifest.json" in str(info.value)
    dump = _everything_printable(info.value)
    assert PASSWORD not in dump and SECRET not in dump
    store.close()


def test_scrub_chain_reaches_cause_context_args_notes_and_attributes() -> None:
    secrets = secrets_of({"token": "tok-123456", "client_kwargs": {"endpoint_url": "http://u:pw-98765@h:1"}})
    assert set(secrets) >= {"tok-123456", "pw-98765", "u:pw-98765"} and "u" not in secrets
    inner = OSError(5, "connect to http://u:pw-98765@h:1 failed", "tok-123456")
    inner.kwargs = {"endpoint_url": "http://u:pw-98765@h:1"}  # type: ignore[attr-defined]  # botocore style
    middle = ValueError("token tok-123456")
    middle.__context__ = inner
    outer = RuntimeError("outer", ("nested", "pw-98765"))
    outer.add_note("note with tok-123456")
    outer.__cause__ = middle
    scrub_chain(outer, secrets)
    dump = _everything_printable(outer)
    assert "tok-123456" not in dump and "pw-98765" not in dump
    assert "connect to http://***@h:1 failed" in str(inner)


def test_botocore_debug_log_carries_no_credentials(seaweed: SeaweedServer, bucket: str) -> None:
    """A real DEBUG capture of the s3fs path in a fresh process (botocore's loggers made as usual): the access
    key id, secret and session token of the store appear in no record."""
    code = f"""
import io, logging, sys
buf = io.StringIO()
logging.basicConfig(level=logging.DEBUG, handlers=[logging.StreamHandler(buf)])
from dataio.storage import RetryPolicy, open_store
options = {{"key": {CREDENTIALS[0]!r}, "secret": {CREDENTIALS[1]!r}, "token": "session-token-value-42",
           "client_kwargs": {{"endpoint_url": {seaweed.endpoint!r}, "region_name": "us-east-1"}}, "client": "fsspec"}}
store = open_store("s3://{bucket}/ds", options, retry=RetryPolicy(max_attempts=1))
try:
    store.read_range("manifest.json", 0, 10)
except Exception:
    pass
out = buf.getvalue()
print("records", out.count("DEBUG:"))
print("sent", "Sending http request" in out)
for s in options["key"], options["secret"], options["token"]:
    print("leak" if s in out else "clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.split()
    assert "sent" in out.stdout and "True" in lines, out.stdout + out.stderr
    assert lines.count("clean") == 3, out.stdout + out.stderr
