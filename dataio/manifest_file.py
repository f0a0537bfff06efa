"""``manifest.json`` read from a store: its size bounded before it is read, then parsed and its seal checked."""

from __future__ import annotations

from dataio.errors import ManifestError
from dataio.format import manifest as manifest_format
from dataio.format.manifest import MANIFEST_NAME, Manifest
from dataio.storage import Store

__all__ = ["load_manifest"]


def load_manifest(store: Store) -> Manifest:
    """Reads and validates ``manifest.json`` of the dataset in ``store`` (its size is checked before it is read)."""
    try:
        data = store.read_limited(MANIFEST_NAME, manifest_format.MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{store.url(MANIFEST_NAME)}: no manifest; not a dataio dataset, or its pack has not finished"
        ) from None
    if data is None:
        raise ManifestError(
            f"{store.url(MANIFEST_NAME)}: more than {manifest_format.MAX_MANIFEST_BYTES} bytes, more than a manifest "
            "may hold; not a dataio manifest, or a damaged one"
        )
    return Manifest.loads(data, store.url(MANIFEST_NAME))
