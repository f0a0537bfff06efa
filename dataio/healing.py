"""A record that fails its CRC: final for a plain store; from the node cache, the cached copy is healed.

A corrupt record served from the node cache (the node's disk rotted a verified copy) makes the cache drop that
shard's copy and download it again (sha256-verified) once; the record is read again from the fresh copy. If
that fails too, the remote shard itself is wrong, and the error names both copies.
"""

from __future__ import annotations

import logging

from dataio.errors import ChecksumError
from dataio.format.shard import check_record
from dataio.gate import ReadGate
from dataio.storage import Store

__all__ = ["checked_record"]

log = logging.getLogger("dataio.dataset")


def checked_record(
    store: Store, gate: ReadGate, data: bytes, path: str, pos: int, offset: int, length: int, crc: int
) -> bytes:
    """``data`` (record ``pos`` of shard ``path``, at ``offset``) if it passes its CRC, else the healed record.

    The cache's invalidation and the second read run inside ``gate`` (the dataset's reads in flight).

    Raises:
        ChecksumError: The record is corrupt (and, with a cache, the fresh download too).
    """
    try:
        check_record(data, crc, path, pos, offset)
        return data
    except ChecksumError as exc:
        invalidate = getattr(store, "invalidate", None)
        if invalidate is None:
            raise
        with gate.reading():
            cached = invalidate(path)
            log.warning(
                "corrupt record %d of %s in the node cache (%s): copy dropped, downloading it again", pos, path, cached
            )
            data = store.read_range(path, offset, length)
        try:
            check_record(data, crc, path, pos, offset)
        except ChecksumError as again:
            raise ChecksumError(
                f"{again} (the cached copy {cached} was corrupt too, and was deleted; the shard downloaded again "
                f"matches the manifest's sha256, so the remote shard's record index or data is wrong: run "
                f"`dataio verify` on the dataset)",
                shard=path,
                position=pos,
            ) from exc
        return data
