"""What ``pack`` owns in its output directory, the check that refuses anything else there, and the tidy-up.

Pack writes exactly these names under its output (a directory or a URL prefix)::

    manifest.json  index.parquet          the committed dataset
    shards/shard-<N>.dio                  the shards
    .dataio-pack/shard-<N>.dio.json       progress records of finished shards (resume)
    .<any of those names>.tmp-<pid>-<hex8>  temp files of an atomic local write (a killed pack leaves them)

Every other file or folder there is *foreign*: pack refuses such an output unless ``overwrite`` is given, and
even then it never deletes one (:func:`tidy` deletes only stale shards of an earlier plan and temp files, both by
the names above). Uploads to a URL are staged in the local temp directory (:mod:`dataio.storage.staging`), never
under the output.
"""

from __future__ import annotations

import os
import re

from dataio.errors import PackError
from dataio.format.manifest import MANIFEST_NAME
from dataio.pack.worker import PROGRESS_DIR
from dataio.storage import LocalStore, Store

__all__ = ["INDEX_NAME", "SHARDS_DIR", "check_no_foreign_files", "foreign_files", "tidy"]

INDEX_NAME = "index.parquet"
SHARDS_DIR = "shards"
_SHOWN = 5
_SHARD = r"shard-\d+\.dio"
_OWNED = {
    "": re.compile(rf"^(?:{re.escape(MANIFEST_NAME)}|{re.escape(INDEX_NAME)})$"),
    SHARDS_DIR: re.compile(rf"^{_SHARD}$"),
    PROGRESS_DIR: re.compile(rf"^{_SHARD}\.json$"),
}
_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-\d+-[0-9a-f]{8}$")


def _is_temp(folder: str, name: str) -> bool:
    m = _TEMP.match(name)
    return m is not None and _OWNED[folder].match(m.group("name")) is not None


def _owned(folder: str, name: str) -> bool:
    return _OWNED[folder].match(name) is not None or _is_temp(folder, name)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _local_foreign(root: str) -> list[str]:
    """Foreign entries of a local output: files, folders (shown with a trailing ``/``), links, anything."""
    foreign: list[str] = []
    for folder in _OWNED:
        path = os.path.join(root, folder) if folder else root
        if folder and (os.path.islink(path) or not os.path.isdir(path)):
            continue  # a non-directory "shards" is reported as an entry of the root
        with os.scandir(path) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                rel = _join(folder, e.name)
                if not folder and e.name in _OWNED and e.is_dir(follow_symlinks=False):
                    continue
                if e.is_file(follow_symlinks=False) and _owned(folder, e.name):
                    continue
                foreign.append(rel + ("/" if e.is_dir(follow_symlinks=False) else ""))
    return foreign


def foreign_files(store: Store) -> list[str]:
    """Paths (relative to the output) that pack did not create, sorted.

    A local output is scanned whole (files, folders, links). A URL prefix is listed at its top level and in
    ``shards/`` and ``.dataio-pack/``: objects, and sub-prefixes (shown with a trailing ``/``) other than those two.
    """
    if isinstance(store, LocalStore):
        root = os.path.expanduser(store.root.removeprefix("file://"))
        return _local_foreign(root) if os.path.isdir(root) else []
    files = [p for folder in _OWNED for p in store.list(folder) if not _owned(folder, p.rsplit("/", 1)[-1])]
    folders = [f"{p}/" for folder in _OWNED for p in store.list_folders(folder) if folder or p not in _OWNED]
    return sorted(files + folders)


def check_no_foreign_files(store: Store) -> None:
    """Raises :class:`PackError` naming the output and a few of its foreign files, if it holds any."""
    foreign = foreign_files(store)
    if not foreign:
        return
    shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
    raise PackError(
        f"output {store.root}: holds {len(foreign)} file(s) or folder(s) that dataio pack did not create ({shown}); "
        "pack into an empty or new directory, or pass --overwrite (pack(..., overwrite=True)) to pack beside "
        "them (pack never deletes them)"
    )


def tidy(store: Store, keep: set[str]) -> None:
    """Deletes temp files of killed packs (local outputs) and shards of an earlier, different plan; nothing else."""
    local = isinstance(store, LocalStore)
    for folder in _OWNED:
        for path in store.list(folder):
            name = path.rsplit("/", 1)[-1]
            stale_shard = folder == SHARDS_DIR and _OWNED[folder].match(name) is not None and path not in keep
            if stale_shard or (local and _is_temp(folder, name)):
                store.delete(path)
