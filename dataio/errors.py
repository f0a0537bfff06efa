"""Exception types shared by every floor of dataio.

Every error names where it happened (file, shard, sample position, byte offset or pipeline stage) so that
a user can find the bad bytes without a debugger.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ClosedError",
    "DataioError",
    "FormatError",
    "ManifestError",
    "PackError",
    "SampleError",
    "UnsealedManifestWarning",
    "VersionError",
]


class DataioError(Exception):
    """Base class of every error raised by dataio."""


class FormatError(DataioError, ValueError):
    """Bytes that do not follow the dataio shard format (bad magic, truncated file, bad index)."""


class VersionError(FormatError):
    """A shard or manifest written by a format version this reader does not understand."""


class ChecksumError(FormatError):
    """Stored bytes that disagree with their checksum.

    Attributes:
        shard: Shard path (relative to the dataset root) or ``None``.
        position: Sample position inside the shard, or ``None`` for shard- or index-level checksums.
    """

    def __init__(self, message: str, *, shard: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.shard = shard
        self.position = position


class ClosedError(DataioError, RuntimeError):
    """A read of a dataset (or store) after its ``close()``; the message names the dataset."""


class SampleError(DataioError, RuntimeError):
    """A sample a loader could not decode; names the sample's index and key (and the stage that failed)."""


class ManifestError(DataioError, ValueError):
    """A manifest that is malformed, inconsistent or unsafe (e.g. a path escaping the dataset root)."""


class UnsealedManifestWarning(UserWarning):
    """A manifest packed before ``manifest_sha256`` was recorded: its classes, schema and counts are unprotected."""


class PackError(DataioError):
    """Packing failed; ``bad_items`` lists every ``(path, reason)`` that caused it."""

    def __init__(self, message: str, bad_items: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.bad_items = list(bad_items or [])
