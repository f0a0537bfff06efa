"""Where everything lives in a cache directory, and atomic JSON files.

One cache directory serves every dataset, process and rank of a node::

    CACHE_DIR/
      <dataset key>/             one per remote dataset root: <name>-<hash of the root URL without credentials>
        dataset.json             root URL (no credentials), limit and policy last used (informational)
        cache.lock               flock held while space is accounted, shards evicted and downloads reserved
        data/<shard path>.<sha>  verified shards only (renamed in after their sha256 matched the manifest)
        tmp/*.part               downloads in progress, each flock-ed by its downloader (stale when unlocked)
        locks/<hash>.lock        per-shard download locks (never deleted while the cache is in use)
        plans/<id>.json|.alive   future access orders of live processes (Belady across processes)

The shard's sha256 is part of its cached name, so a re-packed dataset at the same root never serves an old
copy (the old files are never used again and are evicted first).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["CacheLayout", "dataset_key", "read_json", "strip_credentials", "write_json_atomic"]

DATASET_META = "dataset.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def strip_credentials(root: str) -> str:
    """``root`` without user/password in the URL's authority and without a query string or fragment."""
    if "://" not in root:
        return os.path.abspath(os.path.expanduser(root.removeprefix("file://")))
    parts = urlsplit(root)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def dataset_key(root: str) -> str:
    """Directory name of a dataset in the cache: readable name + 16 hex digits of the root's hash."""
    clean = strip_credentials(root)
    name = _UNSAFE.sub("_", clean.rstrip("/").rsplit("/", 1)[-1])[:40] or "dataset"
    return f"{name}-{hashlib.sha256(clean.encode()).hexdigest()[:16]}"


def write_json_atomic(path: str, value: Any) -> None:
    """Writes JSON to a temporary file beside ``path`` and renames it into place."""
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, sort_keys=True, separators=(",", ":"))
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_json(path: str) -> Any | None:
    """Parsed JSON of ``path``, or None if it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class CacheLayout:
    """Paths of one dataset's part of a cache directory.

    Attributes:
        cache_dir: The node-local cache directory.
        key: The dataset's directory name inside it (see :func:`dataset_key`).
    """

    cache_dir: str
    key: str

    def __post_init__(self) -> None:
        if not self.key or "/" in self.key or self.key in (".", ".."):
            raise ValueError(f"bad dataset key {self.key!r}")
        object.__setattr__(self, "cache_dir", os.path.abspath(os.fspath(self.cache_dir)))

    @property
    def base(self) -> str:
        return os.path.join(self.cache_dir, self.key)

    @property
    def data_dir(self) -> str:
        return os.path.join(self.base, "data")

    @property
    def tmp_dir(self) -> str:
        return os.path.join(self.base, "tmp")

    @property
    def locks_dir(self) -> str:
        return os.path.join(self.base, "locks")

    @property
    def plans_dir(self) -> str:
        return os.path.join(self.base, "plans")

    @property
    def global_lock(self) -> str:
        return os.path.join(self.base, "cache.lock")

    @property
    def meta_path(self) -> str:
        return os.path.join(self.base, DATASET_META)

    def create(self) -> None:
        """Creates the directories (idempotent, safe to race)."""
        for d in (self.data_dir, self.tmp_dir, self.locks_dir, self.plans_dir):
            os.makedirs(d, exist_ok=True)

    @staticmethod
    def shard_name(path: str, sha256: str) -> str:
        """Cached name of a shard: its dataset path plus the first 16 hex digits of its sha256."""
        return f"{path}.{sha256[:16]}"

    def data_path(self, name: str) -> str:
        return os.path.join(self.data_dir, *name.split("/"))

    def download_lock(self, name: str) -> str:
        return os.path.join(self.locks_dir, hashlib.sha1(name.encode()).hexdigest()[:20] + ".lock")

    @staticmethod
    def temp_tag(name: str) -> str:
        """Prefix of the temp files of shard ``name`` (tells which shard a download in progress is)."""
        return hashlib.sha1(name.encode()).hexdigest()[:12] + "-"

    def new_temp(self, name: str) -> str:
        return os.path.join(self.tmp_dir, f"{self.temp_tag(name)}{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
