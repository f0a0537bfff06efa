"""Shard, index and manifest encoding: pure bytes, no IO policy, no torch (see docs/format.md)."""

from dataio.format.manifest import (
    MANIFEST_NAME,
    Manifest,
    ShardEntry,
    check_relative_path,
    manifest_checksum,
    seal_manifest,
)
from dataio.format.schema import IMAGE_SCHEMA, Field, Schema
from dataio.format.shard import (
    FOOTER_SIZE,
    SHARD_VERSION,
    ShardIndex,
    ShardInfo,
    ShardWriter,
    check_record,
    index_size,
    iter_records,
    parse_footer,
    parse_header,
    parse_index,
)

__all__ = [
    "FOOTER_SIZE",
    "IMAGE_SCHEMA",
    "MANIFEST_NAME",
    "SHARD_VERSION",
    "Field",
    "Manifest",
    "Schema",
    "ShardEntry",
    "ShardIndex",
    "ShardInfo",
    "ShardWriter",
    "check_record",
    "check_relative_path",
    "index_size",
    "iter_records",
    "manifest_checksum",
    "parse_footer",
    "parse_header",
    "parse_index",
    "seal_manifest",
]
