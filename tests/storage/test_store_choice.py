"""Which client serves a URL is decided when the store is made, once per process, and travels with a pickled
copy (issue 20 item 5)."""

from __future__ import annotations

import pickle

import pytest

from dataio.storage import FsspecStore, open_store

obstore = pytest.importorskip("obstore")

from dataio.storage.obstore_store import ObstoreStore  # noqa: E402

OPTIONS = {"endpoint_url": "http://127.0.0.1:9", "anon": True}  # never contacted: no request is made


def test_client_reason_is_given_at_construction_and_kept_by_a_pickled_copy() -> None:
    store = ObstoreStore("s3://bucket/prefix", OPTIONS, client_reason="chosen by the test")
    assert (store.client, store.client_reason) == ("obstore", "chosen by the test")
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.client, copy.client_reason) == ("obstore", "chosen by the test")
    fs = FsspecStore("memory://bucket/x", client_reason="because")
    assert pickle.loads(pickle.dumps(fs)).client_reason == "because"


def test_open_store_says_why_each_client_serves() -> None:
    auto = open_store("s3://bucket/prefix", OPTIONS)
    assert auto.client == "obstore" and auto.client_reason
    forced = open_store("s3://bucket/prefix", {**OPTIONS, "client": "fsspec"})
    assert forced.client == "fsspec" and "fsspec" in forced.client_reason
    assert not hasattr(type(auto), "client_reason") or isinstance(type(auto).client_reason, property)


def test_errors_are_translated_by_type() -> None:
    from obstore.exceptions import GenericError, InvalidPathError, NotFoundError

    from dataio.storage.obstore_errors import translate_error

    assert isinstance(translate_error(NotFoundError("status code: 503 but not found")), FileNotFoundError)
    other = translate_error(InvalidPathError("bad path (status code: 503 in the text)"))
    assert type(other) is OSError and "InvalidPathError" in str(other)  # a 503 in the text of a non-HTTP error
    assert isinstance(translate_error(GenericError("error sending request for url")), ConnectionError)
