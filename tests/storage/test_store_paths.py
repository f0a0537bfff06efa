"""A path that could leave a store's root is a storage error (``UnsafePathError``: a ``StorageError`` and a
``ValueError``), not a manifest error, on every backend (issue 20 item 5)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dataio.errors import ManifestError
from dataio.storage import FsspecStore, LocalStore, StorageError
from dataio.storage.base import UnsafePathError


def _stores(tmp_path: Path) -> list[object]:
    stores: list[object] = [LocalStore(tmp_path), FsspecStore("memory://bucket/root")]
    if importlib.util.find_spec("obstore") is not None:
        from dataio.storage.obstore_store import ObstoreStore

        stores.append(ObstoreStore("s3://bucket/root", {"endpoint_url": "http://127.0.0.1:9", "anon": True}))
    return stores


@pytest.mark.parametrize("path", ["../outside", "/etc/passwd", "a/../../b", "s3://other/x", "a\\b", ""])
def test_unsafe_paths_are_storage_errors_on_every_backend(tmp_path: Path, path: str) -> None:
    for store in _stores(tmp_path):
        with pytest.raises(UnsafePathError) as err:
            store.read(path)  # type: ignore[attr-defined]
        assert isinstance(err.value, StorageError) and isinstance(err.value, ValueError)
        assert not isinstance(err.value, ManifestError), type(store).__name__
