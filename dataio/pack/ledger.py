"""What pack can prove it wrote in an output, read once before it deletes or replaces anything there.

Pack vouches for its files with records, each written *before* the file it vouches for (so a crash between
the two leaves a record without its file, never a file without a record)::

    manifest.json                          every shard's path, size and sha256, and the index's sha256
    .dataio-pack/shard-<N>.dio.json        progress record of a shard: plan hash, the shard's size and sha256
    .dataio-pack/index.parquet.json        the index's size and sha256
    .dataio-pack/temps-<pid>-<hex8>.log    the temp files one process created (local outputs, see owned_dir)

A record (or manifest, or journal) is pack's when it parses as one. A shard or the index is pack's when a record
names it *with the size it has now*; a temp file when a journal names it. A file that merely carries one of
pack's names is not: it is foreign, and pack never deletes or replaces it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from dataio.errors import DataioError
from dataio.format.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest
from dataio.pack.owned_dir import JOURNAL_PREFIX, PROGRESS_DIR
from dataio.storage import Store

__all__ = [
    "INDEX_NAME",
    "INDEX_RECORD",
    "SHARDS_DIR",
    "SHARD_NAME",
    "Ledger",
    "is_journal",
    "journal_temps",
    "read_ledger",
    "record_path",
]

INDEX_NAME = "index.parquet"
SHARDS_DIR = "shards"
INDEX_RECORD = f"{PROGRESS_DIR}/{INDEX_NAME}.json"
SHARD_NAME = re.compile(r"^shard-\d+\.dio$")
_RECORD_NAME = re.compile(r"^(shard-\d+\.dio)\.json$")
_JOURNAL_NAME = re.compile(rf"^{re.escape(JOURNAL_PREFIX)}\d+-[0-9a-f]{{8}}\.log$")
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-\d+-[0-9a-f]{8}$")
_TEMP_FOLDERS = ("", SHARDS_DIR, PROGRESS_DIR)
_RECORD_LIMIT = 64 << 20  # a progress record lists skipped positions and reasons: far below this
_JOURNAL_LIMIT = 64 << 20


def record_path(shard_path: str) -> str:
    """The progress record of the shard ``shard_path``."""
    return f"{PROGRESS_DIR}/{shard_path.rsplit('/', 1)[-1]}.json"


def _json(store: Store, path: str) -> Any:
    try:
        data = store.read_limited(path, _RECORD_LIMIT)
        return json.loads(data) if data is not None else None
    except (OSError, DataioError, ValueError):  # a link, a FIFO, not UTF-8 or not JSON: not pack's
        return None


def _size_sha(doc: Any) -> tuple[int, str] | None:
    if not isinstance(doc, dict):
        return None
    size, sha = doc.get("size"), doc.get("sha256")
    if isinstance(size, int) and not isinstance(size, bool) and size >= 0 and isinstance(sha, str):
        return size, sha
    return None


def is_journal(path: str) -> bool:
    """Whether ``path`` has the name of one of pack's temp journals (its content decides whether it is one)."""
    folder, _, name = path.rpartition("/")
    return folder == PROGRESS_DIR and _JOURNAL_NAME.match(name) is not None


def journal_temps(store: Store, path: str) -> list[str] | None:
    """The temp files the journal ``path`` names, or ``None`` if it is not one of pack's journals.

    A line is complete when it ends with a newline; a last line without one (the write was cut) is ignored.
    """
    try:
        data = store.read_limited(path, _JOURNAL_LIMIT)
        lines = data.decode().split("\n")[:-1] if data is not None else None
    except (OSError, DataioError, UnicodeDecodeError):
        return None
    if lines is None:
        return None
    for line in lines:
        folder, _, name = line.rpartition("/")
        m = _TEMP_NAME.match(name)
        if folder not in _TEMP_FOLDERS or m is None or "/" in m.group("name"):
            return None
    return lines


@dataclass
class Ledger:
    """pack's records in one output (see the module docstring)."""

    manifest: Manifest | None = None
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # shard path → its progress record
    sizes: dict[str, set[int]] = field(default_factory=dict)  # shard or index path → sizes records give it
    temps: set[str] = field(default_factory=set)  # temp files the journals name
    journals: list[str] = field(default_factory=list)
    meta: set[str] = field(default_factory=set)  # manifest, records and journals that parsed

    def listed(self, path: str) -> bool:
        """Whether a record of pack's names ``path`` (the cheap test that tells pack's names from foreign ones)."""
        return path in self.sizes or path in self.temps or path in self.meta

    def owns(self, store: Store, path: str) -> bool:
        """Whether pack wrote ``path``: a record or journal names it and (shards, index) with its current size."""
        if path in self.meta or path in self.temps:
            return True
        sizes = self.sizes.get(path)
        if not sizes:
            return False
        try:
            return store.size(path) in sizes
        except (OSError, DataioError):  # missing, a link or not a regular file
            return False

    def _add(self, path: str, size: int) -> None:
        self.sizes.setdefault(path, set()).add(size)


def read_ledger(store: Store) -> Ledger:
    """Reads every record of pack's in ``store`` (a local output's folders must already be checked for links)."""
    ledger = Ledger()
    if store.exists(MANIFEST_NAME):
        try:
            data = store.read_limited(MANIFEST_NAME, MAX_MANIFEST_BYTES)
            ledger.manifest = Manifest.loads(data, store.url(MANIFEST_NAME)) if data is not None else None
        except (OSError, DataioError, ValueError):
            ledger.manifest = None  # not a dataio manifest: foreign
    if ledger.manifest is not None:
        ledger.meta.add(MANIFEST_NAME)
        for s in ledger.manifest.shards:
            folder, _, name = s.path.rpartition("/")
            if folder == SHARDS_DIR and SHARD_NAME.match(name):
                ledger._add(s.path, s.size)
    for path in store.list(PROGRESS_DIR):
        name = path.rsplit("/", 1)[-1]
        if (m := _RECORD_NAME.match(name)) is not None:
            rec = _json(store, path)
            if isinstance(rec, dict) and isinstance(rec.get("plan_hash"), str) and _size_sha(rec.get("info")):
                shard = f"{SHARDS_DIR}/{m.group(1)}"
                ledger.records[shard] = rec
                ledger._add(shard, rec["info"]["size"])
                ledger.meta.add(path)
        elif path == INDEX_RECORD and (index := _size_sha(_json(store, path))) is not None:
            ledger._add(INDEX_NAME, index[0])
            ledger.meta.add(path)
        elif is_journal(path) and (temps := journal_temps(store, path)) is not None:
            ledger.temps.update(temps)
            ledger.journals.append(path)
            ledger.meta.add(path)
    _index_from_manifest(store, ledger)
    return ledger


def _index_from_manifest(store: Store, ledger: Ledger) -> None:
    """An index without its record (packed before records were written) is pack's if the manifest's sha256
    matches it."""
    manifest = ledger.manifest
    if manifest is None or manifest.index_sha256 is None or INDEX_NAME in ledger.sizes or not store.exists(INDEX_NAME):
        return
    try:
        data = store.read_limited(INDEX_NAME, MAX_MANIFEST_BYTES)
    except (OSError, DataioError):
        return
    if data is not None and hashlib.sha256(data).hexdigest() == manifest.index_sha256:
        ledger._add(INDEX_NAME, len(data))
