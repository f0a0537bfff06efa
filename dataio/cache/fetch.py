"""One shard into the cache: download into the reserved temp file, verify size and sha256, rename into place.

The caller holds the shard's download lock (so each shard is downloaded once per node) and a reservation
(:mod:`dataio.cache.room`). A shard becomes visible under its final name only by ``os.replace`` after its
sha256 matched the manifest, so no reader ever sees a torn or wrong shard, and a killed download leaves only
a temp file that the next scan deletes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading

from dataio.cache.fds import REGISTRY
from dataio.cache.layout import CacheLayout
from dataio.cache.room import Reservation
from dataio.cache.safedir import unlink_at
from dataio.cache.space import remove_unsafe
from dataio.cache.spec import ShardSpec
from dataio.errors import ChecksumError, ClosedError
from dataio.storage.base import Store

__all__ = ["Cancelled", "download"]


class Cancelled(ClosedError):
    """The cached store was closed (a read, a wait or a download in progress was cancelled); a
    :class:`~dataio.errors.ClosedError` (so a ``RuntimeError``) naming the dataset."""


def download(
    remote: Store,
    spec: ShardSpec,
    res: Reservation,
    layout: CacheLayout,
    *,
    chunk_size: int,
    fsync: bool,
    stop: threading.Event | None = None,
) -> None:
    """Copies the shard into the reserved temp file, checks size and sha256, renames it into place.

    Always closes the temp file; deletes it unless it was renamed.

    Raises:
        ChecksumError: the downloaded bytes do not match the manifest's sha256 (names the shard and URL).
        Cancelled: ``stop`` was set.
        StorageError: the remote read failed.
    """
    final = layout.data_path(spec.name)
    renamed = False
    try:
        digest = hashlib.sha256()
        offset = 0
        while offset < spec.size:
            if stop is not None and stop.is_set():
                raise Cancelled(f"download of {spec.path} cancelled")
            data = remote.read_range(spec.path, offset, min(chunk_size, spec.size - offset))
            view = memoryview(data)
            while view:
                written = os.pwrite(res.fd, view, offset)
                offset += written
                view = view[written:]
            digest.update(data)
        actual = digest.hexdigest()
        if actual != spec.sha256:
            raise ChecksumError(
                f"{remote.url(spec.path)}: shard {spec.path} downloaded into the cache has sha256 {actual}, "
                f"the manifest says {spec.sha256}; not cached",
                shard=spec.path,
            )
        if fsync:
            os.fsync(res.fd)
        remove_unsafe(layout, spec.name)  # a symlinked sub-folder of data/ is removed (the link only)
        folders, leaf = layout.parent_of(final)
        with layout.folder("tmp") as src, layout.folder(*folders, create=True) as dst:
            os.rename(os.path.basename(res.tmp), leaf, src_dir_fd=src, dst_dir_fd=dst)  # never through a link
        renamed = True
    finally:
        REGISTRY.close(res.fd)
        if not renamed:
            with contextlib.suppress(OSError), layout.folder("tmp") as src:
                unlink_at(src, os.path.basename(res.tmp))
