"""What ``pack`` owns in its output directory, the check that refuses anything else there, and the tidy-up.

Pack writes exactly these names under its output (a directory or a URL prefix)::

    manifest.json  index.parquet            the committed dataset
    shards/shard-<N>.dio                    the shards
    .dataio-pack/shard-<N>.dio.json         progress records of shards (resume), written before the shard
    .dataio-pack/index.parquet.json         record of the index, written before it
    .dataio-pack/temps-<pid>-<hex8>.log     journal of one process's temp files (local outputs)
    .<any of those names>.tmp-<pid>-<hex8>  temp files of an atomic local write (a killed pack leaves them)

A name alone proves nothing: pack counts a file as its own only when one of its records names it
(:mod:`dataio.pack.ledger`); every other file or folder there is *foreign*. Pack refuses an output with foreign
files unless ``overwrite`` is given, and even then never deletes or replaces one (it leaves them alone and logs
them). :func:`tidy` deletes only files a record names with the size they have now: shards of an earlier plan,
journaled temp files, the index of an unfinished pack. A local output's ``shards/`` and ``.dataio-pack/`` must
be real directories: a symlink there is refused, never followed (:mod:`dataio.pack.owned_dir`). Uploads to a URL
are staged in the local temp directory (:mod:`dataio.storage.staging`), never under the output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from dataio.errors import PackError
from dataio.format.manifest import MANIFEST_NAME
from dataio.pack.ledger import (
    INDEX_NAME,
    INDEX_RECORD,
    SHARD_NAME,
    SHARDS_DIR,
    Ledger,
    is_journal,
    journal_temps,
    record_path,
)
from dataio.pack.owned_dir import PROGRESS_DIR, OwnedDir, open_folder
from dataio.pack.plan import ShardJob
from dataio.storage import LocalStore, Store

__all__ = [
    "INDEX_NAME",
    "SHARDS_DIR",
    "Writer",
    "check_folders",
    "check_no_foreign_files",
    "finish",
    "foreign_files",
    "local_root",
    "tidy",
    "writer_for",
]

log = logging.getLogger("dataio.pack")
Writer = Store | OwnedDir  # what pack writes and deletes through: the store (URLs) or an OwnedDir (local)
_SHOWN = 5
_FOLDERS = ("", SHARDS_DIR, PROGRESS_DIR)


def _shown(paths: list[str]) -> str:
    return ", ".join(paths[:_SHOWN]) + (f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else "")


def local_root(store: Store) -> Path | None:
    """The directory of a local output (``None`` for a URL)."""
    return Path(store.root.removeprefix("file://")).expanduser() if isinstance(store, LocalStore) else None


def writer_for(store: Store) -> Writer:
    """What pack writes through: an :class:`OwnedDir` for a local output (no links followed), else the store."""
    return OwnedDir(store.root) if isinstance(store, LocalStore) else store


def check_folders(store: Store) -> None:
    """Raises :class:`PackError` naming ``shards`` or ``.dataio-pack`` of a local output if it is a symlink or not
    a directory (with or without ``overwrite``: pack never writes through a link inside its output)."""
    root = local_root(store)
    if root is None or not root.is_dir():
        return
    for folder in (SHARDS_DIR, PROGRESS_DIR):
        fd = open_folder(root, folder, create=False)
        if fd is not None:
            os.close(fd)


def _local_foreign(root: Path, ledger: Ledger) -> list[str]:
    """Foreign entries of a local output: files, folders (shown with a trailing ``/``), links, anything."""
    foreign: list[str] = []
    for folder in _FOLDERS:
        path = root / folder if folder else root
        if folder and not path.is_dir():
            continue
        with os.scandir(path) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                rel = f"{folder}/{e.name}" if folder else e.name
                is_dir = e.is_dir(follow_symlinks=False)
                ours = e.is_file(follow_symlinks=False) and ledger.listed(rel)
                if ours or (not folder and e.name in _FOLDERS and is_dir):
                    continue
                foreign.append(rel + ("/" if is_dir else ""))
    return foreign


def foreign_files(store: Store, ledger: Ledger) -> list[str]:
    """Paths (relative to the output) that no record of pack's names, sorted.

    A local output is scanned whole (files, folders, links). A URL prefix is listed at its top level and in
    ``shards/`` and ``.dataio-pack/``: objects, and sub-prefixes (shown with a trailing ``/``) other than those two.
    """
    root = local_root(store)
    if root is not None:
        return _local_foreign(root, ledger) if root.is_dir() else []
    files = [p for folder in _FOLDERS for p in store.list(folder) if not ledger.listed(p)]
    folders = [f"{p}/" for folder in _FOLDERS for p in store.list_folders(folder) if folder or p not in _FOLDERS]
    return sorted(files + folders)


def check_no_foreign_files(store: Store, ledger: Ledger, overwrite: bool) -> list[str]:
    """Raises :class:`PackError` naming the output and a few of its foreign files, if it holds any (without
    ``overwrite``); with ``overwrite`` logs them (they are left alone) and returns them."""
    foreign = foreign_files(store, ledger)
    if foreign and not overwrite:
        raise PackError(
            f"output {store.root}: holds {len(foreign)} file(s) or folder(s) that dataio pack did not create "
            f"({_shown(foreign)}); pack into an empty or new directory, or pass --overwrite (pack(..., "
            "overwrite=True)) to pack beside them (pack never deletes them)"
        )
    if foreign:
        log.warning(
            "output %s: leaving alone %d file(s) or folder(s) dataio pack did not create: %s",
            store.root,
            len(foreign),
            _shown(foreign),
        )
    return foreign


def _present(store: Store, path: str) -> bool:
    """Whether the entry ``path`` exists; locally also a dangling link (which ``exists`` does not see)."""
    return os.path.lexists(store.url(path)) if isinstance(store, LocalStore) else store.exists(path)


def _regular(store: Store, path: str) -> bool:
    """Whether the local entry ``path`` is a regular file (not a link, folder or anything else)."""
    with contextlib.suppress(OSError):
        return stat.S_ISREG(os.lstat(store.url(path)).st_mode)
    return False


def tidy(store: Store, writer: Writer, ledger: Ledger, jobs: list[ShardJob], keep_index: bool) -> None:
    """Before the shards are written: deletes what pack can prove it wrote and will not reuse — shards of an
    earlier plan (and their records), journaled temp files, the index unless ``keep_index`` — and nothing else.

    Raises:
        PackError: before deleting anything, naming the files at names this plan must write that pack did not
            write (no record names them with their size): pack neither replaces them nor can pack around them.
    """
    planned = {j.path: j.plan_hash for j in jobs}
    local = isinstance(store, LocalStore)
    deletes: list[str] = []
    conflicts = [p for p in (MANIFEST_NAME, INDEX_RECORD) if _present(store, p) and p not in ledger.meta]
    shards = {p for p in store.list(SHARDS_DIR) if SHARD_NAME.match(p.rsplit("/", 1)[-1])}
    shards |= {p for p in planned if local and _present(store, p)}  # a listing skips dangling links
    for path in sorted(shards):
        owned, record = ledger.owns(store, path), ledger.records.get(path)
        if path in planned and not owned:
            conflicts.append(path)
        elif owned and (path not in planned or record is None or record["plan_hash"] != planned[path]):
            deletes.append(path)  # rewritten or stale: gone before the new record is written, so no crash strands it
        elif not owned:
            log.warning("%s: not deleted; no record of dataio pack names it with its size", store.url(path))
    for shard in ledger.records:
        if shard not in planned and (shard in deletes or not _present(store, shard)):
            deletes.append(record_path(shard))
    records = set(store.list(PROGRESS_DIR))  # one listing, not a request per record, for a URL
    conflicts += [
        rp
        for j in jobs
        if ((rp := record_path(j.path)) in records or (local and _present(store, rp))) and rp not in ledger.meta
    ]
    if _present(store, INDEX_NAME):
        if not ledger.owns(store, INDEX_NAME):
            conflicts.append(INDEX_NAME)
        elif not keep_index:
            deletes.append(INDEX_NAME)
    if conflicts:
        raise PackError(
            f"output {store.root}: dataio pack must write {_shown(conflicts)} but did not write the file(s) there "
            "now (no record of its own names them with their size), so it neither replaces nor deletes them: move "
            "them out of the output, or pack into a new directory"
        )
    for path in sorted(ledger.temps):
        if _regular(store, path):
            writer.delete(path)
        elif _present(store, path):
            log.warning("%s: not deleted; a journal of dataio pack names it, but it is no regular file", path)
    for path in deletes + ledger.journals:
        writer.delete(path)


def finish(store: Store, writer: Writer) -> None:
    """After a pack: closes this process's journal and deletes every journal whose temp files are all gone."""
    if not isinstance(writer, OwnedDir):
        return
    writer.close()
    for path in store.list(PROGRESS_DIR):
        if is_journal(path):
            temps = journal_temps(store, path)
            with contextlib.suppress(OSError):
                if temps is not None and not any(os.path.lexists(store.url(t)) for t in temps):
                    writer.delete(path)
