"""The dataset manifest: one JSON document that describes every shard of a dataset.

A dataset is a directory (or URL prefix) holding ``manifest.json``, the shards it lists and a Parquet
sample index. The manifest is the commit point of a pack: it is written last, atomically, so a dataset
without a manifest is unfinished and a manifest never points at a missing or half-written shard.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from dataio.errors import ChecksumError, ManifestError, UnsealedManifestWarning, VersionError
from dataio.format.schema import Schema
from dataio.format.shard import FOOTER_SIZE, index_size

__all__ = [
    "CHECKSUM_KEY",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "MAX_MANIFEST_BYTES",
    "Manifest",
    "ShardEntry",
    "check_manifest_size",
    "check_relative_path",
    "manifest_checksum",
    "seal_manifest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "dataio-dataset"
MANIFEST_VERSION = 1
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Largest manifest read (about 4 million shards); checked against the file's size before it is read.
MAX_MANIFEST_BYTES = 1 << 30
_MAX_U64 = (1 << 63) - 1  # sizes and counts must fit numpy's int64 and a file offset
_MAX_U32 = (1 << 32) - 1
#: The key holding the sha256 of everything else in the manifest (see :func:`manifest_checksum`).
CHECKSUM_KEY = "manifest_sha256"
#: Every top-level key a manifest written before ``manifest_sha256`` could hold: an unsealed manifest with any
#: other key has had a key name damaged (e.g. ``index_sha256`` flipped to ``index_sha257``), and is refused.
_UNSEALED_KEYS = frozenset(
    {"format", "version", "num_samples", "schema", "classes", "index", "shards", "skipped", "extra", "index_sha256"}
)


def manifest_checksum(doc: dict[str, Any]) -> str:
    """sha256 (hex) of a manifest document without its ``manifest_sha256`` key, in canonical JSON.

    Canonical: sorted keys, no whitespace, ASCII escapes; so it covers the parsed values (every class name, the
    schema, every count, path and checksum, ``skipped`` and ``extra``), not the file's formatting.

    Raises:
        ManifestError: for values JSON cannot express (NaN, infinities).
    """
    body = {k: v for k, v in doc.items() if k != CHECKSUM_KEY}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except ValueError as exc:
        raise ManifestError(f"manifest holds a value JSON cannot express: {exc}") from None
    return hashlib.sha256(text.encode()).hexdigest()


def seal_manifest(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of manifest document ``doc`` with ``manifest_sha256`` set to its :func:`manifest_checksum`.

    For tools that edit a manifest on purpose; a reader refuses an edited manifest that is not sealed again.
    """
    return {**{k: v for k, v in doc.items() if k != CHECKSUM_KEY}, CHECKSUM_KEY: manifest_checksum(doc)}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook refusing an object that names a key twice (JSON would keep the last silently)."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ManifestError(f"key {key!r} appears twice in one object")
        seen.add(key)
    return dict(pairs)


def check_manifest_size(size: int, where: str = MANIFEST_NAME) -> None:
    """Raises :class:`ManifestError` if a manifest of ``size`` bytes is beyond :data:`MAX_MANIFEST_BYTES`."""
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{where}: {size} bytes, more than a manifest may hold ({MAX_MANIFEST_BYTES} bytes); "
            "not a dataio manifest, or a damaged one"
        )


def check_relative_path(path: Any, what: str = "path") -> str:
    """Returns ``path`` if it is a safe relative POSIX path inside the dataset root, else raises.

    Refused: absolute paths, URLs, drive letters, backslashes, empty, ``.`` and ``..`` components, NUL bytes.
    """
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{what} must be a non-empty string, got {path!r}")
    if path.startswith("/") or "\\" in path or "\0" in path or "://" in path or _DRIVE.match(path):
        raise ManifestError(f"{what} {path!r} is not a relative path inside the dataset root")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"{what} {path!r} escapes or is not normalised inside the dataset root")
    return path


@dataclass(frozen=True)
class ShardEntry:
    """One shard of a dataset as the manifest records it."""

    path: str
    num_samples: int
    size: int
    sha256: str
    index_offset: int
    index_crc32: int

    def __post_init__(self) -> None:
        check_relative_path(self.path, "shard path")
        for name in ("num_samples", "size", "index_offset", "index_crc32"):
            value = getattr(self, name)
            top = _MAX_U32 if name == "index_crc32" else _MAX_U64
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
                raise ManifestError(f"shard {self.path!r}: {name} must be an int in 0 … {top}, got {value!r}")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise ManifestError(f"shard {self.path!r}: sha256 must be 64 lowercase hex digits")
        if self.index_offset >= self.size:
            raise ManifestError(f"shard {self.path!r}: index_offset {self.index_offset} beyond size {self.size}")
        tail = index_size(self.num_samples) + FOOTER_SIZE
        if self.index_offset + tail != self.size:
            raise ManifestError(
                f"shard {self.path!r}: num_samples {self.num_samples} needs an index and footer of {tail} bytes "
                f"from index_offset {self.index_offset}, but size is {self.size} (a shard's layout is fixed by them)"
            )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to know about a dataset before touching a shard.

    Attributes:
        schema: Field layout of every record.
        shards: Shards in global sample order (sample ids count through shard 0, then shard 1, …).
        classes: Class names (index = label) or ``None``.
        index_path: Relative path of the Parquet sample index.
        index_sha256: sha256 (hex) of the Parquet index file, or ``None`` in manifests written before it was
            recorded (such an index is read unchecked; ``dataio verify`` says so).
        skipped: ``{"path", "reason"}`` dicts for source files left out by ``--on-error skip``.
        extra: Free-form, JSON-serialisable provenance (pack options, source kind, writer version).
        sealed: Whether the manifest this was loaded from carried a valid ``manifest_sha256`` (every manifest
            written by :meth:`dumps` does); ``False`` only for manifests written before it was recorded.
    """

    schema: Schema
    shards: tuple[ShardEntry, ...]
    classes: tuple[str, ...] | None = None
    index_path: str = "index.parquet"
    skipped: tuple[dict[str, str], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    index_sha256: str | None = None
    sealed: bool = field(default=True, compare=False)

    def __post_init__(self) -> None:
        check_relative_path(self.index_path, "index path")
        sha = self.index_sha256
        if sha is not None and (not isinstance(sha, str) or not _SHA256.match(sha)):
            raise ManifestError(f"index_sha256 must be 64 lowercase hex digits, got {self.index_sha256!r}")
        paths = [s.path for s in self.shards]
        if len(set(paths)) != len(paths):
            raise ManifestError("manifest lists a shard path twice")

    @property
    def num_samples(self) -> int:
        return sum(s.num_samples for s in self.shards)

    @property
    def total_bytes(self) -> int:
        return sum(s.size for s in self.shards)

    def check_index_bytes(self, data: bytes | memoryview, where: str | None = None) -> None:
        """Raises :class:`ChecksumError` naming the index file if ``data`` is not the index this manifest recorded.

        A manifest without ``index_sha256`` (written before it was recorded) accepts any bytes.
        """
        if self.index_sha256 is not None and hashlib.sha256(data).hexdigest() != self.index_sha256:
            raise ChecksumError(
                f"{where or self.index_path}: sha256 differs from the manifest's index_sha256 "
                "(the sample index is corrupt or was replaced)",
            )

    def to_json(self) -> dict[str, Any]:
        doc = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "num_samples": self.num_samples,
            "schema": self.schema.to_json(),
            "classes": list(self.classes) if self.classes is not None else None,
            "index": self.index_path,
            "shards": [s.to_json() for s in self.shards],
            "skipped": [dict(s) for s in self.skipped],
            "extra": self.extra,
        }
        if self.index_sha256 is not None:  # absent, not null, when unknown
            doc["index_sha256"] = self.index_sha256
        return seal_manifest(doc)

    def dumps(self) -> bytes:
        """Deterministic JSON bytes (sorted keys) of the manifest, sealed with ``manifest_sha256``."""
        return (json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes | str, where: str = MANIFEST_NAME) -> Manifest:
        """Parses and validates manifest JSON.

        The ``manifest_sha256`` seal is checked before any value is used. A manifest without one (packed before it
        was recorded) still loads, with an :class:`~dataio.errors.UnsealedManifestWarning`, if it holds only the
        keys such manifests had.

        Raises:
            VersionError: for an unknown manifest version.
            ChecksumError: the manifest's contents differ from its ``manifest_sha256`` (a damaged manifest).
            ManifestError: for anything malformed, inconsistent or unsafe, or an unsealed manifest with unknown keys.
        """
        check_manifest_size(len(data), where)
        try:
            doc = json.loads(data, object_pairs_hook=_unique_keys)
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}; a damaged manifest") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{where}: not valid JSON: {exc}") from exc
        except RecursionError:
            raise ManifestError(f"{where}: JSON nested too deeply; not a dataio manifest") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{where}: not a dataio manifest")
        if doc.get("version") != MANIFEST_VERSION:
            raise VersionError(
                f"{where}: manifest version {doc.get('version')!r} is not supported (this reader: {MANIFEST_VERSION})"
            )
        sealed = _check_seal(doc, where)
        try:
            shards = tuple(ShardEntry(**s) for s in doc["shards"])
            classes = doc.get("classes")
            manifest = cls(
                schema=Schema.from_json(doc["schema"]),
                shards=shards,
                classes=tuple(str(c) for c in classes) if classes is not None else None,
                index_path=doc.get("index", "index.parquet"),
                skipped=tuple({"path": str(s["path"]), "reason": str(s["reason"])} for s in doc.get("skipped", [])),
                extra=dict(doc.get("extra") or {}),
                index_sha256=doc.get("index_sha256"),
                sealed=sealed,
            )
        except ManifestError as exc:
            raise ManifestError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: malformed manifest: {exc!r}") from exc
        if doc.get("num_samples") != manifest.num_samples:
            raise ManifestError(
                f"{where}: num_samples {doc.get('num_samples')} != sum of shard sample counts {manifest.num_samples}"
            )
        return manifest


def _check_seal(doc: dict[str, Any], where: str) -> bool:
    """``True`` if ``doc`` carries a matching ``manifest_sha256``; ``False`` (and a warning) for an older manifest.

    Raises:
        ChecksumError: the seal is malformed or differs from the contents.
        ManifestError: no seal, but a key no unsealed manifest ever had (a damaged key name, e.g. the seal's own).
    """
    claimed = doc.get(CHECKSUM_KEY)
    if claimed is None:
        unknown = sorted(set(doc) - _UNSEALED_KEYS)
        if unknown:
            raise ManifestError(
                f"{where}: unknown key(s) {', '.join(map(repr, unknown))} and no {CHECKSUM_KEY}: a damaged manifest "
                "(a key name was changed); restore manifest.json from a copy or repack the dataset"
            )
        warnings.warn(
            f"{where}: the manifest has no {CHECKSUM_KEY} (packed by an older dataio): its classes, schema and "
            "counts are not checksum-protected; repack the dataset to protect them",
            UnsealedManifestWarning,
            stacklevel=4,
        )
        return False
    if not isinstance(claimed, str) or not _SHA256.match(claimed) or manifest_checksum(doc) != claimed:
        raise ChecksumError(
            f"{where}: the manifest's contents differ from its {CHECKSUM_KEY} (a damaged manifest: class names, "
            "schema, counts or checksums changed); restore manifest.json from a copy or repack the dataset"
        )
    return True
