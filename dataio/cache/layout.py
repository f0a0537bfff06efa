"""Where everything lives in a cache directory, and which names the cache creates.

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

The cache creates only the names above; :func:`owned` tells them from anything else (a foreign name is never
deleted, counted or opened). Every folder and file below ``CACHE_DIR`` is reached without following a symlink
(:mod:`dataio.cache.safedir`); ``CACHE_DIR`` itself is trusted as the user gave it, resolved once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from dataio.cache.safedir import UnsafeCacheEntry, lstat_at, opened_dir

__all__ = ["CacheLayout", "dataset_key", "owned", "strip_credentials"]

DATASET_META = "dataset.json"
FOLDERS = ("data", "tmp", "locks", "plans")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_JSON_TMP = r"(\.tmp-[0-9]+-[0-9a-f]{8})?"
#: The names the cache creates in each folder of a dataset ("" is the dataset's own folder).
_OWNED = {
    "": re.compile(rf"(cache\.lock|dataset\.json{_JSON_TMP})"),
    "tmp": re.compile(r"[0-9a-f]{12}-[0-9]+-[0-9a-f]{8}\.part"),
    "locks": re.compile(r"[0-9a-f]{20}\.lock"),
    "plans": re.compile(
        rf"[0-9A-Za-z_-]{{1,64}}\.(alive|json{_JSON_TMP}|(owner|[0-9]+-[0-9a-f]{{6}})\.pos{_JSON_TMP})"
    ),
    "data": re.compile(r".+\.[0-9a-f]{16}"),
}


def owned(folder: str, name: str) -> bool:
    """Whether ``name`` in ``folder`` (``""``, ``"data"``, ``"tmp"``, ``"locks"``, ``"plans"``) is a name the
    cache creates (only such names are ever deleted; for ``data``, the last component of a shard's path)."""
    pattern = _OWNED.get(folder)
    return pattern is not None and pattern.fullmatch(name) is not None


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
        object.__setattr__(self, "cache_dir", os.path.realpath(os.fspath(self.cache_dir)))

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
        """Creates the directories (idempotent, safe to race), none through a symlink.

        Raises:
            UnsafeCacheEntry: a symlink or a non-directory where one of the folders belongs.
        """
        os.makedirs(self.cache_dir, exist_ok=True)
        for sub in FOLDERS:
            with self.folder(sub, create=True):
                pass

    def folder(self, *sub: str, create: bool = False) -> contextlib.AbstractContextManager[int]:
        """``with layout.folder("tmp") as dfd:`` a descriptor of the dataset's folder (``folder()``: the dataset's
        own), every component below ``cache_dir`` opened without following a symlink (see
        :func:`dataio.cache.safedir.open_dir`)."""
        return opened_dir(self.cache_dir, [self.key, *(p for s in sub for p in s.split("/"))], create=create)

    def parent_of(self, path: str) -> tuple[tuple[str, ...], str]:
        """``(folders below the dataset's folder, file name)`` of a path of this layout (e.g. ``data_path``)."""
        rel = os.path.relpath(path, self.base)
        parts = tuple(rel.split(os.sep))
        if rel.startswith("..") or len(parts) < 1 or os.path.isabs(rel):
            raise ValueError(f"{path} is not below {self.base}")
        return parts[:-1], parts[-1]

    def has_shard(self, name: str) -> bool:
        """Whether a regular file stands at the cached shard ``name``, reached without a symlink."""
        folders, leaf = self.parent_of(self.data_path(name))
        try:
            with self.folder(*folders) as dfd:
                st = lstat_at(dfd, leaf)
        except (FileNotFoundError, NotADirectoryError, UnsafeCacheEntry):
            return False
        return st is not None and stat.S_ISREG(st.st_mode)

    def data_names(self) -> Iterator[tuple[str, os.stat_result]]:
        """Yields ``(name, lstat)`` of each regular file under ``data/`` whose name the cache creates (shards);
        never descends a symlink, never yields a symlink, FIFO, device or foreign name."""
        with contextlib.suppress(FileNotFoundError), self.folder("data") as dfd:
            for dirpath, _dirs, files, fd in os.fwalk(".", dir_fd=dfd, follow_symlinks=False):
                rel = "" if dirpath == "." else dirpath.removeprefix("./") + "/"
                for f in files:
                    st = lstat_at(fd, f)
                    if st is not None and stat.S_ISREG(st.st_mode) and owned("data", f):
                        yield rel + f, st

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
